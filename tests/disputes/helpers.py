"""Helpers of the disputes tests: captured split payments, refunds, dispute notices through the callback path,
and the ledger checks every path ends with."""
import time
from dataclasses import dataclass

from flask import current_app
from sqlalchemy import func, select

from app.ids import new_id
from app.jobs.payments import _run_attempt, _run_refund
from app.ledger.models import Entry, JournalTransaction, LedgerAccount
from app.payments import idempotency
from app.payments.deps import deps_for
from app.payments.models import Payment
from app.psp import callbacks as psp_callbacks
from app.psp.callbacks import PLATFORM, CallbackScope
from app.psp.interfaces import CallbackEvent
from app.scoping import Scope
from tests.payments.helpers import ScriptedGateway, make_deps

SANDBOX = CallbackScope("sandbox", False, PLATFORM)
DAY = 86400


def deps(**overrides):
    """PaymentsDeps with the app's own ledger key (verify checks what is posted with it)."""
    return make_deps(ledger_hmac_key=deps_for(current_app).ledger_hmac_key, **overrides)


def seller(session, scope: Scope, name: str) -> str:
    from app.payments.service import create_seller

    row = create_seller(session, scope, name=name)
    session.commit()
    return row.id


def captured(session, scope: Scope, split: list[tuple[str, int, int]] | None = None, *, amount: int | None = None,
             currency: str = "USD") -> dict:
    """A payment captured in full through the payments service (scripted PSP); its API object."""
    # A token pays for one payment only (payment_token_bindings): each payment gets its own.
    params = {"amount": amount or sum(part[1] for part in split), "currency": currency,
              "payment_method": new_id("tok"), "confirm": True}
    if split:
        params["split"] = [{"seller": s, "amount": a, "fee": f} for s, a, f in split]
    body = idempotency.execute(session, scope, "payment.create", params, key=None, deps=deps()).body
    _run_attempt(body["attempts"][0]["id"], deps(), ScriptedGateway())
    session.commit()
    return payment_object(session, scope, body["id"])


def payment_object(session, scope: Scope, payment_id: str) -> dict:
    from app.payments.serializers import payment_object as serialize

    body = serialize(session, scope.get(session, Payment, payment_id))
    session.commit()
    return body


def refund(session, scope: Scope, payment_id: str, amount: int, sellers: list | None = None) -> dict:
    """A refund that the (scripted) PSP accepts; its API object once booked."""
    params = {"payment": payment_id, "amount": amount}
    if sellers:
        params = {"payment": payment_id, "sellers": [{"seller": s, "amount": a} for s, a in sellers]}
    body = idempotency.execute(session, scope, "refund.create", params, key=None, deps=deps()).body
    _run_refund(body["id"], deps(), ScriptedGateway())
    session.commit()
    return body


def dispute_data(reference: str, status: str, amount: int, *, currency: str = "USD", reason: str = "fraudulent",
                 created: int | None = None, due_by: int | None = None, withdrawn: bool | None = None,
                 reinstated: bool = False, fee: int | None = 1500, fee_returned: int | None = None,
                 submission_count: int = 0, authorization: str | None = None) -> dict:
    """A dispute as connectors normalize it (app/psp/interfaces.py CallbackEvent)."""
    inquiry = status.startswith("warning_")
    withdrawn = (not inquiry) if withdrawn is None else withdrawn
    created = created or int(time.time())
    return {"id": reference, "amount": amount, "currency": currency, "reason": reason, "status": status,
            "created": created, "due_by": due_by or created + 7 * DAY, "submission_count": submission_count,
            "is_charge_refundable": inquiry, "funds_withdrawn": withdrawn, "funds_reinstated": reinstated,
            "fee": {"amount": fee, "currency": currency} if withdrawn and fee else None,
            "fee_returned": {"amount": fee_returned, "currency": currency} if fee_returned else None,
            "authorization": authorization}


def deliver(session, payment: dict, callback_id: str, type_: str, data: dict, *, created: int | None = None,
            scope: CallbackScope = SANDBOX) -> str | None:
    """Store and process a dispute callback about ``payment`` as the hook does; the callback's result."""
    event = CallbackEvent(id=callback_id, type=type_, psp_reference=data.get("authorization") or
                          payment_reference(session, payment), data=data, created=created or data["created"],
                          connector="sandbox", livemode=scope.livemode)
    row_id, _new = psp_callbacks.store_callback(session, scope, event)
    session.commit()
    result = psp_callbacks.process_callback(session, row_id)
    session.commit()
    return result


def payment_reference(session, payment: dict) -> str:
    row = session.scalars(select(Payment).where(Payment.id == payment["id"])).one()
    reference = row.psp_reference
    session.commit()
    return reference


@dataclass
class Books:
    accounts: dict[str, int]

    def get(self, code: str) -> int:
        return self.accounts.get(code, 0)


def books(session, scope: Scope) -> Books:
    rows = session.execute(select(LedgerAccount.code, LedgerAccount.balance).where(
        LedgerAccount.merchant_id == scope.merchant_id, LedgerAccount.livemode == scope.livemode)).all()
    session.commit()
    return Books({code: balance for code, balance in rows})


def held_by_orders(session, scope: Scope, payment_id: str) -> int:
    """What the payment's orders hold in the ledger: its postings' net credits to sellers and platform fees."""
    rows = session.execute(
        select(Entry.direction, func.sum(Entry.amount))
        .join(JournalTransaction, JournalTransaction.id == Entry.transaction_id)
        .join(LedgerAccount, LedgerAccount.id == Entry.account_id)
        .where(Entry.merchant_id == scope.merchant_id, Entry.livemode == scope.livemode,
               LedgerAccount.account_type.in_(("seller_payable", "merchant_revenue")),
               JournalTransaction.reference.in_(_references(session, scope, payment_id)))
        .group_by(Entry.direction)).all()
    session.commit()
    sums = dict(rows)
    return int(sums.get("credit", 0)) - int(sums.get("debit", 0))


def _references(session, scope: Scope, payment_id: str) -> list[str]:
    from app.disputes.models import Dispute
    from app.payments.models import Refund

    refunds = session.scalars(scope.select(Refund, Refund.payment_id == payment_id).with_only_columns(Refund.id))
    disputes = session.scalars(scope.select(Dispute, Dispute.payment_id == payment_id).with_only_columns(Dispute.id))
    return [payment_id, *refunds, *disputes]


def verify_ledger(app) -> None:
    """`flask ledger verify` over the whole ledger passes."""
    result = app.test_cli_runner().invoke(args=["ledger", "verify"])
    assert result.exit_code == 0, result.output
