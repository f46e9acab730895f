"""The hosted checkout page (/c/<session id>): thin views over app.checkout.flow.

Security on every response of this blueprint: a Content-Security-Policy with a fresh nonce per
response and no inline script, the tokenizer's origins as the only foreign sources (the sandbox vault
for connect-src; in Stripe mode Stripe.js's origin for script-src and frame-src and Stripe's API for
connect-src), no framing, no caching, no referrer. The card number never arrives here: /confirm takes
a vault token or a Stripe PaymentMethod id.
"""
import re
import secrets
import time
from functools import partial

from flask import abort, current_app, g, jsonify, make_response, redirect, render_template, request, url_for

from app import pan
from app.accounts.models import Merchant
from app.checkout import bp, flow
from app.checkout.limits import CardTestingGuard, Limits, Subject
from app.checkout.models import CheckoutSession
from app.checkout.page import BRAND_NAMES, branding, money
from app.checkout.service import get_public, scope_of, success_redirect_url
from app.checkout.tokenization import Tokenizer, tokenizer_for
from app.extensions import csrf, db, redis_client
from app.money import negotiate_locale
from app.payments.deps import deps_for
from app.psp.router import router_for_app

# A session id: "cs_" + 26 ULID characters + 24 URL-safe random ones. Anything else is a 404 without a query.
_SESSION_ID = re.compile(r"^cs_[0-9A-Z]{26}[A-Za-z0-9_-]{24}$")
# Long enough to read "Payment successful" (and for a screen reader to say it), short enough not to bore.
SUCCESS_REDIRECT_SECONDS = 3


@bp.before_request
def _nonce():
    g.csp_nonce = secrets.token_urlsafe(18)


@bp.context_processor
def _template_globals():
    return {"csp_nonce": g.get("csp_nonce", "")}


