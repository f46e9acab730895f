"""Value lists (Stripe's ``radar.value_list`` and ``radar.value_list_item``): the platform's and each merchant's.

A merchant's rules name its own lists and the platform's (read only) by ``@alias``, its own first; platform
rules name platform lists only, so that no merchant list can change what a platform rule means. Aliases of
platform lists start with ``platform_``, which merchant aliases may not.

Items are normalized by the list's item type when they are added (emails and domains lower case, countries
upper case, IP addresses and ranges in canonical CIDR form, BINs digits only), and signal values are looked
up the same way: an IP address matches its own item and every range (CIDR) item that contains it. One
evaluation looks every (list, value) pair its rules need up in one statement for both owners (``LOOKUP_SQL``).
"""
from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterable

from sqlalchemy import delete, select, text
from sqlalchemy.orm import Session

from app.ids import new_id
from app.risk.errors import RiskInvalid, RiskNotFound
from app.risk.language import ListRef
from app.risk.models import ITEM_TYPES, PlatformValueList, PlatformValueListItem, ValueList, ValueListItem
from app.scoping import Scope

ALIAS = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
PLATFORM_PREFIX = "platform_"
MAX_ITEMS_PER_LIST = 1_000_000
MAX_VALUE_LENGTH = 800


def normalize(item_type: str, value: Any) -> str:
    """The stored form of an item of this type, or RiskInvalid."""
    if not isinstance(value, str) or not value.strip():
        raise RiskInvalid("value must be a non-empty string.", param="value")
    value = value.strip()
    if len(value) > MAX_VALUE_LENGTH:
        raise RiskInvalid(f"value is at most {MAX_VALUE_LENGTH} characters.", param="value")
    if item_type in ("email", "string"):
        return value.casefold()
    if item_type == "email_domain":
        return value.lstrip("@").casefold()
    if item_type == "country":
        if not re.fullmatch(r"[A-Za-z]{2}", value):
            raise RiskInvalid("A country is an ISO 3166-1 alpha-2 code such as 'US'.", param="value")
        return value.upper()
    if item_type == "card_bin":
        if not re.fullmatch(r"[0-9]{6,8}", value):
            raise RiskInvalid("A card BIN is 6 to 8 digits.", param="value")
        return value
    if item_type == "ip_address":
        try:
            network = ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise RiskInvalid("An IP address or range: '203.0.113.7', '203.0.113.0/24' or an IPv6 one.",
                              param="value") from None
        if network.prefixlen == network.max_prefixlen:
            return str(network.network_address)
        return str(network)
    return value  # card_fingerprint, case_sensitive_string


def candidates(item_type: str, value: Any) -> tuple[str, ...]:
    """The stored forms a signal value matches in a list of this type (an IP: itself and its ranges)."""
    if value is None:
        return ()
    return _candidates(item_type, str(value))


@lru_cache(maxsize=4096)
def _candidates(item_type: str, value: str) -> tuple[str, ...]:
    # Cached: an evaluation asks for the same value when it looks it up and when its rules test it, and an
    # IP address's ranges (33 or 129 networks) are the costly part.
    if item_type == "ip_address":
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            return ()
        found = [str(address)]
        found += [str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))
                  for prefix in range(0, address.max_prefixlen)]
        return tuple(found)
    if item_type == "card_bin":
        return tuple(value[:length] for length in (6, 7, 8) if len(value) >= length)
    try:
        return (normalize(item_type, value),)
    except RiskInvalid:
        return ()


# ---------------------------------------------------------------- resolution and lookups

def resolver(session: Session, scope: Scope | None):
    """A ListResolver for rules of this owner (scope None: the platform's)."""
    platform = {row.alias: ListRef("platform", row.id, row.alias, row.item_type)
                for row in session.execute(select(PlatformValueList.id, PlatformValueList.alias,
                                                  PlatformValueList.item_type))}
    if scope is None:
        return platform.get
    own = {row.alias: ListRef("merchant", row.id, row.alias, row.item_type)
           for row in session.execute(select(ValueList.id, ValueList.alias, ValueList.item_type)
                                      .where(ValueList.merchant_id == scope.merchant_id,
                                             ValueList.livemode == scope.livemode))}
    return lambda alias: own.get(alias) or platform.get(alias)


