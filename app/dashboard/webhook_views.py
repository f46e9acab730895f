"""Developers › Webhooks: endpoints, their secrets, the attempt log, event detail, resends and test events.

Everyone on the team may read (Action.VIEW): the endpoints, how they are doing, every attempt. Changes, the
signing secret and rotating it need Action.MANAGE_DEVELOPERS (owners, admins, developers); an analyst never
gets the secret, not even in the HTML. A revealed or new secret is only in the response to a POST, sent
with ``Cache-Control: no-store``; every reveal and change is in the audit log.

Sending happens in the worker: "Resend" and "Send test event" queue the delivery (the row is the record,
a job is enqueued after commit to send it at once) and the attempt appears in the log. "Send missed
events" and the bulk resend make rows due; the due sweep (every second) sends them.
"""
import json
from datetime import datetime, timedelta, timezone

from flask import abort, current_app, flash, g, redirect, render_template, request
from flask_login import current_user
from wtforms import DateTimeLocalField, RadioField, SelectField, SelectMultipleField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional
from wtforms.widgets import CheckboxInput, ListWidget

from app.accounts.audit import audit
from app.accounts.permissions import Action
from app.dashboard import bp
from app.dashboard.context import merchant_view
from app.dashboard.forms import KassaForm, select_choices
from app.dashboard.helpers import dash_url, request_meta
from app.dashboard.reauth import kept_form, reauth_required
from app.events import Event, event_payload
from app.extensions import db, htmx
from app.jobs import enqueue_after_commit
from app.models_base import utcnow
from app.webhooks import service
from app.webhooks.models import ALL_EVENTS, EndpointStatus, WebhookEndpoint
from app.webhooks.settings import settings_for

INVALID_FORM = 422
# "Recent success rate" on the list: attempts of the last day, long enough to include a nightly batch.
SUCCESS_WINDOW = timedelta(hours=24)
ATTEMPTS_PAGE = 50
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache", "Referrer-Policy": "no-referrer"}
GRACE_CHOICES = [("0", "Now (the old secret stops signing at once)"), ("1h", "In 1 hour"),
                 ("24h", "In 24 hours"), ("72h", "In 3 days"), ("168h", "In 7 days")]
GRACE_PERIODS = {"0": timedelta(0), "1h": timedelta(hours=1), "24h": timedelta(hours=24),
                 "72h": timedelta(hours=72), "168h": timedelta(hours=168)}


