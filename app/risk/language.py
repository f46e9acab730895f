"""The rule language: Radar's syntax over typed signals, parsed by a lark LALR grammar, never by ``eval``.

    :risk_score: > 75
    :card_country: != :ip_country: and :amount: > 500
    :email_domain: in @disposable_domains
    not :is_3d_secure: and (:card_funding: = 'prepaid' or :ip_country: in ('RU', 'KP'))
    is_missing(:ip_address:)

A rule is a boolean expression: comparisons (``= != < <= > >=``) between a signal and a literal or another
signal of the same type, ``in @list`` (a value list, resolved by alias when the rule is saved), ``in (...)``
(at most 100 literals), ``and``/``or``/``not`` (any case), parentheses, boolean signals on their own, and the
documented functions (``FUNCTIONS``). There is no arithmetic (so no exponent), no attribute access, no other
call, no loop: an expression is compiled into a tree of fixed node types whose evaluation is bounded by its
size, which is itself bounded (``MAX_LENGTH`` characters, ``MAX_DEPTH`` nesting, ``MAX_TERMS`` terms).

Signals have types (``SIGNALS``, documented in the README with their sources); a rule is type-checked when it
is saved and refused with the position (line, column, offset) of the first error. A signal that is missing
(no IP given, Redis away for velocity) makes every comparison on it false; ``is_missing(:signal:)`` tests for it.
Numbers are decimals (``Decimal``), never floats: ``:amount:`` is in major units (``500`` is 500.00).
"""
from __future__ import annotations

import operator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Callable, Iterable

from lark import Lark, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

MAX_LENGTH = 2000       # characters of a rule
MAX_DEPTH = 12          # nesting of and/or/not/parentheses
MAX_TERMS = 50          # comparisons and boolean terms in one rule
MAX_IN_VALUES = 100     # literals in one ``in (...)``
MAX_STRING = 200        # characters of a string literal
MAX_NUMBER_DIGITS = 18  # digits of a number literal

# Types of signals and literals. "string" compares case-insensitively (emails, domains, brands, currencies);
# "country" is an ISO 3166-1 alpha-2 code; "ip" an IPv4 or IPv6 address.
TYPES = ("number", "string", "country", "ip", "boolean")
STRINGLIKE = ("string", "country", "ip")
ORDERED = ("number",)
# Which list item types a signal type may be looked up in.
LIST_TYPES = {
    "card_fingerprint": ("card_fingerprint", "string", "case_sensitive_string"),
    "card_bin": ("card_bin", "string", "case_sensitive_string"),
    "email": ("email", "string", "case_sensitive_string"),
    "email_domain": ("email_domain", "string", "case_sensitive_string"),
    "ip_address": ("ip_address",),
    "country": ("country", "string", "case_sensitive_string"),
    "string": ("string", "case_sensitive_string"),
}


@dataclass(frozen=True)
class SignalSpec:
    type: str
    source: str
    description: str
    # The item type a value list must have to be used with ``in @list`` on this signal.
    list_kind: str = "string"
    depends_on_3ds: bool = False
    # Counted across every merchant (card testing crosses merchants): the score and the platform's rules use
    # it; a merchant's rule may not, or its outcomes would tell the merchant about other merchants' traffic.
    platform_wide: bool = False


def _velocity_specs() -> dict[str, SignalSpec]:
    specs = {}
    windows = {"10m": "10 minutes", "1h": "1 hour", "24h": "24 hours"}
    for subject, scope in (("card", "platform-wide per mode"), ("email", "per merchant and mode"),
                           ("ip", "platform-wide per mode")):
        wide = subject != "email"
        for window, words in windows.items():
            specs[f"{subject}_payments_{window}"] = SignalSpec(
                "number", "Redis velocity counters", f"confirmations of this {subject} in the last {words} "
                f"(this one included; {scope})", platform_wide=wide)
            specs[f"{subject}_declines_{window}"] = SignalSpec(
                "number", "Redis velocity counters", f"declined or blocked confirmations of this {subject} in the "
                f"last {words} ({scope})", platform_wide=wide)
            if subject != "card":
                specs[f"{subject}_distinct_cards_{window}"] = SignalSpec(
                    "number", "Redis velocity counters", f"distinct cards used with this {subject} in the last "
                    f"{words} ({scope})", platform_wide=wide)
    specs["card_amount_24h"] = SignalSpec(
        "number", "Redis velocity counters", "amount confirmed with this card in this currency in the last 24 hours, "
        "in major units, this payment included (platform-wide per mode)", platform_wide=True)
    return specs