@dataclass
class Memberships:
    """The (list id, stored value) pairs found for one evaluation; answers ``Membership`` calls."""

    found: set

    def __call__(self, ref: ListRef, signal: str, value: Any) -> bool:
        return any((ref.owner, ref.id, candidate) in self.found for candidate in candidates(ref.item_type, value))


def lookup_parameters(scope: Scope, pairs: Iterable[tuple[ListRef, Any]]) -> tuple[dict, dict]:
    """LOOKUP_SQL's parameters for these (list, signal value) pairs, and what was asked (for ``memberships``)."""
    wanted = {"platform": set(), "merchant": set()}
    for ref, value in pairs:
        for candidate in candidates(ref.item_type, value):
            wanted[ref.owner].add((ref.id, candidate))
    # The pairs themselves (not every list times every value: an IP address's 33 ranges are probed in the IP
    # list only, an email in the email list only), as one JSON text per owner: json.dumps is C, where a text
    # array's parameter is dumped element by element in Python.
    parameters = {
        "merchant_id": scope.merchant_id,
        "merchant_pairs": json.dumps(sorted(wanted["merchant"])),
        "platform_pairs": json.dumps(sorted(wanted["platform"])),
    }
    return parameters, wanted


def memberships(rows: Iterable, wanted: dict) -> Memberships:
    """LOOKUP_SQL's (owner, list id, value) rows as Memberships; pairs that were not asked for (a value of one
    list found in another) are dropped."""
    return Memberships({(owner, list_id, value) for owner, list_id, value in rows
                        if (list_id, value) in wanted[owner]})


def lookup(session: Session, scope: Scope, pairs: Iterable[tuple[ListRef, Any]]) -> Memberships:
    """Look every (list, signal value) pair up at once: one round trip for both owners."""
    parameters, wanted = lookup_parameters(scope, pairs)
    if not wanted["merchant"] and not wanted["platform"]:
        return Memberships(set())
    return memberships(session.execute(text(LOOKUP_SQL), parameters), wanted)


# Both owners in one statement; each side probes its unique (list, value) index once per asked pair (the
# pairs as a JSON array of [list id, value]). The evaluation folds it into its one query (app/risk/evaluate.py).
LOOKUP_SQL = """
SELECT 'merchant', item.value_list_id, item.value
  FROM json_array_elements(CAST(:merchant_pairs AS json)) AS asked(pair)
  JOIN risk_value_list_items AS item
    ON item.merchant_id = :merchant_id AND item.value_list_id = asked.pair->>0 AND item.value = asked.pair->>1
UNION ALL
SELECT 'platform', item.value_list_id, item.value
  FROM json_array_elements(CAST(:platform_pairs AS json)) AS asked(pair)
  JOIN risk_platform_value_list_items AS item
    ON item.value_list_id = asked.pair->>0 AND item.value = asked.pair->>1
"""


# ---------------------------------------------------------------- CRUD (scope None: the platform's)

def _list_model(scope: Scope | None):
    return PlatformValueList if scope is None else ValueList


def _item_model(scope: Scope | None):
    return PlatformValueListItem if scope is None else ValueListItem


def _select_lists(scope: Scope | None, *criteria):
    if scope is None:
        return select(PlatformValueList).where(*criteria)
    return scope.select(ValueList, *criteria)


def get_value_list(session: Session, scope: Scope | None, list_id: Any, *, for_update: bool = False):
    if not isinstance(list_id, str):
        raise RiskNotFound(f"No such value list: '{list_id}'.", param="id")
    if scope is None:
        row = session.get(PlatformValueList, list_id, with_for_update=for_update)
    else:
        row = scope.get(session, ValueList, list_id, for_update=for_update)
    if row is None:
        raise RiskNotFound(f"No such value list: '{list_id}'.", param="id")
    return row