class MultiCheckboxField(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class EndpointForm(KassaForm):
    url = StringField("Endpoint URL", validators=[DataRequired("Enter the URL of your endpoint."),
                                                  Length(max=service.URL_MAX)])
    description = StringField("Description (optional)", validators=[Optional(), Length(max=service.DESCRIPTION_MAX)])
    events_mode = RadioField("Events to send", default="all", choices=select_choices(
        [("all", "All events"), ("selected", "Only the events I choose")]))
    events = MultiCheckboxField("Event types", choices=select_choices((t, t) for t in service.KNOWN_EVENT_TYPES))
    other_events = TextAreaField("Other event types (optional)", validators=[Optional(), Length(max=5000)])

    def enabled_events(self) -> list[str]:
        if self.events_mode.data != "selected":
            return [ALL_EVENTS]
        extra = [e.strip() for e in (self.other_events.data or "").replace(",", " ").split()]
        return list(self.events.data or []) + [e for e in extra if e]


class RotateForm(KassaForm):
    grace = SelectField("Keep signing with the old secret", default="24h", choices=select_choices(GRACE_CHOICES))


class ResendFailedForm(KassaForm):
    since = DateTimeLocalField("Failed deliveries of events since (UTC)", format="%Y-%m-%dT%H:%M",
                               validators=[DataRequired("Enter a date and time.")])


class ConfirmForm(KassaForm):
    """A button (the CSRF token is the whole form)."""


def _settings():
    return settings_for(current_app)


def _utc(value: datetime | None) -> datetime | None:
    return value.astimezone(timezone.utc) if value else None


def _audit(action: str, target: str, **details) -> None:
    audit(db.session, action, merchant_id=g.scope.merchant_id, livemode=g.scope.livemode,
          actor_user_id=current_user.id, actor_label=current_user.email, target=target, details=details,
          **request_meta())


def _endpoint_or_404(endpoint_id: str) -> WebhookEndpoint:
    try:
        return service.get_endpoint(db.session, g.scope, endpoint_id)
    except service.NotFound:
        abort(404)


def _send_soon(delivery_id: str) -> None:
    """Have the worker send the delivery right after this transaction commits (the due sweep is the backstop)."""
    enqueue_after_commit(db.session, "app.jobs.webhooks.deliver_now", delivery_id, queue_name="webhooks")


def _render(template: str, status: int = 200, headers: dict | None = None, **context):
    return render_template(template, utc=_utc, **context), status, headers or {}


# -- list and create ---------------------------------------------------------------------------------------

@bp.route("/<merchant_id>/<mode>/developers/webhooks")
@merchant_view(Action.VIEW)
def webhooks():
    endpoints = service.list_endpoints(db.session, g.scope)
    rates = service.success_rates(db.session, g.scope, utcnow() - SUCCESS_WINDOW)
    events = service.recent_events(db.session, g.scope, limit=20)
    return _render("dashboard/webhooks/index.html", endpoints=endpoints, rates=rates, events=events)


@bp.route("/<merchant_id>/<mode>/developers/webhooks/new", methods=["GET", "POST"])
@merchant_view(Action.MANAGE_DEVELOPERS)
def webhook_create():
    form = EndpointForm() if request.method == "POST" else EndpointForm(formdata=None)
    if request.method == "POST" and form.validate():
        try:
            endpoint, _secret = service.create_endpoint(
                db.session, g.scope, _settings(), url=form.url.data, description=form.description.data,
                enabled_events=form.enabled_events())
        except service.EndpointInvalid as error:
            db.session.rollback()
            _field_for(form, error.param).errors.append(error.message)
        else:
            _audit("webhook_endpoint.created", endpoint.id, url=endpoint.url)
            db.session.commit()
            flash("Endpoint added. Reveal its signing secret below and verify every request with it.", "success")
            return redirect(dash_url("dashboard.webhook_endpoint", endpoint_id=endpoint.id), code=303)
    status = INVALID_FORM if request.method == "POST" else 200
    return _render("dashboard/webhooks/form.html", status, form=form, endpoint=None)


def _field_for(form: EndpointForm, param: str):
    return {"url": form.url, "description": form.description}.get(param, form.other_events)


# -- one endpoint ----------------------------------------------------------------------------------------------

@bp.route("/<merchant_id>/<mode>/developers/webhooks/<endpoint_id>")
@merchant_view(Action.VIEW)
def webhook_endpoint(endpoint_id: str):
    kept = kept_form()  # the rotation's choice made before re-authenticating
    return _endpoint_page(_endpoint_or_404(endpoint_id),
                          rotate_form=RotateForm(formdata=kept) if kept and "grace" in kept else None)


def _endpoint_page_url(endpoint_id: str) -> str:
    return dash_url("dashboard.webhook_endpoint", endpoint_id=endpoint_id)


def _endpoint_page(endpoint: WebhookEndpoint, *, revealed_secret: str | None = None, resend_form=None,
                   rotate_form=None, status: int = 200):
    before = request.args.get("before") or None
    attempts = service.endpoint_attempts(db.session, g.scope, endpoint.id, limit=ATTEMPTS_PAGE, before=before)
    rate = service.success_rates(db.session, g.scope, utcnow() - SUCCESS_WINDOW).get(endpoint.id)
    counts = service.endpoint_delivery_counts(db.session, g.scope, endpoint.id)
    job_id = request.args.get("resend_job")
    job = None
    if job_id:
        try:
            job = service.get_resend_job(db.session, g.scope, job_id)
        except service.NotFound:
            job = None
    if resend_form is None:
        default_since = (utcnow() - timedelta(days=1)).astimezone(timezone.utc).replace(second=0, microsecond=0,
                                                                                         tzinfo=None)
        resend_form = ResendFailedForm(formdata=None, since=default_since)
    missed = service.count_missed_events(db.session, g.scope, _settings(), endpoint)
    headers = NO_STORE if revealed_secret else None
    return _render("dashboard/webhooks/endpoint.html", status, headers, endpoint=endpoint, attempts=attempts,
                   rate=rate, counts=counts, missed=missed, job=job, revealed_secret=revealed_secret,
                   resend_form=resend_form,
                   rotate_form=rotate_form or RotateForm(formdata=None), confirm_form=ConfirmForm(formdata=None),
                   before=before, page_size=ATTEMPTS_PAGE, now=utcnow())


@bp.route("/<merchant_id>/<mode>/developers/webhooks/<endpoint_id>/edit", methods=["GET", "POST"])
@merchant_view(Action.MANAGE_DEVELOPERS)
def webhook_edit(endpoint_id: str):
    endpoint = _endpoint_or_404(endpoint_id)
    if request.method == "POST":
        form = EndpointForm()
        if form.validate():
            try:
                service.update_endpoint(db.session, g.scope, _settings(), endpoint.id, url=form.url.data,
                                        description=form.description.data, enabled_events=form.enabled_events())
            except service.EndpointInvalid as error:
                db.session.rollback()
                _field_for(form, error.param).errors.append(error.message)
            else:
                _audit("webhook_endpoint.updated", endpoint.id, url=form.url.data)
                db.session.commit()
                flash("Endpoint updated.", "success")
                return redirect(dash_url("dashboard.webhook_endpoint", endpoint_id=endpoint.id), code=303)
        return _render("dashboard/webhooks/form.html", INVALID_FORM, form=form, endpoint=endpoint)
    all_events = ALL_EVENTS in endpoint.enabled_events
    known = [e for e in endpoint.enabled_events if e in service.KNOWN_EVENT_TYPES]
    other = [e for e in endpoint.enabled_events if e not in service.KNOWN_EVENT_TYPES and e != ALL_EVENTS]
    form = EndpointForm(formdata=None, url=endpoint.url, description=endpoint.description,
                        events_mode="all" if all_events else "selected", events=known, other_events=" ".join(other))
    return _render("dashboard/webhooks/form.html", form=form, endpoint=endpoint)


@bp.route("/<merchant_id>/<mode>/developers/webhooks/<endpoint_id>/status", methods=["POST"])
@merchant_view(Action.MANAGE_DEVELOPERS)
def webhook_set_status(endpoint_id: str):
    endpoint = _endpoint_or_404(endpoint_id)
    if not ConfirmForm().validate():
        abort(400)
    enable = request.form.get("enable") == "1"
    service.update_endpoint(db.session, g.scope, _settings(), endpoint.id, disabled=not enable)
    _audit("webhook_endpoint.enabled" if enable else "webhook_endpoint.disabled", endpoint.id)
    db.session.commit()
    flash("Endpoint enabled: new events are sent to it again." if enable
          else "Endpoint disabled: no events are sent to it until you enable it.", "success")
    return redirect(dash_url("dashboard.webhook_endpoint", endpoint_id=endpoint.id), code=303)


@bp.route("/<merchant_id>/<mode>/developers/webhooks/<endpoint_id>/delete", methods=["GET", "POST"])
@merchant_view(Action.MANAGE_DEVELOPERS)
def webhook_delete(endpoint_id: str):
    endpoint = _endpoint_or_404(endpoint_id)
    form = ConfirmForm() if request.method == "POST" else ConfirmForm(formdata=None)
    if request.method == "POST":
        if not form.validate():
            abort(400)
        service.delete_endpoint(db.session, g.scope, _settings(), endpoint.id)
        _audit("webhook_endpoint.deleted", endpoint.id, url=endpoint.url)
        db.session.commit()
        flash(f"Endpoint {endpoint.url} deleted.", "success")
        return redirect(dash_url("dashboard.webhooks"), code=303)
    return _render("dashboard/webhooks/delete.html", form=form, endpoint=endpoint)


# -- secrets ---------------------------------------------------------------------------------------------

@bp.route("/<merchant_id>/<mode>/developers/webhooks/<endpoint_id>/secret", methods=["POST"])
@merchant_view(Action.MANAGE_DEVELOPERS)
@reauth_required(form_page=_endpoint_page_url)
def webhook_reveal_secret(endpoint_id: str):
    endpoint = _endpoint_or_404(endpoint_id)
    if not ConfirmForm().validate():
        abort(400)
    secret = service.reveal_secret(_settings(), endpoint)
    _audit("webhook_endpoint.secret_revealed", endpoint.id)
    db.session.commit()
    if htmx:
        return _render("dashboard/webhooks/_secret.html", headers=NO_STORE, endpoint=endpoint, secret=secret)
    return _endpoint_page(endpoint, revealed_secret=secret)


@bp.route("/<merchant_id>/<mode>/developers/webhooks/<endpoint_id>/rotate", methods=["POST"])
@merchant_view(Action.MANAGE_DEVELOPERS)
@reauth_required(form_page=_endpoint_page_url)
def webhook_rotate_secret(endpoint_id: str):
    endpoint = _endpoint_or_404(endpoint_id)
    form = RotateForm()
    if not form.validate() or form.grace.data not in GRACE_PERIODS:
        return _endpoint_page(endpoint, rotate_form=form, status=INVALID_FORM)
    endpoint, secret = service.rotate_secret(db.session, g.scope, _settings(), endpoint.id,
                                             GRACE_PERIODS[form.grace.data])
    _audit("webhook_endpoint.secret_rotated", endpoint.id, grace=form.grace.data)
    db.session.commit()
    flash("Secret rotated. Deploy the new secret to your endpoint"
          + (" before the old one stops signing." if endpoint.previous_secret_expires_at else "."), "success")
    return _endpoint_page(endpoint, revealed_secret=secret)


# -- sending ---------------------------------------------------------------------------------------------

@bp.route("/<merchant_id>/<mode>/developers/webhooks/<endpoint_id>/test", methods=["POST"])
@merchant_view(Action.MANAGE_DEVELOPERS)
def webhook_send_test(endpoint_id: str):
    endpoint = _endpoint_or_404(endpoint_id)
    if not ConfirmForm().validate():
        abort(400)
    try:
        delivery = service.send_test_event(db.session, g.scope, _settings(), endpoint.id)
    except service.NotResendable as error:
        db.session.rollback()
        flash(str(error), "error")
        return redirect(dash_url("dashboard.webhook_endpoint", endpoint_id=endpoint.id), code=303)
    _send_soon(delivery.id)
    db.session.commit()
    flash(f"Test event {delivery.event_id} queued; its attempt appears below within seconds (refresh).", "success")
    return redirect(dash_url("dashboard.webhook_endpoint", endpoint_id=endpoint.id), code=303)


@bp.route("/<merchant_id>/<mode>/developers/webhooks/deliveries/<delivery_id>/resend", methods=["POST"])
@merchant_view(Action.MANAGE_DEVELOPERS)
def webhook_resend_delivery(delivery_id: str):
    if not ConfirmForm().validate():
        abort(400)
    try:
        delivery = service.resend_delivery(db.session, g.scope, _settings(), delivery_id)
    except service.NotFound:
        abort(404)
    except service.NotResendable as error:
        db.session.rollback()
        flash(f"Not resent: {error}", "error")
        delivery = service.get_delivery(db.session, g.scope, delivery_id)
    else:
        _send_soon(delivery.id)
        _audit("webhook_delivery.resent", delivery.id, event=delivery.event_id)
        db.session.commit()
        flash(f"Event {delivery.event_id} queued for resending.", "success")
    return redirect(dash_url("dashboard.webhook_event", event_id=delivery.event_id), code=303)


@bp.route("/<merchant_id>/<mode>/developers/webhooks/<endpoint_id>/resend-failed", methods=["POST"])
@merchant_view(Action.MANAGE_DEVELOPERS)
def webhook_bulk_resend(endpoint_id: str):
    endpoint = _endpoint_or_404(endpoint_id)
    form = ResendFailedForm()
    if not form.validate():
        return _endpoint_page(endpoint, resend_form=form, status=INVALID_FORM)
    since = form.since.data.replace(tzinfo=timezone.utc)
    try:
        job = service.start_bulk_resend(db.session, g.scope, _settings(), endpoint.id, since, current_user.id)
    except service.NotResendable as error:
        db.session.rollback()
        form.since.errors.append(str(error))
        return _endpoint_page(endpoint, resend_form=form, status=INVALID_FORM)
    if not job.done:
        enqueue_after_commit(db.session, "app.jobs.webhooks.run_bulk_resend", job.id, queue_name="webhooks")
    _audit("webhook_endpoint.bulk_resend", endpoint.id, since=since.isoformat(), job=job.id, total=job.total)
    db.session.commit()
    return redirect(dash_url("dashboard.webhook_endpoint", endpoint_id=endpoint.id, resend_job=job.id)
                    + "#resend", code=303)


@bp.route("/<merchant_id>/<mode>/developers/webhooks/<endpoint_id>/missed-events", methods=["GET", "POST"])
@merchant_view(Action.MANAGE_DEVELOPERS)
def webhook_send_missed(endpoint_id: str):
    """Confirm, then schedule the events the endpoint missed while it was disabled (the last 30 days)."""
    endpoint = _endpoint_or_404(endpoint_id)
    form = ConfirmForm() if request.method == "POST" else ConfirmForm(formdata=None)
    if request.method == "GET":
        missed = service.count_missed_events(db.session, g.scope, _settings(), endpoint)
        return _render("dashboard/webhooks/send_missed.html", form=form, endpoint=endpoint, missed=missed)
    if not form.validate():
        abort(400)
    try:
        endpoint, missed = service.send_missed_events(db.session, g.scope, _settings(), endpoint.id)
    except service.NotResendable as error:
        db.session.rollback()
        flash(f"Not sent: {error}", "error")
    else:
        _audit("webhook_endpoint.missed_events_sent", endpoint.id, scheduled=missed.count,
               since=missed.since.isoformat())
        db.session.commit()
        flash(f"{missed.count} missed event{'s' if missed.count != 1 else ''} scheduled: "
              "they are sent within seconds and appear in the attempts below.", "success")
    return redirect(dash_url("dashboard.webhook_endpoint", endpoint_id=endpoint.id), code=303)


@bp.route("/<merchant_id>/<mode>/developers/webhooks/resends/<job_id>")
@merchant_view(Action.VIEW)
def webhook_resend_progress(job_id: str):
    """The progress bar fragment, polled by htmx until the job is done."""
    try:
        job = service.get_resend_job(db.session, g.scope, job_id)
    except service.NotFound:
        abort(404)
    return _render("dashboard/webhooks/_resend_progress.html", job=job)


# -- events ----------------------------------------------------------------------------------------------

@bp.route("/<merchant_id>/<mode>/developers/webhooks/events/<event_id>")
@merchant_view(Action.VIEW)
def webhook_event(event_id: str):
    event = g.scope.get(db.session, Event, event_id)
    if event is None:
        abort(404)
    deliveries = service.event_deliveries(db.session, g.scope, event.id)
    endpoints = {e.id: e for e in db.session.scalars(g.scope.select(
        WebhookEndpoint, WebhookEndpoint.id.in_({d.endpoint_id for d, _ in deliveries})))}
    payload = json.dumps(event_payload(event), indent=2, sort_keys=True)
    return _render("dashboard/webhooks/event.html", event=event, payload=payload, deliveries=deliveries,
                   endpoints=endpoints, confirm_form=ConfirmForm(formdata=None), EndpointStatus=EndpointStatus)

