"""SEPA credit-transfer export: payouts as a pain.001.001.03 file (sepaxml) for platforms that pay from their own
bank, each payout in exactly one file.

``build_pain001`` makes the file (schema-validated by sepaxml) from transfers and the debtor account; the payout
id is each transfer's EndToEndId, so the bank statement names the payout it paid or returned. ``export_transfers``
claims the payouts in ``payout_export_items`` first, whose key (merchant_id, payout_id) lets a payout into one
export only: a second export, even a concurrent one (it waits for the first's commit on that key, then skips),
never lists it again. The stored file is sealed like the account numbers in it. Never imports Flask; never
commits.
"""
from dataclasses import dataclass
from datetime import date, datetime

from sepaxml import SepaTransfer
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from app.accounts.audit import audit
from app.crypto import SecretBox
from app.ids import new_id
from app.models_base import utcnow
from app.payouts.bank_account_models import PayoutExport, PayoutExportItem, export_aad
from app.payouts.bank_accounts import PayoutDestination, default_box, masked_last4
from app.scoping import Scope

# SEPA credit transfers are in euro only.
SEPA_CURRENCY = "EUR"
SCHEMA = "pain.001.001.03"  # the version every SEPA bank accepts


class SepaExportError(ValueError):
    """Payouts that cannot go into a SEPA file (not euro, no IBAN, nothing left to export); ``message`` says why."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Transfer:
    """One payout to put in a file: its id (the EndToEndId), amount in euro cents, and where it goes."""

    payout_id: str
    amount: int
    currency: str
    destination: PayoutDestination
    description: str

    def __repr__(self) -> str:
        return f"Transfer({self.payout_id}, {self.amount} {self.currency}, {self.destination!r})"


def _check(transfer: Transfer) -> None:
    if transfer.currency != SEPA_CURRENCY:
        raise SepaExportError(f"Payout {transfer.payout_id} is in {transfer.currency}: SEPA transfers are in euro.")
    if not transfer.destination.iban:
        raise SepaExportError(f"Payout {transfer.payout_id} goes to an account without an IBAN.")
    if transfer.amount <= 0:
        raise SepaExportError(f"Payout {transfer.payout_id} has no positive amount.")


def build_pain001(transfers: list[Transfer], debtor: PayoutDestination, *, message_id: str,
                  execution_date: date) -> bytes:
    """The pain.001 document paying ``transfers`` from ``debtor``'s account, validated against the schema."""
    if not transfers:
        raise SepaExportError("There is no payout to export.")
    if not debtor.iban or debtor.currency != SEPA_CURRENCY:
        raise SepaExportError("The paying account must be a euro account with an IBAN.")
    config = {"name": debtor.holder_name, "IBAN": debtor.iban, "batch": True, "currency": SEPA_CURRENCY}
    if debtor.bic:
        config["BIC"] = debtor.bic
    document = SepaTransfer(config, schema=SCHEMA, clean=True)
    # The message id is ours (the export's), so that the bank's status report names the export.
    document._xml.find("CstmrCdtTrfInitn/GrpHdr/MsgId").text = message_id
    document.msg_id = message_id
    for transfer in transfers:
        _check(transfer)
        payment = {"name": transfer.destination.holder_name, "IBAN": transfer.destination.iban,
                   "amount": transfer.amount, "execution_date": execution_date,
                   "description": transfer.description[:140], "endtoend_id": transfer.payout_id}
        if transfer.destination.bic:
            payment["BIC"] = transfer.destination.bic
        document.add_payment(payment)
    return document.export(validate=True)


def export_transfers(session: Session, scope: Scope, transfers: list[Transfer], debtor: PayoutDestination, *,
                     execution_date: date, actor_user_id: str | None = None, actor_label: str | None = None,
                     now: datetime | None = None, box: SecretBox | None = None) -> tuple[PayoutExport, bytes]:
    """Claim the transfers' payouts for a new export and build its file; payouts already in an export are left
    out. SepaExportError when none is left (the caller rolls back). Returns the export and its document."""
    now = now or utcnow()
    for transfer in transfers:
        _check(transfer)
    export = PayoutExport(merchant_id=scope.merchant_id, livemode=scope.livemode, id=new_id("pexp"),
                          debtor_bank_account_id=debtor.bank_account_id,
                          debtor_last4=(debtor.iban or debtor.account_number or "")[-4:], currency=SEPA_CURRENCY,
                          payout_count=0, total=0, execution_date=execution_date, document_encrypted="",
                          created_by=actor_user_id, created_at=now)
    export.message_id = export.id[-35:]
    session.add(export)
    session.flush()
    by_id = {t.payout_id: t for t in transfers}
    claimed: set[str] = set()
    if by_id:
        claimed = set(session.scalars(
            insert(PayoutExportItem).values([
                {"merchant_id": scope.merchant_id, "livemode": scope.livemode, "payout_id": t.payout_id,
                 "export_id": export.id, "bank_account_id": t.destination.bank_account_id, "amount": t.amount,
                 "currency": t.currency} for t in by_id.values()])
            .on_conflict_do_nothing(index_elements=["merchant_id", "payout_id"])
            .returning(PayoutExportItem.payout_id)))
    if not claimed:
        raise SepaExportError("Every one of these payouts is in an earlier export already: nothing to export.")
    chosen = [by_id[payout_id] for payout_id in sorted(claimed)]
    document = build_pain001(chosen, debtor, message_id=export.message_id, execution_date=execution_date)
    export.payout_count = len(chosen)
    export.total = sum(t.amount for t in chosen)
    export.document_encrypted = (box or default_box()).encrypt(document.decode(), export_aad(export))
    session.flush()
    audit(session, "payout_export.created", merchant_id=scope.merchant_id, livemode=scope.livemode,
          actor_user_id=actor_user_id, actor_label=actor_label, target=export.id,
          details={"payouts": [t.payout_id for t in chosen], "total": export.total, "currency": SEPA_CURRENCY,
                   "debtor": masked_last4(export.debtor_last4)})
    return export, document