def list_value_lists(session: Session, scope: Scope | None, *, alias: str | None = None,
                     contains: str | None = None, limit: int = 10, starting_after: str | None = None,
                     ending_before: str | None = None) -> list:
    """Newest first (Stripe's order), ``alias`` exact, ``contains``: lists holding that value."""
    model = _list_model(scope)
    criteria = []
    if alias is not None:
        criteria.append(model.alias == alias)
    if starting_after is not None:
        criteria.append(model.id < starting_after)
    if ending_before is not None:
        criteria.append(model.id > ending_before)
    if contains is not None:
        item = _item_model(scope)
        inner = select(item.value_list_id).where(item.value.in_(_contains_forms(contains)))
        if scope is not None:
            inner = inner.where(item.merchant_id == scope.merchant_id, item.livemode == scope.livemode)
        criteria.append(model.id.in_(inner))
    statement = _select_lists(scope, *criteria)
    if ending_before is not None:
        rows = session.scalars(statement.order_by(model.id.asc()).limit(limit)).all()
        return list(reversed(rows))
    return session.scalars(statement.order_by(model.id.desc()).limit(limit)).all()


def _contains_forms(value: str) -> list[str]:
    forms = {value, value.strip(), value.strip().casefold(), value.strip().upper()}
    try:
        forms.add(normalize("ip_address", value))  # an address or range as the list stores it
    except RiskInvalid:
        pass  # not an address: the plain forms only
    return sorted(forms)


def create_value_list(session: Session, scope: Scope | None, *, alias: Any, name: Any, item_type: Any = "string",
                      metadata: dict | None = None, actor: str | None = None):
    if not isinstance(alias, str) or not ALIAS.match(alias):
        raise RiskInvalid("alias must be letters, digits and underscores (at most 100), not starting with a digit.",
                          param="alias")
    if scope is not None and alias.startswith(PLATFORM_PREFIX):
        raise RiskInvalid(f"Aliases starting with '{PLATFORM_PREFIX}' belong to the platform's lists.", param="alias")
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise RiskInvalid("name must be a non-empty string of at most 200 characters.", param="name")
    if item_type not in ITEM_TYPES:
        raise RiskInvalid(f"item_type must be one of: {', '.join(ITEM_TYPES)}.", param="item_type")
    model = _list_model(scope)
    if session.scalar(_select_lists(scope, model.alias == alias).limit(1)) is not None:
        raise RiskInvalid(f"A value list with the alias '{alias}' exists already.", param="alias",
                          code="resource_already_exists")
    values = dict(id=new_id("rsl"), alias=alias, name=name.strip(), item_type=item_type,
                  metadata_=dict(metadata or {}), created_by=actor)
    row = model(**values) if scope is None else scope.new(ValueList, **values)
    session.add(row)
    session.flush()
    return row


def update_value_list(session: Session, scope: Scope | None, list_id: str, *, alias: Any = None, name: Any = None,
                      metadata: dict | None = None):
    row = get_value_list(session, scope, list_id, for_update=True)
    if alias is not None and alias != row.alias:
        if row.builtin:
            raise RiskInvalid("A built-in list keeps its alias.", param="alias")
        if not isinstance(alias, str) or not ALIAS.match(alias) or (
                scope is not None and alias.startswith(PLATFORM_PREFIX)):
            raise RiskInvalid("alias must be letters, digits and underscores (at most 100).", param="alias")
        model = _list_model(scope)
        if session.scalar(_select_lists(scope, model.alias == alias).limit(1)) is not None:
            raise RiskInvalid(f"A value list with the alias '{alias}' exists already.", param="alias",
                              code="resource_already_exists")
        _refuse_if_used(session, scope, row)
        row.alias = alias
    if name is not None:
        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            raise RiskInvalid("name must be a non-empty string of at most 200 characters.", param="name")
        row.name = name.strip()
    if metadata is not None:
        row.metadata_ = {**row.metadata_, **metadata}
    session.flush()
    return row


