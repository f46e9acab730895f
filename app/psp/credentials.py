"""Per-merchant PSP credentials, sealed at rest with app/crypto.py SecretBox (a service: no Flask, no commit).

A merchant has at most one *current* credential per PSP and mode. Payments remember the credential they
were made with (``credential`` on payments, attempts and refunds: its id, or ``platform``), and every
follow-up (capture, void, refund, status query, dispute action) goes through that same credential. So a
credential is never destroyed: replacing the secret key creates a new row and retires the old one (which
still serves the payments made with it), and "delete" retires. A retired credential is no longer used
for new payments, nor as the merchant's account in checkout.
"""
from __future__ import annotations

from sqlalchemy.orm import Session

from app.crypto import SecretBox
from app.ids import new_id
from app.models_base import utcnow
from app.psp.models import PspCredential, credential_aad
from app.psp.stripe_keys import check_publishable_key, check_secret_key
from app.scoping import Scope

STRIPE = "stripe"
# How a credential's payouts are confirmed as deposited (app/reconciliation/payout_events.py): the platform's bank
# statement shows them, or (a merchant's own account, paid into its own bank) the PSP's payout events stand in.
BANK_STATEMENT = "bank_statement"
PAYOUT_EVENTS = "payout_events"
DEPOSIT_CONFIRMATIONS = (BANK_STATEMENT, PAYOUT_EVENTS)
# A merchant's own account pays into the merchant's own bank, which Kassa never sees (the platform's default,
# bank_statement, is in app/psp/stripe_keys.py).
DEFAULT_MERCHANT_DEPOSIT_CONFIRMATION = PAYOUT_EVENTS


class DepositConfirmationError(ValueError):
    """A deposit confirmation that is not one of DEPOSIT_CONFIRMATIONS; ``param`` names the field."""

    def __init__(self, value: object, param: str = "deposit_confirmation"):
        self.message = (f"How deposits are confirmed must be one of {', '.join(DEPOSIT_CONFIRMATIONS)}; "
                        f"got {str(value)[:40]!r}.")
        self.param = param
        super().__init__(self.message)


def check_deposit_confirmation(value: object) -> str:
    """The value when it is a known deposit confirmation, else DepositConfirmationError."""
    if value not in DEPOSIT_CONFIRMATIONS:
        raise DepositConfirmationError(value)
    return value  # type: ignore[return-value]


def check_keys(psp: str, livemode: bool, *, secret_key: str, publishable_key: str | None = None) -> None:
    """Refuse keys of the other mode (app/psp/stripe_keys.py KeyModeError, with the field in ``param``)."""
    if psp == STRIPE:
        check_secret_key(secret_key, livemode)
        check_publishable_key(publishable_key, livemode)


def current_credential(session: Session, scope: Scope, psp: str, *, lock: bool = False) -> PspCredential | None:
    """The merchant's current (not retired) credential at ``psp`` in this mode."""
    statement = scope.select(PspCredential, PspCredential.psp == psp, PspCredential.retired_at.is_(None))
    return session.scalars(statement.with_for_update() if lock else statement).one_or_none()


