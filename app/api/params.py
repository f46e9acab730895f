"""Reading and validating /v1 request parameters; every error is a 400 naming the parameter.

Usage (inside an ``@api_view`` route, which has already parsed the body into ``g.api_params``)::

    p = Params.from_request(allowed={"amount", "currency", "customer_email", "capture_method", "metadata"})
    amount = p.integer("amount", required=True, min_value=1)
    currency = p.currency("currency", required=True)            # "usd" -> "USD" (app.money)
    email = p.email("customer_email")                            # None when absent
    capture = p.enum("capture_method", ("automatic", "manual"), default="automatic")
    metadata = p.metadata()                                      # {} when absent
    p.done()                       # 400 parameter_unknown for anything not read (or not in ``allowed``)

Nested objects and lists: ``p.object("billing")`` returns a Params whose errors name ``billing[city]``;
``p.objects("splits")`` returns a list of them (``splits[0][amount]``).

Where parameters come from (``load_request_params``):
    POST/PUT/PATCH  body: ``application/json`` (an object) or ``application/x-www-form-urlencoded``
                    (Stripe-style brackets: ``metadata[order]=1``, ``splits[0][amount]=500``, ``tags[]=a``);
                    an empty body is an empty parameter set; ``multipart/form-data`` only on upload routes
                    (``api_view(upload_max_bytes=...)``); any other content type -> 415;
                    malformed JSON, a non-object or nesting deeper than app/json_input.py allows -> 400
                    ``invalid_json``; over MAX_CONTENT_LENGTH -> 413;
                    a JSON body sent as another content type -> 400 ``json_content_type_missing``;
                    anything in the query string -> 400 ``parameter_in_query``.
    GET/DELETE/...  the query string, with the same bracket syntax.
Form and query values are strings, so ``integer``/``boolean`` accept "42"/"true" there; in JSON they must be
real JSON integers/booleans (``true`` is not an integer, ``1.0`` is not an integer).

Error codes (``param`` names the parameter, in bracket form for nested ones):
    parameter_missing, parameter_invalid, parameter_unknown, card_number_in_field (and parameter_in_query,
    above). A number out of range says the range ("amount must be at most 99999999") whatever its size or form.

Card numbers: every string read here (``string``, ``strings``, ``email``, metadata keys and values) is
free text, refused with 400 ``card_number_in_field`` when it holds a card number (app/pan.py), before the
view hands anything to a service, the idempotency record or an event. A parameter that is a number of
another kind (a tracking number, a bank account number) is read with ``card_number_check=False``. The
request log keeps a refused request's body only redacted (app/reporting/request_logs.py).

Metadata limits (Stripe's): at most ``METADATA_MAX_KEYS`` (50) keys, keys of 1..40 characters without square
brackets, values (strings; JSON integers are turned into strings) of at most 500 characters.
"""
import re
from typing import Any, Iterable

from email_validator import EmailNotValidError, validate_email
from flask import g, request
from werkzeug.datastructures import MultiDict

from app import json_input, pan
from app.api.errors import ApiError, invalid_param
from app.money import MoneyError, normalize_currency

METADATA_MAX_KEYS = 50
METADATA_KEY_MAX = 40
METADATA_VALUE_MAX = 500
# Default cap on strings: generous for descriptions, small enough that nothing unbounded reaches the database.
STRING_MAX_DEFAULT = 5000
# PostgreSQL bigint: a larger integer would fail in the database instead of here.
INT64_MAX = 2**63 - 1
_INT_STRING = re.compile(r"^-?[0-9]+$")
# Python refuses to turn more than 4300 digits into an int (CVE-2020-10735); any number that long is out
# of every range, so it is read as a float (infinity at worst) and refused by the range check.
_LONGEST_INT_TEXT = 4000
_BODY_METHODS = ("POST", "PUT", "PATCH")
MISSING = object()

__all__ = ["Params", "load_request_params", "METADATA_MAX_KEYS", "METADATA_KEY_MAX", "METADATA_VALUE_MAX"]


def _unsupported_media_type() -> ApiError:
    return ApiError(415, "invalid_request_error", "unsupported_media_type",
                    "Send parameters as application/json or application/x-www-form-urlencoded.")


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def whole_number(text: str) -> int | float:
    """The number a string of digits (optionally signed) writes; beyond ``_LONGEST_INT_TEXT`` a float."""
    return int(text) if len(text) < _LONGEST_INT_TEXT else float(text)


