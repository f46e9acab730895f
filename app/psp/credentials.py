"""Per-merchant PSP credentials, sealed at rest with app/crypto.py SecretBox (a service: no Flask, no commit)."""
from __future__ import annotations

from sqlalchemy.orm import Session

from app.crypto import SecretBox
from app.ids import new_id
from app.models_base import utcnow
from app.psp.models import PspCredential, credential_aad
from app.scoping import Scope


def set_credentials(session: Session, scope: Scope, box: SecretBox, psp: str, *, secret_key: str,
                    webhook_secret: str | None = None, publishable_key: str | None = None) -> PspCredential:
    """Store (or replace) the merchant's credentials at ``psp`` in this mode; secrets are encrypted."""
    row = session.scalars(scope.select(PspCredential, PspCredential.psp == psp).with_for_update()).one_or_none()
    if row is None:
        row = scope.new(PspCredential, id=new_id("pcr"), psp=psp, secret_key_encrypted="")
        session.add(row)
    row.secret_key_encrypted = box.encrypt(secret_key, credential_aad(row, "secret_key"))
    row.webhook_secret_encrypted = (box.encrypt(webhook_secret, credential_aad(row, "webhook_secret"))
                                    if webhook_secret else None)
    row.publishable_key = publishable_key
    row.updated_at = utcnow()
    session.flush()
    return row


def load_credentials(session: Session, scope: Scope, box: SecretBox, psp: str) -> dict[str, str | None] | None:
    """The merchant's decrypted credentials at ``psp`` in this mode (and their row's id), or None."""
    row = session.scalars(scope.select(PspCredential, PspCredential.psp == psp)).one_or_none()
    if row is None:
        return None
    return {
        "id": row.id,
        "secret_key": box.decrypt(row.secret_key_encrypted, credential_aad(row, "secret_key")),
        "webhook_secret": (box.decrypt(row.webhook_secret_encrypted, credential_aad(row, "webhook_secret"))
                           if row.webhook_secret_encrypted else None),
        "publishable_key": row.publishable_key,
    }


def delete_credentials(session: Session, scope: Scope, psp: str) -> bool:
    """Forget the merchant's credentials at ``psp`` in this mode; True if there were any."""
    row = session.scalars(scope.select(PspCredential, PspCredential.psp == psp)).one_or_none()
    if row is None:
        return False
    session.delete(row)
    session.flush()
    return True
