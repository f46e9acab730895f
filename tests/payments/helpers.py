"""Helpers of the payments tests: deps, a scripted in-process gateway, and ledger checks."""
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import func, select

from app.payments.deps import PaymentsDeps
from app.psp.interfaces import Lookup, Outcome, PspResult

HMAC_KEY = b"payments-test-ledger-key"


def make_deps(redis=None, enqueued: list | None = None, **overrides) -> PaymentsDeps:
    """PaymentsDeps for in-process tests; ``enqueued`` collects (func, args) instead of using RQ."""

    def enqueue(session, func_path, *args):
        if enqueued is not None:
            enqueued.append((func_path, args))

    values = dict(ledger_hmac_key=HMAC_KEY, enqueue=enqueue, redis=redis, confirm_wait_seconds=0)
    values.update(overrides)
    return PaymentsDeps(**values)


def result(outcome: Outcome, connector: str = "sandbox", **values) -> PspResult:
    return PspResult(outcome=outcome, connector=connector, **values)


def authorized(reference: str = "auth_1", connector: str = "sandbox", **values) -> PspResult:
    raw = values.pop("raw", {"card": {"brand": "visa", "last4": "4242", "exp_month": 12, "exp_year": 2035,
                                      "fingerprint": "fp_1"}})
    return PspResult(outcome=Outcome.SUCCEEDED, connector=connector, psp_reference=reference,
                     raw=raw, **{"status": "authorized", **values})


@dataclass
class ScriptedGateway:
    """An in-process Gateway answering from scripts; records every call.

    Lookups (``retrieve``, ``retrieve_refund``, ``find_refund``) answer Lookups; a PspResult in their
    scripts stands for "found". Unscripted, an authorization or a refund by key is absent and a refund by
    its id is found succeeded.
    """

    authorize_results: list = field(default_factory=list)
    capture_results: list = field(default_factory=list)
    void_results: list = field(default_factory=list)
    refund_results: list = field(default_factory=list)
    retrieve_results: list = field(default_factory=list)
    refund_lookups: list = field(default_factory=list)
    find_refund_results: list = field(default_factory=list)
    calls: list = field(default_factory=list)
    authorize_requests: list = field(default_factory=list)
    names: tuple = ("sandbox", "sandbox_b")
    window: timedelta | None = None   # every connector's idempotency window

    def _next(self, queue: list, default: PspResult) -> PspResult:
        return queue.pop(0) if queue else default

    def authorize(self, vault, request):
        self.calls.append(("authorize", request.idempotency_key))
        self.authorize_requests.append(request)
        return self._next(self.authorize_results, authorized(f"auth_{request.reference}"))

    def capture(self, connector, psp_reference, amount, currency, idempotency_key, **owner):
        self.calls.append(("capture", idempotency_key, amount))
        return self._next(self.capture_results, PspResult(Outcome.SUCCEEDED, connector, psp_reference,
                                                          status="captured", amount=amount))

    def void(self, connector, psp_reference, idempotency_key, **owner):
        self.calls.append(("void", idempotency_key))
        return self._next(self.void_results, PspResult(Outcome.SUCCEEDED, connector, psp_reference, status="voided"))

    def refund(self, connector, psp_reference, amount, currency, idempotency_key, **owner):
        self.calls.append(("refund", idempotency_key, amount))
        return self._next(self.refund_results, PspResult(Outcome.SUCCEEDED, connector, f"rf_{idempotency_key}",
                                                         status="succeeded", amount=amount))

    def _lookup(self, queue: list, default: Lookup) -> Lookup:
        answer = self._next(queue, default)
        return Lookup.of(answer) if isinstance(answer, PspResult) else answer

    def retrieve(self, connector, *, psp_reference=None, idempotency_key=None, **owner):
        self.calls.append(("retrieve", connector, psp_reference, idempotency_key))
        return self._lookup(self.retrieve_results, Lookup.absent(connector, "no such authorization"))

    def retrieve_refund(self, connector, psp_refund_reference, **owner):
        self.calls.append(("retrieve_refund", psp_refund_reference))
        return self._lookup(self.refund_lookups, Lookup.of(PspResult(
            Outcome.SUCCEEDED, connector, psp_refund_reference, status="succeeded")))

    def find_refund(self, connector, psp_reference, idempotency_key, **owner):
        self.calls.append(("find_refund", psp_reference, idempotency_key))
        return self._lookup(self.find_refund_results, Lookup.absent(connector, "no such refund"))

    def idempotency_window(self, connector):
        return self.window

    def connector_names(self, vault):
        return list(self.names)

    def route(self, vault, *, merchant_id, currency, livemode):
        return list(self.names)

    def credential(self, connector, merchant_id, livemode):
        return "platform"


def ledger_balances(session, scope) -> dict[str, int]:
    """Every account code of the book with its balance (normal direction)."""
    from app.ledger.models import LedgerAccount

    rows = session.execute(select(LedgerAccount.code, LedgerAccount.balance).where(
        LedgerAccount.merchant_id == scope.merchant_id, LedgerAccount.livemode == scope.livemode)).all()
    return {code: balance for code, balance in rows}


def assert_ledger_balanced(session, scope) -> None:
    """Debits equal credits per currency over all entries of the book, and per transaction."""
    from app.ledger.models import Entry

    rows = session.execute(
        select(Entry.transaction_id, Entry.currency, Entry.direction, func.sum(Entry.amount))
        .where(Entry.merchant_id == scope.merchant_id, Entry.livemode == scope.livemode)
        .group_by(Entry.transaction_id, Entry.currency, Entry.direction)).all()
    sums: dict = {}
    for txn, currency, direction, total in rows:
        sums.setdefault((txn, currency), {"debit": 0, "credit": 0})[direction] += total
    for key, value in sums.items():
        assert value["debit"] == value["credit"], f"unbalanced {key}: {value}"


def event_types(session, scope, object_id: str) -> list[str]:
    from app.events import Event

    return list(session.scalars(scope.select(Event, Event.object_id == object_id).order_by(Event.id)
                                .with_only_columns(Event.type)))