SIGNALS: dict[str, SignalSpec] = {
    "amount": SignalSpec("number", "payment", "the amount in major units of its currency (500 is 500.00)"),
    "currency": SignalSpec("string", "payment", "ISO 4217 code, lower case as Radar writes it ('eur')"),
    "card_brand": SignalSpec("string", "vault token", "visa, mastercard, amex, discover, unknown"),
    "card_funding": SignalSpec("string", "vault token", "credit, debit, prepaid, unknown"),
    "card_country": SignalSpec("country", "vault token", "issuing country of the card", list_kind="country"),
    "card_bin": SignalSpec("string", "vault token", "the card's first six digits (BIN/IIN)", list_kind="card_bin"),
    "card_fingerprint": SignalSpec("string", "vault token", "the vault's keyed fingerprint of the card number",
                                   list_kind="card_fingerprint"),
    "card_risk_hint": SignalSpec("string", "vault token", "what the vault knows about the card ('fraudulent' for "
                                 "a card reported as fraud), missing otherwise"),
    "email": SignalSpec("string", "payment (customer_email)", "the shopper's email, lower case", list_kind="email"),
    "email_domain": SignalSpec("string", "payment (customer_email)", "the email's domain, lower case",
                               list_kind="email_domain"),
    "ip_address": SignalSpec("ip", "checkout request (ProxyFix) or the API's customer_ip",
                             "the shopper's IP address", list_kind="ip_address"),
    "ip_country": SignalSpec("country", "iptocc (offline)", "country of the shopper's IP address",
                             list_kind="country"),
    "card_ip_country_mismatch": SignalSpec("boolean", "derived", "card country and IP country are both known "
                                           "and differ"),
    "is_new_card": SignalSpec("boolean", "payments of this merchant", "first time this merchant sees this card"),
    "is_3d_secure": SignalSpec("boolean", "PSP", "3-D Secure authentication succeeded (after the challenge)",
                               depends_on_3ds=True),
    "three_d_secure_result": SignalSpec("string", "PSP", "'authenticated', 'failed' or 'not_attempted'",
                                        depends_on_3ds=True),
    "risk_score": SignalSpec("number", "scoring (versioned weights)", "0 to 99"),
    "risk_level": SignalSpec("string", "scoring", "'normal', 'elevated' or 'highest'"),
    **_velocity_specs(),
}

# The documented functions: name -> (argument kind, result type). Nothing else can be called.
FUNCTIONS = {"is_missing": ("signal", "boolean")}

GRAMMAR = r"""
?start: or_expr
?or_expr: and_expr (_OR and_expr)*
?and_expr: not_expr (_AND not_expr)*
?not_expr: _NOT not_expr -> negation
         | atom
?atom: comparison
     | membership
     | call
     | signal -> truth
     | "(" or_expr ")"
comparison: operand OP operand
membership: operand _IN listref
          | operand _IN "(" literal ("," literal)* ")" -> inline_set
          | operand _NOT _IN listref -> not_membership
          | operand _NOT _IN "(" literal ("," literal)* ")" -> not_inline_set
call: NAME "(" signal ")"
?operand: signal | literal
?literal: STRING -> string
        | NUMBER -> number
        | _TRUE -> true
        | _FALSE -> false
signal: ":" NAME ":"
listref: "@" NAME
OP: "<=" | ">=" | "!=" | "=" | "<" | ">"
_OR.2: /or\b/i
_AND.2: /and\b/i
_NOT.2: /not\b/i
_IN.2: /in\b/i
_TRUE.2: /true\b/i
_FALSE.2: /false\b/i
NAME: /[a-z_][a-z0-9_]{0,99}/i
STRING: /'[^'\\\n]{0,200}'/ | /"[^"\\\n]{0,200}"/
NUMBER: /-?[0-9]{1,18}(\.[0-9]{1,18})?(?![0-9a-z_.])/i
%import common.WS
%ignore WS
"""

_PARSER = Lark(GRAMMAR, parser="lalr", propagate_positions=True, maybe_placeholders=False)


class RuleError(ValueError):
    """A rule refused on save: the message and where (1-based line and column, 0-based offset)."""

    def __init__(self, message: str, *, line: int | None = None, column: int | None = None,
                 position: int | None = None):
        where = f" (line {line}, column {column})" if line is not None else ""
        super().__init__(message + where)
        self.message = message
        self.line = line
        self.column = column
        self.position = position

    def as_dict(self) -> dict:
        return {"message": self.message, "line": self.line, "column": self.column, "position": self.position}


