"""PSP callbacks: /hooks/sandbox and /hooks/stripe (and /hooks/stripe/<merchant_id> for a merchant's own
Stripe account). Thin: verify the signature first, store the callback (deduplicated), answer 2xx.

Each route names the callback's scope (app/psp/callbacks.py CallbackScope) from the secret that verified
it: the platform's secrets speak for the merchants served by the platform's account (the sandbox for
test mode only), a merchant's stored secret for that merchant in the mode of that secret. The scope is
stored with the callback, and processing acts on nothing outside it.

The answer only waits for the callback to be durable: it is committed before processing starts, and
processing (a few indexed queries and the registered handler) runs after in its own transaction; if it
fails, the row stays due and the sweep (app/jobs/psp.py) retries it. A PSP that does not get a 2xx
retries the callback, which deduplicates on (psp, callback id).
"""
import logging

from flask import current_app, jsonify, request

from app.crypto import SecretBox
from app.extensions import db
from app.hooks import bp
from app.jobs.psp import process_stored_callback
from app.psp import callbacks
from app.psp.callbacks import PLATFORM, CallbackScope
from app.psp.credentials import webhook_credentials
from app.psp.interfaces import CallbackEvent, CallbackRejected
from app.psp.sandbox import parse_sandbox_callback
from app.psp.stripe_connector import StripeConnector
from app.psp.stripe_keys import platform_stripe

log = logging.getLogger(__name__)


def _rejected(exc: CallbackRejected):
    log.warning("callback rejected on %s: %s", request.path, exc)
    return jsonify({"error": {"type": "invalid_request_error", "code": "signature_invalid",
                              "message": "The callback signature is missing, wrong or stale.", "param": None}}), 400


def _accept(scope: CallbackScope, event: CallbackEvent):
    """Store the verified callback with its scope, commit, then process it (once) and answer 200."""
    session = db.session
    row_id, is_new = callbacks.store_callback(session, scope, event)
    session.commit()
    if is_new:
        process_stored_callback(session, row_id)
    return jsonify({"received": True, "duplicate": not is_new}), 200


@bp.post("/sandbox")
def sandbox_callback():
    """Callbacks from the sandbox PSP (both acquirers share one webhook secret); test mode only."""
    body = request.get_data(cache=False)
    try:
        event = parse_sandbox_callback(request.headers, body, current_app.config.get("SANDBOX_WEBHOOK_SECRET", ""))
    except CallbackRejected as exc:
        return _rejected(exc)
    return _accept(CallbackScope("sandbox", False, PLATFORM), event)


@bp.post("/stripe")
def stripe_callback():
    """Stripe events for the platform's account, one webhook secret per mode (STRIPE_WEBHOOK_SECRET_TEST,
    STRIPE_WEBHOOK_SECRET_LIVE: app/psp/stripe_keys.py); a secret vouches only for events of its mode."""
    body = request.get_data(cache=False)
    rejected = CallbackRejected("no webhook secret of the platform's Stripe account is configured")
    for livemode in (False, True):
        secret = platform_stripe(current_app.config, livemode).webhook_secret
        if not secret:
            continue
        try:
            event = StripeConnector(api_key=None, webhook_secret=secret).parse_callback(dict(request.headers), body)
        except CallbackRejected as exc:
            rejected = exc
            continue
        if bool(event.livemode) != livemode:
            rejected = CallbackRejected(f"a {'live' if event.livemode else 'test'}-mode event signed with the "
                                        f"{'live' if livemode else 'test'}-mode secret")
            continue
        return _accept(CallbackScope("stripe", livemode, PLATFORM), event)
    return _rejected(rejected)


@bp.post("/stripe/<merchant_id>")
def stripe_merchant_callback(merchant_id: str):
    """Stripe events from a merchant's own account, signed with the webhook secret it stored with us: its
    current credential's, or a retired one's (that account still tells about the payments made with it; the
    scope names the credential, and processing acts only on objects made with it)."""
    body = request.get_data(cache=False)
    box = SecretBox(current_app.config.get("KASSA_ENCRYPTION_KEYS", ""))
    for livemode, credentials in webhook_credentials(db.session, merchant_id, box, "stripe"):
        connector = StripeConnector(api_key=None, webhook_secret=credentials["webhook_secret"])
        try:
            event = connector.parse_callback(dict(request.headers), body)
        except CallbackRejected:
            continue
        if event.livemode != livemode:
            continue  # a test-mode secret never vouches for a live event, nor the other way round
        db.session.rollback()  # end the credentials read before the store transaction
        return _accept(CallbackScope("stripe", livemode, credentials["id"], merchant_id), event)
    db.session.rollback()
    return _rejected(CallbackRejected("no stored Stripe webhook secret of this merchant matches"))