def _refuse_if_used(session: Session, scope: Scope | None, row) -> None:
    from app.risk.rules import rules_using_alias

    using = rules_using_alias(session, scope, row.alias)
    if using:
        raise RiskInvalid(f"Rules use @{row.alias} ({', '.join(using[:5])}): change them first.", param="alias",
                          code="value_list_in_use")


def delete_value_list(session: Session, scope: Scope | None, list_id: str) -> str:
    row = get_value_list(session, scope, list_id, for_update=True)
    if row.builtin:
        raise RiskInvalid("A built-in list cannot be deleted.", param="id")
    _refuse_if_used(session, scope, row)
    session.delete(row)
    session.flush()
    return row.id


def add_item(session: Session, scope: Scope | None, list_id: Any, value: Any, *, actor: str | None = None):
    value_list = get_value_list(session, scope, list_id)
    stored = normalize(value_list.item_type, value)
    item_model = _item_model(scope)
    criteria = [item_model.value_list_id == value_list.id, item_model.value == stored]
    if scope is not None:
        criteria.append(item_model.merchant_id == scope.merchant_id)
    if session.scalar(select(item_model.id).where(*criteria)) is not None:
        raise RiskInvalid(f"'{stored}' is in this list already.", param="value", code="resource_already_exists")
    # The documented bound: a list holds at most MAX_ITEMS_PER_LIST items (the probe reads the list's index up to
    # the bound, never counts the whole table).
    full = select(item_model.id).where(*criteria[:1], *criteria[2:]).offset(MAX_ITEMS_PER_LIST - 1).limit(1)
    if session.scalar(full) is not None:
        raise RiskInvalid(f"A value list holds at most {MAX_ITEMS_PER_LIST:,} items.", param="value",
                          code="value_list_full")
    values = dict(id=new_id("rsli"), value_list_id=value_list.id, value=stored, created_by=actor)
    item = item_model(**values) if scope is None else scope.new(ValueListItem, **values)
    session.add(item)
    session.flush()
    return item


def get_item(session: Session, scope: Scope | None, item_id: Any):
    if not isinstance(item_id, str):
        raise RiskNotFound(f"No such value list item: '{item_id}'.", param="id")
    item = session.get(PlatformValueListItem, item_id) if scope is None else scope.get(session, ValueListItem, item_id)
    if item is None:
        raise RiskNotFound(f"No such value list item: '{item_id}'.", param="id")
    return item


def delete_item(session: Session, scope: Scope | None, item_id: str) -> str:
    item = get_item(session, scope, item_id)
    session.delete(item)
    session.flush()
    return item.id


def list_items(session: Session, scope: Scope | None, list_id: str, *, value: str | None = None, limit: int = 10,
               starting_after: str | None = None, ending_before: str | None = None) -> list:
    value_list = get_value_list(session, scope, list_id)
    model = _item_model(scope)
    criteria = [model.value_list_id == value_list.id]
    if scope is not None:
        criteria += [model.merchant_id == scope.merchant_id, model.livemode == scope.livemode]
    if value is not None:
        criteria.append(model.value.in_(_contains_forms(value)))
    if starting_after is not None:
        criteria.append(model.id < starting_after)
    if ending_before is not None:
        criteria.append(model.id > ending_before)
    statement = select(model).where(*criteria)
    if ending_before is not None:
        return list(reversed(session.scalars(statement.order_by(model.id.asc()).limit(limit)).all()))
    return session.scalars(statement.order_by(model.id.desc()).limit(limit)).all()


def item_count(session: Session, scope: Scope | None, list_id: str) -> int:
    from sqlalchemy import func

    model = _item_model(scope)
    criteria = [model.value_list_id == list_id]
    if scope is not None:
        criteria.append(model.merchant_id == scope.merchant_id)
    return session.scalar(select(func.count()).select_from(model).where(*criteria)) or 0


def clear_items(session: Session, scope: Scope | None, list_id: str) -> None:
    model = _item_model(scope)
    criteria = [model.value_list_id == list_id]
    if scope is not None:
        criteria.append(model.merchant_id == scope.merchant_id)
    session.execute(delete(model).where(*criteria))