@dataclass(frozen=True)
class ListRef:
    """A value list a rule names: ``owner`` ("platform" or "merchant"), its id and its item type."""

    owner: str
    id: str
    alias: str
    item_type: str


# Resolves an alias when a rule is saved (and again when rules load for evaluation); None: no such list.
ListResolver = Callable[[str], "ListRef | None"]
# Answers whether a value list holds a signal's value (batched by the engine before evaluating).
Membership = Callable[[ListRef, str, Any], bool]


def _error_at(message: str, meta_or_token) -> RuleError:
    line = getattr(meta_or_token, "line", None)
    column = getattr(meta_or_token, "column", None)
    position = getattr(meta_or_token, "start_pos", None)
    return RuleError(message, line=line, column=column, position=position)


# ---------------------------------------------------------------- compiled nodes (fixed types, no eval)

@dataclass(frozen=True)
class _Const:
    value: Any
    type: str

    def value_of(self, signals: dict) -> Any:
        return self.value


@dataclass(frozen=True)
class _Signal:
    name: str
    type: str

    def value_of(self, signals: dict) -> Any:
        return signals.get(self.name)


def _norm(value: Any, type_: str) -> Any:
    if isinstance(value, str) and type_ in STRINGLIKE:
        return value.casefold()
    return value


_COMPARE = {
    "=": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
}


@dataclass(frozen=True)
class _Compare:
    left: Any
    op: str
    right: Any

    def test(self, signals: dict, membership: Membership) -> bool:
        a, b = self.left.value_of(signals), self.right.value_of(signals)
        if a is None or b is None:
            return False
        return _COMPARE[self.op](_norm(a, self.left.type), _norm(b, self.right.type))


@dataclass(frozen=True)
class _InList:
    signal: _Signal
    list: ListRef
    negate: bool

    def test(self, signals: dict, membership: Membership) -> bool:
        value = signals.get(self.signal.name)
        if value is None:
            return False
        return membership(self.list, self.signal.name, value) != self.negate


@dataclass(frozen=True)
class _InSet:
    operand: Any
    values: frozenset
    negate: bool

    def test(self, signals: dict, membership: Membership) -> bool:
        value = self.operand.value_of(signals)
        if value is None:
            return False
        return (_norm(value, self.operand.type) in self.values) != self.negate


@dataclass(frozen=True)
class _Truth:
    signal: _Signal

    def test(self, signals: dict, membership: Membership) -> bool:
        return signals.get(self.signal.name) is True


@dataclass(frozen=True)
class _IsMissing:
    signal: _Signal

    def test(self, signals: dict, membership: Membership) -> bool:
        return signals.get(self.signal.name) is None


@dataclass(frozen=True)
class _Not:
    inner: Any

    def test(self, signals: dict, membership: Membership) -> bool:
        return not self.inner.test(signals, membership)


@dataclass(frozen=True)
class _All:
    parts: tuple

    def test(self, signals: dict, membership: Membership) -> bool:
        return all(part.test(signals, membership) for part in self.parts)


@dataclass(frozen=True)
class _Any:
    parts: tuple

    def test(self, signals: dict, membership: Membership) -> bool:
        return any(part.test(signals, membership) for part in self.parts)


# ---------------------------------------------------------------- the nodes as closures (the engine's hot path)

_OPERATORS = {"=": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt,
              ">=": operator.ge}


def _closure(node) -> Callable[[dict, Membership], bool]:
    """The node's ``test`` as nested closures: the same answers for every input (the nodes' ``test`` methods
    stay the reference), without the per-term method dispatch, value_of calls and operator table look-ups.
    Only the fixed node types above are turned into closures; nothing here runs text."""
    kind = type(node)
    if kind is _All:
        parts = tuple(_closure(part) for part in node.parts)

        def every(signals, membership):
            for part in parts:
                if not part(signals, membership):
                    return False
            return True
        return every
    if kind is _Any:
        parts = tuple(_closure(part) for part in node.parts)

        def some(signals, membership):
            for part in parts:
                if part(signals, membership):
                    return True
            return False
        return some
    if kind is _Not:
        inner = _closure(node.inner)
        return lambda signals, membership: not inner(signals, membership)
    if kind is _Compare and type(node.left) is _Signal and type(node.right) is _Const:
        name, compare = node.left.name, _OPERATORS[node.op]
        constant = _norm(node.right.value, node.right.type)
        if node.left.type in STRINGLIKE:
            def compare_text(signals, membership):
                value = signals.get(name)
                if value is None:
                    return False
                return compare(value.casefold() if isinstance(value, str) else value, constant)
            return compare_text

        def compare_value(signals, membership):
            value = signals.get(name)
            return value is not None and compare(value, constant)
        return compare_value
    if kind is _InSet and type(node.operand) is _Signal:
        name, values, negate = node.operand.name, node.values, node.negate
        fold = node.operand.type in STRINGLIKE

        def in_set(signals, membership):
            value = signals.get(name)
            if value is None:
                return False
            if fold and isinstance(value, str):
                value = value.casefold()
            return (value in values) != negate
        return in_set
    return node.test  # _InList, _Truth, _IsMissing, comparisons of two signals: already one call


