"""Team management: invitations, role changes, removals. Never imports Flask; the caller commits.

Who may do what is decided by app.accounts.permissions (can, can_manage_member, can_assign_role); this
module adds only the invariants of a team (nobody changes their own role or removes themselves here, a
merchant keeps at least one owner).
"""
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    func,
    select,
    text,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from app.accounts.audit import audit
from app.accounts.mail import queue_mail
from app.accounts.models import Membership, Merchant, User
from app.accounts.permissions import (
    Action,
    Role,
    can,
    can_assign_role,
    can_manage_member,
)
from app.accounts.service import NO_META, Meta
from app.accounts.tokens import hash_token, new_token, normalize_email
from app.ids import new_id
from app.models_base import Base, utcnow

# A week: invitations are often opened days later (weekends, holidays); beyond that, ask again.
INVITATION_LIFETIME = timedelta(days=7)


class Invitation(Base):
    """An emailed invitation to join a merchant's team with a role."""

    __tablename__ = "invitations"
    __table_args__ = (
        CheckConstraint("role IN ('admin', 'developer', 'analyst')", name="role"),
        Index("ix_invitations_merchant_email", "merchant_id", "email"),
    )

    id: Mapped[str] = mapped_column(primary_key=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"))
    email: Mapped[str] = mapped_column(String(320))
    role: Mapped[str] = mapped_column(String(20))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    invited_by_user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))
    expires_at: Mapped[datetime]
    accepted_at: Mapped[datetime | None]
    accepted_by_user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    revoked_at: Mapped[datetime | None]

    merchant: Mapped[Merchant] = relationship()
    invited_by: Mapped[User | None] = relationship(foreign_keys=[invited_by_user_id])

    def is_pending_at(self, now: datetime) -> bool:
        return self.accepted_at is None and self.revoked_at is None and self.expires_at > now


class TeamError(Exception):
    """A team change that is not allowed; ``field`` names the form field to blame, if any."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


def members(session: Session, merchant_id: str) -> list[Membership]:
    """The merchant's memberships with their users, owners first, then by join date."""
    order = {Role.OWNER: 0, Role.ADMIN: 1, Role.DEVELOPER: 2, Role.ANALYST: 3}
    rows = session.scalars(select(Membership).where(Membership.merchant_id == merchant_id)
                           .order_by(Membership.created_at, Membership.id)).all()
    return sorted(rows, key=lambda m: order.get(m.role, 9))


def pending_invitations(session: Session, merchant_id: str, *, now: datetime | None = None) -> list[Invitation]:
    """Invitations not yet accepted, revoked or expired, newest first."""
    now = now or utcnow()
    return list(session.scalars(select(Invitation).where(
        Invitation.merchant_id == merchant_id, Invitation.accepted_at.is_(None), Invitation.revoked_at.is_(None),
        Invitation.expires_at > now).order_by(Invitation.created_at.desc())))


def _audit(session, action, actor: Membership, meta: Meta, *, target: str, details: dict) -> None:
    audit(session, action, merchant_id=actor.merchant_id, actor_user_id=actor.user_id,
          actor_label=actor.user.email, target=target, details=details, **meta.as_kwargs())


def invite(session: Session, actor: Membership, email: str, role: str, link_for: Callable[[str], str], *,
           meta: Meta = NO_META, now: datetime | None = None) -> Invitation:
    """Invite an email address to the actor's merchant; a new invitation replaces a pending one."""
    if not can_assign_role(actor.role, role):
        raise TeamError("You cannot invite someone with this role.", field="role")
    email = normalize_email(email)
    now = now or utcnow()
    already = session.scalars(select(Membership).join(User, User.id == Membership.user_id).where(
        Membership.merchant_id == actor.merchant_id, func.lower(User.email) == email)).first()
    if already is not None:
        raise TeamError("This person is already a member of the team.", field="email")
    session.execute(update(Invitation).where(
        Invitation.merchant_id == actor.merchant_id, Invitation.email == email, Invitation.accepted_at.is_(None),
        Invitation.revoked_at.is_(None)).values(revoked_at=now))
    token = new_token()
    invitation = Invitation(id=new_id("inv"), merchant_id=actor.merchant_id, email=email, role=role,
                            token_hash=hash_token(token), invited_by_user_id=actor.user_id, created_at=now,
                            expires_at=now + INVITATION_LIFETIME)
    session.add(invitation)
    session.flush()
    merchant = session.get(Merchant, actor.merchant_id)
    merchant_name = merchant.display_name or merchant.name
    inviter = actor.user.name or actor.user.email
    queue_mail(session, kind="invitation", to=email, merchant_id=actor.merchant_id,
               subject=f"You are invited to join {merchant_name} on Kassa", body=(
                   f"Hello,\n\n{inviter} invited you to join {merchant_name} on Kassa as {role}.\n"
                   f"Accept the invitation within 7 days here:\n\n{link_for(token)}\n\n"
                   "If you do not have a Kassa account yet, you can create one from that page.\n"))
    _audit(session, "team.member_invited", actor, meta, target=invitation.id, details={"email": email, "role": role})
    return invitation


