"""The operators' inbox: one queue of everything on the platform that needs a person.

Each kind of item comes from a provider that its own domain package registers (``register_provider``):
payments (outcomes still unknown), psp (callbacks that failed or were rejected; disputes), webhooks
(endpoints disabled or failing), and later risk, disputes, reconciliation and payouts. The inbox never
reads a domain's tables itself. Providers compute their items from the domain's current state, so an
item disappears when its cause is resolved, never because someone hid it. Claims (who works on what) are
the inbox's own data: app/inbox/models.py.

Never imports Flask: a provider names the admin page where its item is worked as an endpoint and its
arguments (``InboxItem.link``), and the admin views build the URL.
"""
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable

from sqlalchemy.orm import Session

# Items one page shows at most: a queue longer than this is worked from the top (or narrowed by filters).
PAGE_SIZE = 100


@dataclass(frozen=True)
class InboxItem:
    """One thing that needs a person, as every kind shows it."""

    kind: str                        # the provider's kind, e.g. "callback"
    id: str                          # the domain object's id; (kind, id) names the item
    merchant_id: str | None          # None: about no merchant known (e.g. a rejected callback's)
    livemode: bool | None
    title: str                       # what happened, in a few words
    since: datetime                  # since when it needs a person (its age is measured from here)
    link: tuple[str, dict]           # (admin endpoint, its arguments): where it is worked
    amount: int | None = None        # minor units of ``currency``
    currency: str | None = None
    due_at: datetime | None = None   # when it must be done, for the kinds that have a deadline
    detail: str | None = None


@dataclass(frozen=True)
class InboxFilters:
    """What the operator narrowed the inbox to; providers apply merchant and age themselves."""

    merchant_id: str | None = None
    since_before: datetime | None = None   # only items needing a person since before this (older ones)
    limit: int = PAGE_SIZE                 # 0: count only


@dataclass
class InboxPage:
    """A provider's answer: up to ``filters.limit`` items (oldest first) and how many match in all."""

    items: list[InboxItem] = field(default_factory=list)
    count: int = 0


Provider = Callable[[Session, InboxFilters], InboxPage]


@dataclass(frozen=True)
class Kind:
    """A registered kind of item: its name in the inbox and its provider."""

    name: str
    label: str
    provider: Provider


_KINDS: dict[str, Kind] = {}


def register_provider(kind: str, label: str, provider: Provider) -> None:
    """Register (or replace: a later issue's provider takes over a kind) the provider of a kind of item."""
    _KINDS[kind] = Kind(kind, label, provider)


def kinds() -> list[Kind]:
    """Every registered kind, in registration order."""
    return list(_KINDS.values())


def collect(session: Session, filters: InboxFilters, kind: str | None = None) -> tuple[list[InboxItem], dict[str, int]]:
    """Items of every kind (or one), soonest due first, then oldest; and the count per kind.

    Unknown kinds count nothing. Each provider is asked once: its page gives both items and count.
    """
    items: list[InboxItem] = []
    counts: dict[str, int] = {}
    for entry in kinds():
        if kind is not None and entry.name != kind:
            continue
        page = entry.provider(session, filters)
        counts[entry.name] = page.count
        items.extend(page.items)
    items.sort(key=_order)
    return items[:filters.limit], counts


def total(session: Session) -> int:
    """How many items the whole inbox holds (the count in the admin navigation)."""
    return sum(entry.provider(session, InboxFilters(limit=0)).count for entry in kinds())


def _order(item: InboxItem):
    # Deadlines first (the nearest at the top), then the rest by age, oldest first.
    return (item.due_at is None, item.due_at or item.since, item.since, item.kind, item.id)
