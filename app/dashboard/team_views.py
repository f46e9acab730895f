"""Settings › Team: members and their roles, invitations. Owners and admins only (Action.MANAGE_TEAM).

Role changes answer htmx with the member's row (templates/dashboard/_member_row.html) and everything else
with a redirect back to the page, so the page works without JavaScript too.
"""
from flask import abort, flash, g, redirect, render_template, request
from flask_login import current_user
from sqlalchemy import select

from app.accounts import team as team_service
from app.accounts.models import Membership
from app.accounts.permissions import Action, can_assign_role, can_manage_member
from app.accounts.service import Meta
from app.dashboard import bp
from app.dashboard.context import merchant_view
from app.dashboard.forms import (
    ROLE_CHOICES,
    ConfirmForm,
    InviteForm,
    RoleForm,
    select_choices,
)
from app.dashboard.helpers import dash_url, external_url, request_meta
from app.dashboard.reauth import kept_form, reauth_required
from app.extensions import db, htmx

INVALID_FORM = 422


def _meta() -> Meta:
    return Meta(**request_meta())


def _role_choices():
    """Only the roles this member may give."""
    return select_choices((value, label) for value, label in ROLE_CHOICES if can_assign_role(g.role, value))


def _row_context(membership, role_form=None, error=None) -> dict:
    manageable = membership.user_id != current_user.id and can_manage_member(g.role, membership.role)
    if role_form is None:
        role_form = RoleForm(prefix=membership.id, formdata=None, role=membership.role)
    role_form.role.choices = _role_choices()
    return {"m": membership, "manageable": manageable, "role_form": role_form, "row_error": error,
            "confirm_form": ConfirmForm(formdata=None)}


def _render_team(invite_form=None, status=200):
    kept = kept_form() if request.method == "GET" else None  # a change typed before re-authenticating
    if invite_form is None:
        invite_form = InviteForm(formdata=kept if kept and "email" in kept else None)
    invite_form.role.choices = _role_choices()
    rows = [_row_context(m, role_form=RoleForm(prefix=m.id, formdata=kept) if kept and f"{m.id}-role" in kept
                         else None)
            for m in team_service.members(db.session, g.merchant.id)]
    return render_template("dashboard/team.html", rows=rows, invite_form=invite_form,
                           invitations=team_service.pending_invitations(db.session, g.merchant.id),
                           confirm_form=ConfirmForm(formdata=None)), status


def _team_page(*_args, **_kwargs) -> str:
    return dash_url("dashboard.team")


@bp.route("/<merchant_id>/<mode>/settings/team")
@merchant_view(Action.MANAGE_TEAM)
def team():
    return _render_team()


@bp.route("/<merchant_id>/<mode>/settings/team/invite", methods=["POST"])
@merchant_view(Action.MANAGE_TEAM)
@reauth_required(form_page=_team_page)
def invite_member():
    form = InviteForm()
    form.role.choices = _role_choices()
    if not form.validate():
        return _render_team(form, INVALID_FORM)
    try:
        invitation = team_service.invite(
            db.session, g.membership, form.email.data, form.role.data,
            lambda token: external_url("dashboard.accept_invitation", token=token), meta=_meta())
    except team_service.TeamError as error:
        db.session.rollback()
        getattr(form, error.field or "email").errors.append(error.message)
        return _render_team(form, INVALID_FORM)
    db.session.commit()
    flash(f"Invitation sent to {invitation.email}.", "success")
    return redirect(dash_url("dashboard.team"), code=303)


@bp.route("/<merchant_id>/<mode>/settings/team/members/<membership_id>/role", methods=["POST"])
@merchant_view(Action.MANAGE_TEAM)
@reauth_required(form_page=_team_page)
def change_member_role(membership_id: str):
    membership = _member_or_404(membership_id)
    form = RoleForm(prefix=membership_id)
    form.role.choices = _role_choices()
    error = None
    if not form.validate():
        error = " ".join(form.role.errors) or "Choose a role."
    else:
        try:
            team_service.change_role(db.session, g.membership, membership_id, form.role.data, meta=_meta())
            db.session.commit()
        except LookupError:
            abort(404)
        except team_service.TeamError as exc:
            db.session.rollback()
            error = exc.message
    membership = _member_or_404(membership_id)
    if htmx:
        status = 200 if error is None else INVALID_FORM
        context = _row_context(membership, error=error)
        context["row_status"] = None if error else f"Role changed to {membership.role}."
        return render_template("dashboard/_member_row.html", **context), status
    flash(error or f"{membership.user.email} is now {membership.role}.", "error" if error else "success")
    return redirect(dash_url("dashboard.team"), code=303)


@bp.route("/<merchant_id>/<mode>/settings/team/members/<membership_id>/remove", methods=["POST"])
@merchant_view(Action.MANAGE_TEAM)
def remove_member(membership_id: str):
    if not ConfirmForm().validate():
        abort(400)
    try:
        email = team_service.remove_member(db.session, g.membership, membership_id, meta=_meta())
    except LookupError:
        abort(404)
    except team_service.TeamError as error:
        db.session.rollback()
        flash(error.message, "error")
        return redirect(dash_url("dashboard.team"), code=303)
    db.session.commit()
    flash(f"{email} was removed from the team.", "success")
    return redirect(dash_url("dashboard.team"), code=303)


@bp.route("/<merchant_id>/<mode>/settings/team/invitations/<invitation_id>/revoke", methods=["POST"])
@merchant_view(Action.MANAGE_TEAM)
def revoke_invitation(invitation_id: str):
    if not ConfirmForm().validate():
        abort(400)
    try:
        invitation = team_service.revoke_invitation(db.session, g.membership, invitation_id, meta=_meta())
    except LookupError:
        abort(404)
    db.session.commit()
    flash(f"The invitation to {invitation.email} was withdrawn.", "success")
    return redirect(dash_url("dashboard.team"), code=303)



def _member_or_404(membership_id: str):
    """A member of the current merchant (another merchant's member id is a 404, like an unknown one)."""
    membership = db.session.scalars(select(Membership).where(
        Membership.id == membership_id, Membership.merchant_id == g.merchant.id)).one_or_none()
    if membership is None:
        abort(404)
    return membership
