"""Kassa: the Flask application factory."""
from pathlib import Path

from flask import Flask, abort, jsonify, render_template, request
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from app import json_input

from app.config import load_config
from app.extensions import csrf, db, htmx, init_redis, limiter, login_manager, migrate, ping_idle_connections
from app.headers import init_security_headers
from app.observability import configure_logging, init_observability

ROOT = Path(__file__).resolve().parent.parent


class JSONProvider(DefaultJSONProvider):
    """Flask's JSON, reading what a client sends as app/json_input.py does: ``request.get_json`` answers a
    body nested too deeply like any other malformed JSON (None when silent), never a RecursionError."""

    def loads(self, s, **kwargs):
        return json_input.loads(s, **kwargs)


def create_app(config: dict | None = None) -> Flask:
    """Build a Kassa app; ``config`` overrides what the environment says."""
    app = Flask(
        __name__,
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
    )
    app.json = JSONProvider(app)
    app.config.from_mapping(load_config())
    if config:
        app.config.update(config)
    if app.config.get("TRUSTED_PROXIES"):
        hops = app.config["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)
    if not app.config.get("SQLALCHEMY_DATABASE_URI"):
        raise RuntimeError("DATABASE_URL is not set (start Kassa with `python3 kassa.py run`)")
    from app.psp.stripe_keys import check_platform_keys

    check_platform_keys(app.config)  # a test-mode Stripe key of the platform is never a live one, nor back

    configure_logging()
    db.init_app(app)
    with app.app_context():
        for engine in db.engines.values():
            ping_idle_connections(engine)
    migrate.init_app(app, db, directory=str(ROOT / "migrations"))
    _register_large_uploads(app)  # before CSRF: its check reads the form, which enforces the body's limit
    csrf.init_app(app)
    login_manager.init_app(app)
    htmx.init_app(app)
    init_redis(app)  # before the limiter: its storage uses the app's Redis pool
    limiter.init_app(app)
    init_observability(app)
    init_security_headers(app)

    from app import models  # noqa: F401  (registers every model on the metadata)
    from app.accounts import login  # noqa: F401  (user loader)
    from app.admin import bp as admin_bp
    from app.api import bp as api_bp
    from app.checkout import bp as checkout_bp
    from app.dashboard import bp as dashboard_bp
    from app.hooks import bp as hooks_bp

    # API keys and PSP signatures authenticate these; cookies never do, so CSRF tokens do not apply.
    csrf.exempt(api_bp)
    csrf.exempt(hooks_bp)
    for blueprint in (api_bp, checkout_bp, dashboard_bp, admin_bp, hooks_bp):
        app.register_blueprint(blueprint)

    _register_error_pages(app)
    _register_input_check(app)
    _register_cli(app)
    return app


def _wants_json() -> bool:
    return request.path.startswith(("/v1", "/hooks")) or request.accept_mimetypes.best == "application/json"


def _register_error_pages(app: Flask) -> None:
    from app.api.errors import error_body

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        # The error's own headers (a 405's Allow, a 401's WWW-Authenticate), without its HTML Content-Type.
        headers = [(name, value) for name, value in error.get_headers() if name.lower() != "content-type"]
        if _wants_json():
            return jsonify(error_body(error)), error.code, headers
        template = f"errors/{error.code}.html" if error.code in (403, 404, 500) else "errors/generic.html"
        return render_template(template, error=error), error.code, headers

    @app.errorhandler(Exception)
    def unexpected_error(error: Exception):
        app.logger.exception("unhandled error")
        db.session.rollback()
        if _wants_json():
            return jsonify({"error": {"type": "api_error", "code": "internal_error",
                                      "message": "An unexpected error occurred.", "param": None}}), 500
        return render_template("errors/500.html", error=error), 500


# Console routes that take files bigger than MAX_CONTENT_LENGTH: endpoint -> the config key of their limit.
LARGE_UPLOADS = {"admin.upload_reconciliation_file": "RECONCILIATION_MAX_UPLOAD_BYTES"}


def _register_large_uploads(app: Flask) -> None:
    @app.before_request
    def allow_large_upload():
        """Raise the body's limit for the routes of LARGE_UPLOADS only (werkzeug spools a file part over 500 KB to
        a temporary file, never the whole body in memory); above it, 413 (the route's own error page)."""
        key = LARGE_UPLOADS.get(request.endpoint or "")
        if key:
            from app.api.auth import UPLOAD_OVERHEAD_BYTES

            request.max_content_length = int(app.config[key]) + UPLOAD_OVERHEAD_BYTES


def _register_input_check(app: Flask) -> None:
    @app.before_request
    def refuse_text_postgresql_cannot_store():
        """A NUL character (``%00``) in a path id, a query value or a form field: 404 for the id, else 400.

        PostgreSQL text cannot hold one, so any query naming it failed with a 500. Browsers never send it;
        refused here once for every page. The API refuses it itself, naming the parameter
        (app/api/payments.py request_params); a PSP callback's body is read raw, never as a form.
        """
        if request.path.startswith("/v1"):
            return
        if any("\x00" in str(value) for value in (request.view_args or {}).values()):
            abort(404)
        fields = list(request.args.items(multi=True))
        if not request.path.startswith("/hooks"):
            fields += request.form.items(multi=True)
        if any("\x00" in name or "\x00" in value for name, value in fields):
            abort(400, "The request contains a NUL character, which no field takes.")


def _register_cli(app: Flask) -> None:
    from app.cli import register_commands

    register_commands(app)