@dataclass
class CompiledRule:
    """A checked rule: evaluate it against signals; the lists and signals it uses are known."""

    text: str
    root: Any
    signals: frozenset
    lists: tuple[ListRef, ...]
    # (signal name, list) pairs: what the engine looks up in one batch before evaluating.
    lookups: tuple[tuple[str, ListRef], ...] = field(default_factory=tuple)
    # The root's test as closures (``_closure``), built on first use.
    _test: Any = field(default=None, init=False, repr=False, compare=False)

    @property
    def uses_3ds(self) -> bool:
        return any(SIGNALS[name].depends_on_3ds for name in self.signals)

    def evaluate(self, signals: dict, membership: Membership) -> bool:
        test = self._test
        if test is None:
            test = self._test = _closure(self.root)
        return bool(test(signals, membership))


# ---------------------------------------------------------------- compiler

class _Compiler:
    def __init__(self, resolve: ListResolver):
        self.resolve = resolve
        self.terms = 0
        self.signals: set[str] = set()
        self.lists: dict[str, ListRef] = {}
        self.lookups: list[tuple[str, ListRef]] = []

    def compile(self, tree, depth: int = 0):
        if depth > MAX_DEPTH:
            raise _error_at(f"The rule nests deeper than {MAX_DEPTH} levels.", getattr(tree, "meta", None))
        kind = tree.data
        if kind in ("or_expr", "and_expr"):
            parts = tuple(self.compile(child, depth + 1) for child in tree.children)
            return _Any(parts) if kind == "or_expr" else _All(parts)
        if kind == "negation":
            return _Not(self.compile(tree.children[0], depth + 1))
        self._count(tree)
        if kind == "comparison":
            left, op, right = tree.children
            left, right = self.operand(left), self.operand(right)
            self._check_comparable(left, str(op), right, op)
            return _Compare(left, str(op), right)
        if kind in ("membership", "not_membership"):
            operand, listref = tree.children
            operand = self.operand(operand)
            if not isinstance(operand, _Signal):
                raise _error_at("Only a signal can be looked up in a list.", tree.meta)
            ref = self.list_for(operand, listref)
            self.lookups.append((operand.name, ref))
            return _InList(operand, ref, kind == "not_membership")
        if kind in ("inline_set", "not_inline_set"):
            operand, *values = tree.children
            operand = self.operand(operand)
            if len(values) > MAX_IN_VALUES:
                raise _error_at(f"A list in a rule holds at most {MAX_IN_VALUES} values.", tree.meta)
            literals = [self.operand(v) for v in values]
            for literal in literals:
                self._check_comparable(operand, "=", literal, getattr(values[0], "meta", tree.meta))
            return _InSet(operand, frozenset(_norm(v.value, v.type) for v in literals), kind == "not_inline_set")
        if kind == "truth":
            signal = self.operand(tree.children[0])
            if signal.type != "boolean":
                raise _error_at(f"The signal :{signal.name}: is a {signal.type}, not a condition: compare it.",
                                tree.meta)
            return _Truth(signal)
        if kind == "call":
            name, argument = tree.children
            if str(name) not in FUNCTIONS:
                raise _error_at(f"Unknown function {name}(); the functions are: {', '.join(FUNCTIONS)}.", name)
            return _IsMissing(self.operand(argument))
        raise _error_at("This is not a condition.", getattr(tree, "meta", None))

    def _count(self, tree):
        self.terms += 1
        if self.terms > MAX_TERMS:
            raise _error_at(f"A rule has at most {MAX_TERMS} conditions.", tree.meta)

    def operand(self, node):
        if isinstance(node, Tree):
            if node.data == "signal":
                token = node.children[0]
                name = str(token).lower()
                spec = SIGNALS.get(name)
                if spec is None:
                    raise _error_at(f"Unknown signal :{token}:.", token)
                self.signals.add(name)
                return _Signal(name, spec.type)
            if node.data == "string":
                token = node.children[0]
                return _Const(str(token)[1:-1], "string")
            if node.data == "number":
                token = node.children[0]
                try:
                    return _Const(Decimal(str(token)), "number")
                except InvalidOperation:
                    raise _error_at(f"{token} is not a number.", token) from None
            if node.data in ("true", "false"):
                return _Const(node.data == "true", "boolean")
        raise _error_at("Expected a signal or a value.", getattr(node, "meta", None))

    def list_for(self, signal: _Signal, listref) -> ListRef:
        token = listref.children[0]
        alias = str(token)
        ref = self.lists.get(alias) or self.resolve(alias)
        if ref is None:
            raise _error_at(f"No value list @{alias}.", token)
        allowed = LIST_TYPES.get(SIGNALS[signal.name].list_kind, ("string", "case_sensitive_string"))
        if ref.item_type not in allowed:
            raise _error_at(f"@{alias} holds {ref.item_type} items; :{signal.name}: needs a list of "
                            f"{' or '.join(allowed)}.", token)
        self.lists[alias] = ref
        return ref

    @staticmethod
    def _check_comparable(left, op: str, right, where):
        def family(t):
            return "string" if t in STRINGLIKE else t
        both_signals = isinstance(left, _Signal) and isinstance(right, _Signal)
        if both_signals and left.type != right.type:
            raise _error_at(f":{left.name}: ({left.type}) and :{right.name}: ({right.type}) cannot be compared.",
                            where)
        if family(left.type) != family(right.type):
            raise _error_at(f"A {left.type} cannot be compared with a {right.type}.", where)
        if op not in ("=", "!=") and left.type not in ORDERED:
            raise _error_at(f"{op} compares numbers; a {left.type} takes = or !=.", where)


