"""Security headers on every response, written once for the whole app.

- Pages (dashboard, admin, login and the other account pages, error pages): a Content-Security-Policy that
  admits scripts, styles, images and requests from this origin only: no inline script or event handler, no
  inline style, no eval (htmx is configured for that in templates/base.html; page behaviour lives in
  static/kassa.js), no framing. Referrer-Policy same-origin: dashboard URLs name merchants and payments.
- The hosted checkout sets its own, stricter policy per response (a nonce, the tokenizer's and the
  merchant logo's origins, no referrer: app/checkout/routes.py); headers a blueprint set are kept.
- The JSON API and PSP callbacks render nothing: `default-src 'none'`, no framing.
- Everywhere: nosniff, and HSTS in production (a browser ignores HSTS over plain http, and development
  never sends it, so `kassa.py run` on http://127.0.0.1 keeps working).
"""
from flask import Flask, current_app, request

PAGE_POLICY = "; ".join([
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "font-src 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
    "base-uri 'none'",
])
NOTHING_TO_RENDER_POLICY = "default-src 'none'; frame-ancestors 'none'"
# One year, the common minimum (and what HSTS preload lists ask for). Without includeSubDomains: Kassa may
# run on a host whose sibling subdomains are not Kassa's to decide for.
HSTS = "max-age=31536000"
MACHINE_BLUEPRINTS = ("api", "hooks")


def init_security_headers(app: Flask) -> None:
    """Add the headers to every response the app sends (after the blueprints' own after_request)."""
    app.after_request(_security_headers)


def _security_headers(response):
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    if current_app.config.get("KASSA_ENV") == "production":
        headers.setdefault("Strict-Transport-Security", HSTS)
    if request.blueprint in MACHINE_BLUEPRINTS:
        headers.setdefault("Content-Security-Policy", NOTHING_TO_RENDER_POLICY)
        return response
    headers.setdefault("Content-Security-Policy", PAGE_POLICY)
    headers.setdefault("X-Frame-Options", "DENY")  # frame-ancestors for browsers that predate it
    headers.setdefault("Referrer-Policy", "same-origin")
    return response
