"""Claims: which operator works on an inbox item. The operators' own data, not a merchant's.

``inbox_claims`` is a platform-wide table (like users): it says who took an item, never anything about a
merchant's business, so it carries no merchant_id and stays a local table if merchant-owned tables are
ever distributed. A claim is keyed by the item's (kind, id). It outlives its item harmlessly: an item
that is resolved leaves the inbox whatever its claim says, and one that comes back shows who had it.
Never imports Flask; the caller commits.
"""
from datetime import datetime

from sqlalchemy import ForeignKey, String, delete, select, text, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Mapped, Session, mapped_column

from app.accounts.models import User
from app.models_base import Base, utcnow


class InboxClaim(Base):
    """An operator's claim on one inbox item."""

    __tablename__ = "inbox_claims"

    kind: Mapped[str] = mapped_column(String(40), primary_key=True)
    item_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    claimed_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))


def claim(session: Session, kind: str, item_id: str, user_id: str, *, now: datetime | None = None) -> None:
    """Assign the item to the operator (taking it over from whoever had it)."""
    now = now or utcnow()
    session.execute(insert(InboxClaim).values(kind=kind, item_id=item_id, user_id=user_id, claimed_at=now)
                    .on_conflict_do_update(index_elements=["kind", "item_id"],
                                           set_={"user_id": user_id, "claimed_at": now}))


def release(session: Session, kind: str, item_id: str) -> None:
    """Nobody works on the item any more."""
    session.execute(delete(InboxClaim).where(InboxClaim.kind == kind, InboxClaim.item_id == item_id))


def claims_of(session: Session, keys: list[tuple[str, str]]) -> dict[tuple[str, str], tuple[str, str, datetime]]:
    """(kind, id) -> (user id, user email, claimed at) for the items that are claimed."""
    if not keys:
        return {}
    rows = session.execute(
        select(InboxClaim.kind, InboxClaim.item_id, User.id, User.email, InboxClaim.claimed_at)
        .join(User, User.id == InboxClaim.user_id)
        .where(tuple_(InboxClaim.kind, InboxClaim.item_id).in_(keys)))
    return {(kind, item_id): (user_id, email, at) for kind, item_id, user_id, email, at in rows}