def _parse(text: str) -> Tree:
    if not isinstance(text, str) or not text.strip():
        raise RuleError("The rule is empty.", line=1, column=1, position=0)
    if len(text) > MAX_LENGTH:
        raise RuleError(f"A rule is at most {MAX_LENGTH} characters long.", line=1, column=1, position=MAX_LENGTH)
    # Nesting is bounded before the parser sees it (the parser itself never recurses, but the tree would).
    depth = 0
    for offset, char in enumerate(text):
        if char == "(":
            depth += 1
            if depth > MAX_DEPTH:
                line = text.count("\n", 0, offset) + 1
                column = offset - (text.rfind("\n", 0, offset) + 1) + 1
                raise RuleError(f"The rule nests deeper than {MAX_DEPTH} levels.", line=line, column=column,
                                position=offset)
        elif char == ")":
            depth -= 1
    try:
        return _PARSER.parse(text)
    except UnexpectedCharacters as exc:
        raise RuleError(f"Unexpected character {text[exc.pos_in_stream]!r}.", line=exc.line, column=exc.column,
                        position=exc.pos_in_stream) from None
    except UnexpectedEOF:
        line = text.count("\n") + 1
        column = len(text) - (text.rfind("\n") + 1) + 1
        raise RuleError("The rule ends too early.", line=line, column=column, position=len(text)) from None
    except UnexpectedToken as exc:
        token = exc.token
        if token.type == "$END":
            line = text.count("\n") + 1
            column = len(text) - (text.rfind("\n") + 1) + 1
            raise RuleError("The rule ends too early.", line=line, column=column, position=len(text)) from None
        raise RuleError(f"Unexpected {str(token)!r}.", line=exc.line, column=exc.column,
                        position=exc.pos_in_stream) from None
    except UnexpectedInput as exc:
        raise RuleError("The rule cannot be read.", line=getattr(exc, "line", None),
                        column=getattr(exc, "column", None), position=getattr(exc, "pos_in_stream", None)) from None


def compile_rule(text: str, *, lists: ListResolver | None = None) -> CompiledRule:
    """Parse and type-check a rule; raise RuleError with the position of the first error."""
    tree = _parse(text)
    compiler = _Compiler(lists or (lambda alias: None))
    root = compiler.compile(tree)
    if isinstance(root, (_Const, _Signal)):
        raise RuleError("A rule must be a condition.", line=1, column=1, position=0)
    return CompiledRule(text=text, root=root, signals=frozenset(compiler.signals),
                        lists=tuple(compiler.lists.values()), lookups=tuple(dict.fromkeys(compiler.lookups)))


def signal_names() -> Iterable[str]:
    return SIGNALS.keys()