def find_invitation(session: Session, token: str, *, now: datetime | None = None) -> Invitation | None:
    """The pending invitation behind a link, or None (unknown, used, revoked or expired)."""
    row = session.scalars(select(Invitation).where(Invitation.token_hash == hash_token(token or ""))).one_or_none()
    if row is None or not row.is_pending_at(now or utcnow()):
        return None
    return row


def accept_invitation(session: Session, token: str, user: User, *, meta: Meta = NO_META,
                      now: datetime | None = None) -> Membership:
    """Join the team with the invited role; the invitation is used up. The user's email must be the invited one."""
    now = now or utcnow()
    invitation = find_invitation(session, token, now=now)
    if invitation is None:
        raise TeamError("This invitation is invalid, expired or already used.")
    if normalize_email(user.email) != invitation.email:
        raise TeamError(f"This invitation is for {invitation.email}; you are signed in as {user.email}.")
    # Claim it with one conditional UPDATE so that two clicks cannot both succeed.
    claimed = session.execute(update(Invitation).where(
        Invitation.id == invitation.id, Invitation.accepted_at.is_(None), Invitation.revoked_at.is_(None),
        Invitation.expires_at > now).values(accepted_at=now, accepted_by_user_id=user.id)
        .returning(Invitation.id)).scalar_one_or_none()
    if claimed is None:
        raise TeamError("This invitation is invalid, expired or already used.")
    membership = session.scalars(select(Membership).where(
        Membership.merchant_id == invitation.merchant_id, Membership.user_id == user.id)).one_or_none()
    if membership is None:
        membership = Membership(id=new_id("mem"), user_id=user.id, merchant_id=invitation.merchant_id,
                                role=invitation.role)
        session.add(membership)
        session.flush()
    audit(session, "team.invitation_accepted", merchant_id=invitation.merchant_id, actor_user_id=user.id,
          actor_label=user.email, target=membership.id, details={"invitation": invitation.id,
                                                                 "role": membership.role}, **meta.as_kwargs())
    return membership


def revoke_invitation(session: Session, actor: Membership, invitation_id: str, *, meta: Meta = NO_META,
                      now: datetime | None = None) -> Invitation:
    """Withdraw a pending invitation of the actor's merchant."""
    if not can(actor.role, Action.MANAGE_TEAM):
        raise TeamError("You cannot manage this team.")
    invitation = session.scalars(select(Invitation).where(
        Invitation.id == invitation_id, Invitation.merchant_id == actor.merchant_id)).one_or_none()
    if invitation is None or not invitation.is_pending_at(now or utcnow()):
        raise LookupError(invitation_id)
    invitation.revoked_at = now or utcnow()
    _audit(session, "team.invitation_revoked", actor, meta, target=invitation.id, details={"email": invitation.email})
    return invitation


def _target(session: Session, actor: Membership, membership_id: str) -> Membership:
    target = session.scalars(select(Membership).where(
        Membership.id == membership_id, Membership.merchant_id == actor.merchant_id).with_for_update()).one_or_none()
    if target is None:
        raise LookupError(membership_id)  # another merchant's member looks like no member at all
    return target


def _owners(session: Session, merchant_id: str) -> int:
    return session.scalar(select(func.count()).select_from(Membership).where(
        Membership.merchant_id == merchant_id, Membership.role == Role.OWNER))


def change_role(session: Session, actor: Membership, membership_id: str, new_role: str, *,
                meta: Meta = NO_META) -> Membership:
    """Give a member another role (LookupError when the member is not in the actor's merchant)."""
    target = _target(session, actor, membership_id)
    if target.user_id == actor.user_id:
        raise TeamError("You cannot change your own role.", field="role")
    if not can_manage_member(actor.role, target.role):
        raise TeamError("Only an owner can change the owner's role.", field="role")
    if not can_assign_role(actor.role, new_role):
        raise TeamError("You cannot give this role.", field="role")
    old_role = target.role
    if old_role == new_role:
        return target
    if old_role == Role.OWNER and _owners(session, actor.merchant_id) <= 1:
        raise TeamError("A merchant needs at least one owner.", field="role")
    target.role = new_role
    _audit(session, "team.role_changed", actor, meta, target=target.id,
           details={"user": target.user.email, "from": old_role, "to": new_role})
    return target


def remove_member(session: Session, actor: Membership, membership_id: str, *, meta: Meta = NO_META) -> str:
    """Remove a member from the actor's merchant; returns the removed user's email."""
    target = _target(session, actor, membership_id)
    if target.user_id == actor.user_id:
        raise TeamError("You cannot remove yourself.")
    if not can_manage_member(actor.role, target.role):
        raise TeamError("Only an owner can remove the owner.")
    if target.role == Role.OWNER and _owners(session, actor.merchant_id) <= 1:
        raise TeamError("A merchant needs at least one owner.")
    email = target.user.email
    _audit(session, "team.member_removed", actor, meta, target=target.id,
           details={"user": email, "role": target.role})
    session.delete(target)
    session.flush()
    return email