def set_credentials(session: Session, scope: Scope, box: SecretBox, psp: str, *, secret_key: str,
                    webhook_secret: str | None = None, publishable_key: str | None = None,
                    deposit_confirmation: str | None = None) -> PspCredential:
    """Store (or replace) the merchant's credentials at ``psp`` in this mode; secrets are encrypted.

    Keys of the other mode are refused (KeyModeError), nothing changed. A new secret key may be another
    account: the current row is retired (kept, for the payments made with it) and a new one is created.
    The same secret key with another webhook secret or publishable key updates the current row.
    ``deposit_confirmation`` (DEPOSIT_CONFIRMATIONS, else DepositConfirmationError): None keeps the current row's,
    or the merchant default for a new account.
    """
    check_keys(psp, scope.livemode, secret_key=secret_key, publishable_key=publishable_key)
    if deposit_confirmation is not None:
        check_deposit_confirmation(deposit_confirmation)
    now = utcnow()
    row = current_credential(session, scope, psp, lock=True)
    # A new key of the same merchant and mode keeps the declaration of the account it replaces unless told.
    deposit_confirmation = deposit_confirmation or (row.deposit_confirmation if row is not None else None)
    if row is not None and box.decrypt(row.secret_key_encrypted, credential_aad(row, "secret_key")) != secret_key:
        row.retired_at = now
        row.updated_at = now
        session.flush()  # the partial unique index allows one current row: retire before adding
        row = None
    if row is None:
        row = scope.new(PspCredential, id=new_id("pcr"), psp=psp, secret_key_encrypted="")
        session.add(row)
    row.secret_key_encrypted = box.encrypt(secret_key, credential_aad(row, "secret_key"))
    row.webhook_secret_encrypted = (box.encrypt(webhook_secret, credential_aad(row, "webhook_secret"))
                                    if webhook_secret else None)
    row.publishable_key = publishable_key
    row.deposit_confirmation = (deposit_confirmation or row.deposit_confirmation
                                or DEFAULT_MERCHANT_DEPOSIT_CONFIRMATION)
    row.updated_at = now
    session.flush()
    return row


def set_deposit_confirmation(session: Session, scope: Scope, psp: str, deposit_confirmation: str) -> PspCredential:
    """Declare how the merchant's current account at ``psp`` in this mode has its payouts confirmed
    (DepositConfirmationError for an unknown value, LookupError when there is no current credential)."""
    check_deposit_confirmation(deposit_confirmation)
    row = current_credential(session, scope, psp, lock=True)
    if row is None:
        raise LookupError(f"no current {psp} credential in this mode")
    row.deposit_confirmation = deposit_confirmation
    row.updated_at = utcnow()
    session.flush()
    return row


def _decrypted(box: SecretBox, row: PspCredential) -> dict[str, str | None]:
    return {
        "id": row.id,
        "secret_key": box.decrypt(row.secret_key_encrypted, credential_aad(row, "secret_key")),
        "webhook_secret": (box.decrypt(row.webhook_secret_encrypted, credential_aad(row, "webhook_secret"))
                           if row.webhook_secret_encrypted else None),
        "publishable_key": row.publishable_key,
    }


def load_credentials(session: Session, scope: Scope, box: SecretBox, psp: str) -> dict[str, str | None] | None:
    """The merchant's current decrypted credentials at ``psp`` in this mode (and their row's id), or None."""
    row = current_credential(session, scope, psp)
    return _decrypted(box, row) if row is not None else None


def load_credential(session: Session, scope: Scope, box: SecretBox, psp: str,
                    credential_id: str) -> dict[str, str | None] | None:
    """One credential of the merchant at ``psp`` in this mode by id, retired or not (what a payment made
    with it needs for its follow-ups), or None when there is no such credential in this scope."""
    row = session.scalars(scope.select(PspCredential, PspCredential.id == credential_id,
                                       PspCredential.psp == psp)).one_or_none()
    return _decrypted(box, row) if row is not None else None


def webhook_credentials(session: Session, merchant_id: str, box: SecretBox, psp: str) -> list[tuple[bool, dict]]:
    """Every credential of the merchant at ``psp`` with a webhook secret, in both modes, current ones first:
    (livemode, decrypted). A retired account still sends events about the payments made with it."""
    found = []
    for livemode in (False, True):
        rows = session.scalars(Scope(merchant_id, livemode).select(
            PspCredential, PspCredential.psp == psp, PspCredential.webhook_secret_encrypted.is_not(None))
            .order_by(PspCredential.retired_at.is_not(None), PspCredential.created_at.desc())).all()
        found += [(livemode, _decrypted(box, row)) for row in rows]
    return found


def delete_credentials(session: Session, scope: Scope, psp: str) -> bool:
    """Stop using the merchant's credentials at ``psp`` in this mode (new payments use the platform's
    account); True if there were any. The row is retired, not deleted: payments made with it still
    capture, void, refund and look up through it."""
    row = current_credential(session, scope, psp, lock=True)
    if row is None:
        return False
    row.retired_at = row.updated_at = utcnow()
    session.flush()
    return True