def refuse_misplaced_parameters(raw: bytes | None) -> None:
    """400 for parameters a body-method request put where they are not read: in the query string, or in a
    JSON body sent as another content type (each would otherwise surface as a puzzling "missing amount").
    ``raw`` None: an upload, whose body is not read here."""
    if request.args:
        name = next(iter(request.args))
        raise invalid_param(name, f"{request.method} parameters go in the request body, not in the query "
                                  f"string (received {name} in the URL).", "parameter_in_query")
    mimetype = request.mimetype
    if raw is not None and mimetype != "application/json" and not mimetype.endswith("+json") \
            and raw.lstrip()[:1] in (b"{", b"["):
        sent = mimetype or "no Content-Type"
        raise ApiError(400, "invalid_request_error", "json_content_type_missing",
                       f"The request body is JSON but was sent as {sent}: add the header "
                       "'Content-Type: application/json' (or send form fields, as curl -d amount=2000 does).")


def load_request_params(*, multipart: bool = False) -> dict[str, Any]:
    """The request's parameters as a dict (see the module docstring for the rules); ``multipart``: the route
    takes ``multipart/form-data`` too (an upload: its form fields here, its file in ``request.files``)."""
    if request.method not in _BODY_METHODS:
        return parse_form(request.args)
    if multipart and request.mimetype == "multipart/form-data":
        refuse_misplaced_parameters(None)
        return parse_form(request.form)
    # get_data() enforces MAX_CONTENT_LENGTH (werkzeug raises 413, answered as JSON on /v1).
    raw = request.get_data(cache=True)
    refuse_misplaced_parameters(raw)
    if not raw:
        return {}
    mimetype = request.mimetype
    if mimetype == "application/json" or mimetype.endswith("+json"):
        try:
            # NaN and Infinity are not JSON; Python would accept them by default.
            data = json_input.loads(raw, parse_constant=_reject_constant, parse_int=whole_number)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(400, "invalid_request_error", "invalid_json",
                           f"The request body is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ApiError(400, "invalid_request_error", "invalid_json",
                           "The JSON body must be an object of parameters.")
        return data
    if mimetype == "application/x-www-form-urlencoded":
        return parse_form(request.form)
    raise _unsupported_media_type()


def _split_brackets(name: str) -> list[str] | None:
    """"a[b][0]" -> ["a", "b", "0"]; "a[]" -> ["a", ""]; None when the brackets are malformed."""
    head, sep, rest = name.partition("[")
    if not head:
        return None
    parts = [head]
    if not sep:
        return parts
    rest = "[" + rest
    for match in re.finditer(r"\[([^\[\]]*)\]|(.)", rest):
        if match.group(2) is not None:
            return None
        parts.append(match.group(1))
    return parts


def _listify(node: Any, path: str) -> Any:
    """Dicts whose keys are exactly 0..n-1 become lists (Stripe's ``items[0][price]`` syntax)."""
    if not isinstance(node, dict):
        return node
    if node and all(k.isdigit() for k in node):
        indices = sorted(int(k) for k in node)
        if indices != list(range(len(indices))):
            raise invalid_param(path, f"{path} must be indexed 0, 1, 2, ... without gaps.")
        return [_listify(node[str(i)], f"{path}[{i}]") for i in indices]
    return {k: _listify(v, f"{path}[{k}]") for k, v in node.items()}


def parse_form(form: MultiDict) -> dict[str, Any]:
    """Turn form or query fields with Stripe-style brackets into nested dicts and lists of strings."""
    root: dict[str, Any] = {}
    for name in form.keys():
        values = form.getlist(name)
        parts = _split_brackets(name)
        if parts is None:
            raise invalid_param(name, f"Malformed parameter name {name!r}.")
        if parts[-1] == "":
            parts, value = parts[:-1], list(values)
        elif len(values) > 1:
            raise invalid_param(name, f"{name} was given more than once.")
        else:
            value = values[0]
        node = root
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                clash = _join(parts[:depth + 1])
                raise invalid_param(clash, f"{clash} is given both as a value and as an object.")
            node = child
        if parts[-1] in node:
            raise invalid_param(name, f"{name} is given both as a value and as an object.")
        node[parts[-1]] = value
    return {key: _listify(value, key) for key, value in root.items()}


def _join(parts: list[str]) -> str:
    return parts[0] + "".join(f"[{p}]" for p in parts[1:])


def refuse_card_number(param: str, value: str) -> None:
    """400 ``card_number_in_field`` naming ``param`` when ``value`` holds a card number (app/pan.py)."""
    match = pan.find_card_number(value)
    if match is not None:
        raise invalid_param(param, pan.refusal(param, match), "card_number_in_field")