def exported_payout_ids(session: Session, scope: Scope, payout_ids: list[str]) -> set[str]:
    """Which of these payouts are in an export already."""
    if not payout_ids:
        return set()
    return set(session.scalars(select(PayoutExportItem.payout_id).where(
        PayoutExportItem.merchant_id == scope.merchant_id, PayoutExportItem.livemode == scope.livemode,
        PayoutExportItem.payout_id.in_(payout_ids))))


def export_document(export: PayoutExport, box: SecretBox | None = None) -> bytes:
    """The file of an export, as handed out the first time (for a second download)."""
    return (box or default_box()).decrypt(export.document_encrypted, export_aad(export)).encode()


# -- SEPA payouts (Payout.rail == "sepa", the merchant's payout_rail) -----------------------------------------

NO_DEBTOR = ("Add your own euro bank account with an IBAN first (Sellers › your payout account): the transfers are "
             "paid from it.")


def due_payouts(session: Session, scope: Scope, *, now: datetime, for_update: bool = False) -> list:
    """The book's SEPA payouts waiting for a file: pending, in euro, past any cooling period, in no export yet."""
    from app.payouts.models import Payout, PayoutStatus

    exported = select(PayoutExportItem.payout_id).where(PayoutExportItem.merchant_id == scope.merchant_id)
    statement = (scope.select(Payout, Payout.rail == "sepa", Payout.status == PayoutStatus.PENDING,
                              Payout.currency == SEPA_CURRENCY,
                              (Payout.held_until.is_(None)) | (Payout.held_until <= now),
                              Payout.id.not_in(exported))
                 .order_by(Payout.id))
    if for_update:
        statement = statement.with_for_update()  # in id order: the payouts' lock order
    return list(session.scalars(statement))


def export_due_payouts(session: Session, scope: Scope, *, now: datetime | None = None, execution_date: date,
                       actor_user_id: str | None = None, actor_label: str | None = None,
                       box: SecretBox | None = None) -> tuple[PayoutExport, bytes]:
    """Export the book's due SEPA payouts into one file paid from the merchant's own account, and mark them in
    transit (they become paid or failed only from the bank statement: ``settle_from_statement``).

    A payout whose account was flagged since it was created stays pending (and out of the file).
    SepaExportError when there is nothing to export or no euro account to pay from."""
    from app.payouts.bank_accounts import account_destination, payout_destination
    from app.payouts.service import mark_in_transit

    now = now or utcnow()
    debtor = payout_destination(session, scope, None, box=box)
    if debtor is None or not debtor.iban or debtor.currency != SEPA_CURRENCY:
        raise SepaExportError(NO_DEBTOR)
    payouts = due_payouts(session, scope, now=now, for_update=True)
    transfers = []
    for payout in payouts:
        destination = account_destination(session, scope, payout.bank_account_id, box=box) \
            if payout.bank_account_id else None
        if destination is None or destination.flagged or not destination.iban:
            continue
        transfers.append(Transfer(payout.id, payout.amount, payout.currency, destination,
                                  payout.description or f"Payout {payout.id}"))
    if not transfers:
        raise SepaExportError("No SEPA payout is waiting for a file.")
    export, document = export_transfers(session, scope, transfers, debtor, execution_date=execution_date,
                                        actor_user_id=actor_user_id, actor_label=actor_label, now=now, box=box)
    exported = exported_payout_ids(session, scope, [t.payout_id for t in transfers])
    for payout in payouts:
        if payout.id in exported and payout.rail_reference is None:
            mark_in_transit(session, payout, rail_reference=export.id, arrival_date=execution_date, next_check=None)
    session.flush()
    return export, document


def settle_from_statement(session: Session, payout, *, amount: int, currency: str, hmac_key: bytes) -> str | None:
    """Apply a bank statement entry naming a SEPA payout (its EndToEndId as remittance; the payout row locked by
    the caller): a debit of its amount while in transit makes it paid; a credit of its amount (the bank returned
    it) while in transit or paid makes it failed (reversed, the account flagged). What it did, or None when the
    entry does not fit (another amount, currency or state: the reconciliation's break). Applying it twice changes
    nothing the second time."""
    from app.payouts.models import PayoutStatus
    from app.payouts.service import mark_failed, mark_paid

    if payout.rail != "sepa" or currency != payout.currency or abs(amount) != payout.amount:
        return None
    if amount < 0 and payout.status == PayoutStatus.IN_TRANSIT:
        mark_paid(session, payout, hmac_key=hmac_key)
        return "paid"
    if amount < 0 and payout.status == PayoutStatus.PAID:
        return "paid"
    if amount > 0 and payout.status in (PayoutStatus.IN_TRANSIT, PayoutStatus.PAID):
        mark_failed(session, payout, failure_code="returned_by_bank", hmac_key=hmac_key)
        return "failed"
    if amount > 0 and payout.status == PayoutStatus.FAILED:
        return "failed"
    return None