@bp.after_request
def _security_headers(response):
    nonce = g.get("csp_nonce", "")
    logo_origin = g.get("logo_origin")
    card: Tokenizer | None = g.get("tokenizer")
    policy = [
        "default-src 'none'",
        " ".join([f"script-src 'nonce-{nonce}'", *(card.script_origins if card else [])]),
        f"style-src 'self' 'nonce-{nonce}'",
        "img-src 'self' data:" + (f" {logo_origin}" if logo_origin else ""),
        # The browser sends the card to the vault (or Stripe) itself; nothing else leaves the page.
        " ".join(["connect-src 'self'", *(card.connect_origins if card else [])]),
        "font-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ]
    if card and card.frame_origins:
        policy.append(" ".join(["frame-src", *card.frame_origins]))
    headers = response.headers
    headers["Content-Security-Policy"] = "; ".join(policy)
    headers["Cache-Control"] = "no-store"
    headers["Pragma"] = "no-cache"
    # The session id is in the URL: never send it to the merchant's site, the PSP or anyone else.
    headers["Referrer-Policy"] = "no-referrer"
    headers["X-Content-Type-Options"] = "nosniff"
    headers["X-Frame-Options"] = "DENY"
    headers["Cross-Origin-Opener-Policy"] = "same-origin"
    headers["Permissions-Policy"] = "camera=(), microphone=(), geolocation=(), payment=()"
    return response


def _load(session_id: str) -> CheckoutSession:
    if not _SESSION_ID.match(session_id):
        abort(404)
    cs = get_public(db.session, session_id)
    if cs is None:
        abort(404)
    return cs


def guard() -> CardTestingGuard:
    return CardTestingGuard(redis_client(), Limits.from_config(current_app.config.get("CHECKOUT_LIMITS")))


def deps():
    """The payments service's collaborators, built once per app."""
    return deps_for(current_app._get_current_object())


def tokenizer(cs: CheckoutSession) -> Tokenizer | None:
    """How this session's page tokenizes cards (app/checkout/tokenization.py); None: it takes no card."""
    return tokenizer_for(db.session, scope_of(cs), deps().vault_for(cs.livemode), current_app.config)


def client_ip() -> str | None:
    # Behind a proxy, the deployment wraps the app in werkzeug's ProxyFix so that remote_addr is the client.
    return request.remote_addr


def _context(cs: CheckoutSession, **extra) -> dict:
    merchant = db.session.get(Merchant, cs.merchant_id)
    brand = branding(merchant)
    g.logo_origin = brand.logo_origin
    locale = negotiate_locale(list(request.accept_languages))
    items = [
        {"name": item["name"], "quantity": item["quantity"], "unit": money(item["unit_amount"], cs.currency, locale),
         "amount": money(item["amount"], cs.currency, locale)}
        for item in (cs.line_items or [])
    ]
    return {"cs": cs, "brand": brand, "livemode": cs.livemode, "locale": locale, "items": items,
            "total": money(cs.amount_total, cs.currency, locale), **extra}


def _render(template: str, cs: CheckoutSession, status: int = 200, **extra):
    return make_response(render_template(template, **_context(cs, **extra)), status)


def _card_summary(view: flow.PageState) -> str | None:
    if not view.card_last4:
        return None
    brand = BRAND_NAMES.get(view.card_brand or "", (view.card_brand or "Card").title())
    return f"{brand} ending in {view.card_last4}"


@bp.get("/<session_id>")
def page(session_id: str):
    """The page in whatever state the session and its payment are: form, processing, 3-D Secure, done."""
    cs = _load(session_id)
    view = flow.refresh(db.session, cs, guard(), deps=deps(), now=time.time(), returned=_returned(),
                        request_id=g.get("request_id"))
    db.session.commit()
    if view.state == flow.COMPLETE:
        return _render("checkout/complete.html", cs, success_url=success_redirect_url(cs),
                       card=_card_summary(view), redirect_seconds=SUCCESS_REDIRECT_SECONDS)
    if view.state == flow.EXPIRED:
        return _render("checkout/expired.html", cs, status=410)
    if view.state == flow.PROCESSING:
        return _render("checkout/processing.html", cs, status_text="Waiting for the payment result…",
                       returned=_returned())
    if view.state == flow.REQUIRES_ACTION:
        return _render("checkout/action.html", cs, action_url=view.action_url)
    g.tokenizer = tokenizer(cs)
    if g.tokenizer is None:
        return _render("checkout/unavailable.html", cs, status=503)
    refused = guard().refused(Subject(cs.id, client_ip(), None), time.time())
    if refused:
        # The decline that reached the limit is still worth reading (without the "try another card").
        last = view.message.removesuffix(" Please try another card.") if view.message else None
        return _render("checkout/refused.html", cs, status=429, message=last)
    return _render("checkout/pay.html", cs, tokenizer=g.tokenizer, message=view.message)


@bp.get("/<session_id>/status")
def status(session_id: str):
    """htmx poll while processing: 204 (nothing to swap) until the state changes, then a full refresh."""
    cs = _load(session_id)
    view = flow.refresh(db.session, cs, guard(), deps=deps(), now=time.time(), returned=_returned(),
                        request_id=g.get("request_id"))
    db.session.commit()
    if view.state == flow.PROCESSING:
        return "", 204
    response = make_response("", 200)
    response.headers["HX-Refresh"] = "true"
    return response


@bp.get("/<session_id>/return")
def three_d_secure_return(session_id: str):
    """Where the 3-D Secure challenge sends the shopper back; the page shows whatever came of it."""
    cs = _load(session_id)
    flow.after_challenge(db.session, cs, deps=deps())
    db.session.commit()
    # The PSP's callback with the challenge's result may still be on its way: until it has arrived,
    # the page shows "processing" and polls, instead of offering the challenge again.
    return redirect(url_for("checkout.page", session_id=cs.id, returned=1), 303)


def _returned() -> bool:
    return request.args.get("returned") == "1"


def _json_error(status: int, message: str, param: str | None = None, code: str = "checkout_error"):
    return jsonify({"error": {"code": code, "message": message, "param": param}}), status


@bp.post("/<session_id>/confirm")
@csrf.exempt
def confirm(session_id: str):
    """Pay with a vault token or a Stripe PaymentMethod id (JSON from checkout.js); answers where the
    browser goes next, or an error.

    No CSRF token: the unguessable session id in the URL is the only credential, no cookie is involved
    (the page sets none), so a forged cross-site request could do nothing its sender could not do
    directly. JSON bodies also force a CORS preflight, which this route never answers.
    """
    cs = _load(session_id)
    card_tokenizer = tokenizer(cs)
    if card_tokenizer is None:
        return _json_error(503, "Card payments are not available on this page.", None, "unavailable")
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("token"), str) or not body["token"].strip():
        return _json_error(400, "The card could not be read. Please enter it again.", "card", "token_missing")
    card = body.get("card") if isinstance(body.get("card"), dict) else {}
    # Only a token of the vault this session pays with, and no card number in what the browser relays
    # (the fingerprint goes to the card-testing counters): checked before anything is kept.
    if not deps().is_token(cs.livemode, body["token"].strip()) or \
            pan.find_card_number(str(card.get("fingerprint") or "")) is not None:
        return _json_error(400, "The card could not be read. Please enter it again.", "card", "token_invalid")
    page_url = url_for("checkout.page", session_id=cs.id)
    return_url = url_for("checkout.three_d_secure_return", session_id=cs.id, _external=True)
    if current_app.config.get("PUBLIC_BASE_URL"):
        return_url = current_app.config["PUBLIC_BASE_URL"].rstrip("/") + \
            url_for("checkout.three_d_secure_return", session_id=cs.id)
    fingerprint = card.get("fingerprint")[:128] if isinstance(card.get("fingerprint"), str) else None
    lookup_card = None
    if card_tokenizer.stripe:
        # Stripe.js gives the page no fingerprint, and what the browser says is not trusted anyway: the
        # card's facts come from Stripe, through the router's connector for this merchant and mode.
        fingerprint = None
        lookup_card = partial(flow.psp_card, router_for_app(current_app._get_current_object()), cs,
                              card_tokenizer.vault)
    result = flow.confirm(
        db.session, cs, guard(), deps=deps(), token=body["token"].strip()[:255], fingerprint=fingerprint,
        ip=client_ip(), return_url=return_url, request_id=g.get("request_id"), now=time.time(),
        lookup_card=lookup_card,
    )
    if result.refused:
        return _json_error(429, "For your security, this page does not accept more payment attempts for now. "
                                "Please try again later.", None, "too_many_attempts")
    if result.error:
        return _json_error(result.status or 400, result.error, result.param)
    return jsonify({"redirect": result.action_url or page_url})


@bp.errorhandler(404)
def _not_found(error):
    return render_template("checkout/not_found.html"), 404