class Params:
    """Typed access to one level of parameters, remembering which were read so ``done()`` finds strays."""

    def __init__(self, data: dict[str, Any], *, strings: bool = False, prefix: str = "",
                 allowed: Iterable[str] | None = None):
        """``strings``: values came from a form or query string (numbers and booleans arrive as text)."""
        self._data = data
        self._strings = strings
        self._prefix = prefix
        self._seen: set[str] = set(allowed or ())
        if allowed is not None:
            self._reject_unknown(self._seen)

    @classmethod
    def from_request(cls, *, allowed: Iterable[str] | None = None) -> "Params":
        """The current request's parameters (parsed by @api_view, or parsed now)."""
        data = g.get("api_params")
        if data is None:
            data = load_request_params()
            g.api_params = data
        strings = request.method not in _BODY_METHODS or request.mimetype in (
            "application/x-www-form-urlencoded", "multipart/form-data")
        return cls(data, strings=strings, allowed=allowed)

    # -- helpers -----------------------------------------------------------------------------------------
    def name(self, key: str) -> str:
        """The parameter's full name as the client wrote it (``splits[0][amount]``)."""
        return f"{self._prefix}[{key}]" if self._prefix else key

    def _get(self, key: str, required: bool) -> Any:
        self._seen.add(key)
        value = self._data.get(key, MISSING)
        if value is None:
            value = MISSING  # JSON null means "not given"
        if value is MISSING and required:
            raise invalid_param(self.name(key), f"Missing required parameter: {self.name(key)}.", "parameter_missing")
        return value

    def _reject_unknown(self, known: set[str]) -> None:
        for key in self._data:
            if key not in known:
                raise invalid_param(self.name(key), f"Received unknown parameter: {self.name(key)}.",
                                    "parameter_unknown")

    def done(self) -> None:
        """400 ``parameter_unknown`` naming the first parameter neither read nor listed in ``allowed``."""
        self._reject_unknown(self._seen)

    def has(self, key: str) -> bool:
        """Whether the client sent the parameter (non-null); does not count as reading it."""
        return self._data.get(key) is not None

    # -- accessors ---------------------------------------------------------------------------------------
    def string(self, key: str, *, required: bool = False, default: str | None = None,
               max_length: int = STRING_MAX_DEFAULT, allow_empty: bool = False,
               card_number_check: bool = True) -> str | None:
        """A string of at most ``max_length`` characters (empty only with ``allow_empty``) and without a card
        number (``card_number_check=False`` for numbers of another kind, see the module docstring)."""
        value = self._get(key, required)
        if value is MISSING:
            return default
        if not isinstance(value, str):
            raise invalid_param(self.name(key), f"{self.name(key)} must be a string.")
        if not value and not allow_empty:
            raise invalid_param(self.name(key), f"{self.name(key)} must not be empty.")
        if len(value) > max_length:
            raise invalid_param(self.name(key), f"{self.name(key)} must be at most {max_length} characters.")
        if card_number_check:
            refuse_card_number(self.name(key), value)
        return value

    def integer(self, key: str, *, required: bool = False, default: int | None = None,
                min_value: int | None = None, max_value: int | None = None) -> int | None:
        """A whole number (never a boolean or a float), within the bounds and a PostgreSQL bigint.

        A number out of range is named with the range ("must be at most 99999999") however large it is.
        """
        value = self._get(key, required)
        if value is MISSING:
            return default
        name = self.name(key)
        if isinstance(value, str) and self._strings and _INT_STRING.match(value):
            value = whole_number(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise invalid_param(name, f"{name} must be an integer.")
        highest = INT64_MAX if max_value is None else min(max_value, INT64_MAX)
        lowest = -INT64_MAX if min_value is None else max(min_value, -INT64_MAX)
        if value > highest:
            raise invalid_param(name, f"{name} must be at most {highest}.")
        if value < lowest:
            raise invalid_param(name, f"{name} must be at least {lowest}.")
        if not isinstance(value, int):
            raise invalid_param(name, f"{name} must be an integer.")
        return value

    def boolean(self, key: str, *, required: bool = False, default: bool | None = None) -> bool | None:
        """true/false (form and query: "true"/"false")."""
        value = self._get(key, required)
        if value is MISSING:
            return default
        if self._strings and value in ("true", "false"):
            return value == "true"
        if not isinstance(value, bool):
            raise invalid_param(self.name(key), f"{self.name(key)} must be a boolean (true or false).")
        return value

    def enum(self, key: str, choices: Iterable[str], *, required: bool = False,
             default: str | None = None) -> str | None:
        """One of ``choices``."""
        choices = tuple(choices)
        value = self._get(key, required)
        if value is MISSING:
            return default
        if not isinstance(value, str) or value not in choices:
            raise invalid_param(self.name(key), f"{self.name(key)} must be one of: {', '.join(choices)}.")
        return value

    def currency(self, key: str = "currency", *, required: bool = False, default: str | None = None) -> str | None:
        """An ISO 4217 code Kassa supports, normalized to upper case ("usd" -> "USD")."""
        value = self._get(key, required)
        if value is MISSING:
            return default
        try:
            return normalize_currency(value)
        except MoneyError:
            raise invalid_param(self.name(key),
                                f"{self.name(key)} must be a supported ISO 4217 currency code.") from None

    def email(self, key: str, *, required: bool = False, default: str | None = None) -> str | None:
        """A syntactically valid e-mail address (normalized; no DNS lookup)."""
        value = self.string(key, required=required, max_length=320)
        if value is None:
            return default
        try:
            return validate_email(value, check_deliverability=False).normalized
        except EmailNotValidError:
            raise invalid_param(self.name(key), f"{self.name(key)} must be a valid email address.") from None

    def metadata(self, key: str = "metadata") -> dict[str, str]:
        """Key-value strings the merchant attaches to an object ({} when absent); see the limits above."""
        value = self._get(key, False)
        name = self.name(key)
        if value is MISSING or value == "":  # "" in a form means "no metadata"
            return {}
        if not isinstance(value, dict):
            raise invalid_param(name, f"{name} must be an object of string keys and values.")
        if len(value) > METADATA_MAX_KEYS:
            raise invalid_param(name, f"{name} can have at most {METADATA_MAX_KEYS} keys.")
        result = {}
        for meta_key, meta_value in value.items():
            item = f"{name}[{meta_key}]"
            if not meta_key or len(meta_key) > METADATA_KEY_MAX or "[" in meta_key or "]" in meta_key:
                raise invalid_param(item, f"{name} keys must be 1 to {METADATA_KEY_MAX} characters without brackets.")
            refuse_card_number(name, meta_key)   # named by the object: the key itself is what must not echo
            if isinstance(meta_value, int) and not isinstance(meta_value, bool):
                meta_value = str(meta_value)
            if not isinstance(meta_value, str):
                raise invalid_param(item, f"{item} must be a string.")
            if len(meta_value) > METADATA_VALUE_MAX:
                raise invalid_param(item, f"{item} must be at most {METADATA_VALUE_MAX} characters.")
            refuse_card_number(item, meta_value)
            result[meta_key] = meta_value
        return result

    def object(self, key: str, *, required: bool = False) -> "Params | None":
        """A nested object as Params (call ``done()`` on it too); None when absent."""
        value = self._get(key, required)
        if value is MISSING:
            return None
        if not isinstance(value, dict):
            raise invalid_param(self.name(key), f"{self.name(key)} must be an object.")
        return Params(value, strings=self._strings, prefix=self.name(key))

    def objects(self, key: str, *, required: bool = False, max_items: int = 100) -> list["Params"]:
        """A list of objects, each as Params named ``key[i]``; [] when absent."""
        value = self._get(key, required)
        if value is MISSING:
            return []
        name = self.name(key)
        if not isinstance(value, list):
            raise invalid_param(name, f"{name} must be a list of objects.")
        if required and not value:
            raise invalid_param(name, f"{name} must not be empty.")
        if len(value) > max_items:
            raise invalid_param(name, f"{name} can have at most {max_items} items.")
        result = []
        for index, item in enumerate(value):
            if not isinstance(item, dict):
                raise invalid_param(f"{name}[{index}]", f"{name}[{index}] must be an object.")
            result.append(Params(item, strings=self._strings, prefix=f"{name}[{index}]"))
        return result

    def strings(self, key: str, *, required: bool = False, max_items: int = 100,
                max_length: int = STRING_MAX_DEFAULT, card_number_check: bool = True) -> list[str]:
        """A list of strings ([] when absent), none holding a card number (unless ``card_number_check=False``)."""
        value = self._get(key, required)
        if value is MISSING:
            return []
        name = self.name(key)
        if not isinstance(value, list) or not all(isinstance(v, str) and len(v) <= max_length for v in value):
            raise invalid_param(name, f"{name} must be a list of strings of at most {max_length} characters.")
        if len(value) > max_items:
            raise invalid_param(name, f"{name} can have at most {max_items} items.")
        if card_number_check:
            for index, item in enumerate(value):
                refuse_card_number(f"{name}[{index}]", item)
        return list(value)
