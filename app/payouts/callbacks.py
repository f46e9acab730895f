"""The sandbox payout rail's callbacks: ``bank_transfer.paid`` / ``bank_transfer.failed`` (sandbox_psp/transfers.py)
received on /hooks/sandbox, stored once per callback id (app/psp/callbacks.py), then applied here.

The transfer's ``id`` is the payout id. ``payout_transfer_owner`` finds the payout across books on purpose (as the
dispute resolver does), so that the callback's scope decides: the sandbox's secret speaks for test mode only, and
a live payout of the same id is refused (``rejected``), never touched. An id that names no payout matches nothing
(``unmatched``: no effect). The handler applies the outcome inside the payout's book through the same service
function as the status query (``service.apply_rail_notice``: mark paid / mark failed under the payout's row lock),
so a replayed or late callback, or the status query answering first, changes nothing twice. The status query
(app/jobs/payouts.py) stays the fallback for a callback that never arrives.

Registered in app.psp.callbacks when app.payouts is imported. No Flask here but the handler's glue, which takes the
running app's ledger key as the other handlers take their collaborators.
"""
import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.payouts import service
from app.payouts.models import Payout
from app.payouts.rail import Transfer
from app.psp.callbacks import CALLBACK_HANDLERS, PLATFORM, REFERENCE_RESOLVERS, CallbackOwner, CallbackScope
from app.psp.interfaces import CallbackEvent

log = logging.getLogger(__name__)

TRANSFER_TYPES = ("bank_transfer.paid", "bank_transfer.failed")


def payout_transfer_owner(session: Session, scope: CallbackScope, event: CallbackEvent) -> CallbackOwner | None:
    """The book of the payout a sandbox transfer callback names (any mode: the scope's check refuses the other)."""
    if event.type not in TRANSFER_TYPES or scope.psp != "sandbox" or not isinstance(event.psp_reference, str):
        return None
    known = session.execute(select(Payout.merchant_id, Payout.livemode, Payout.id)
                            .where(Payout.id == event.psp_reference).limit(1)).one_or_none()
    if known is None:
        return None
    # The rail is the platform's bank (SANDBOX_PSP_URL / _SECRET), whoever the merchant's PSP accounts are.
    return CallbackOwner(known.merchant_id, known.livemode, "payout", known.id, "sandbox", credential=PLATFORM)


def on_transfer_notice(session: Session, event: CallbackEvent, owner: CallbackOwner) -> None:
    """Apply a transfer's outcome to the owner's payout (the callback's own psp.bank_transfer.* event is recorded
    in the owner's book)."""
    from app.ledger.integration import ledger_hmac_key

    data = event.data
    payout = service.get_payout(session, owner.scope, owner.object_id)
    if (data.get("amount"), str(data.get("currency") or "").upper()) != (payout.amount, payout.currency.upper()):
        log.warning("transfer callback %s names payout %s with another amount or currency; ignored", event.id,
                    payout.id)
        return None
    status = "paid" if event.type == "bank_transfer.paid" else "failed"
    answer = Transfer("found", status, data.get("failure_code") if status == "failed" else None, data.get("id"))
    result = service.apply_rail_notice(session, owner.scope, payout.id, answer, hmac_key=ledger_hmac_key())
    log.info("transfer callback %s on payout %s: %s", event.id, payout.id, result)
    return None


for _type in TRANSFER_TYPES:
    CALLBACK_HANDLERS[_type] = on_transfer_notice
if payout_transfer_owner not in REFERENCE_RESOLVERS:
    REFERENCE_RESOLVERS.insert(0, payout_transfer_owner)
