"""Configuration from the environment (twelve-factor); nothing is read at import time."""
import os
import secrets


def _postgres_url(url: str | None) -> str | None:
    """Point plain postgresql:// URLs at the psycopg 3 driver."""
    if url and url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url[len("postgresql://"):]
    if url and url.startswith("postgres://"):
        return "postgresql+psycopg://" + url[len("postgres://"):]
    return url


def _float(env, name: str, default: float) -> float:
    value = env.get(name)
    return float(value) if value else default


def load_config(env=os.environ) -> dict:
    """Build the Flask config mapping from environment variables."""
    kassa_env = env.get("KASSA_ENV", "production")
    secret_key = env.get("SECRET_KEY")
    if not secret_key:
        if kassa_env == "production":
            raise RuntimeError("SECRET_KEY must be set in production")
        secret_key = secrets.token_hex(32)
    database_url = _postgres_url(env.get("DATABASE_URL"))
    redis_url = env.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    return {
        "KASSA_ENV": kassa_env,
        "SECRET_KEY": secret_key,
        "SQLALCHEMY_DATABASE_URI": database_url,
        "DATABASE_OWNER_URL": _postgres_url(env.get("DATABASE_OWNER_URL")) or database_url,
        "SQLALCHEMY_ENGINE_OPTIONS": {
            # No pool_pre_ping: it costs a round trip (SELECT 1) on every checkout, i.e. every
            # transaction, five per API payment. app.extensions.ping_idle_connections pings only
            # connections that sat idle in the pool (where a dead one is likely: server restart,
            # a firewall dropping idle TCP); pool_recycle replaces connections older than this, so
            # none outlives server-side or middlebox idle limits.
            "pool_recycle": 300,
            # Bound waits so an overloaded pool surfaces as an error instead of a hung request.
            "pool_timeout": 10,
            "pool_size": int(env.get("DB_POOL_SIZE", "10")),
            "max_overflow": int(env.get("DB_MAX_OVERFLOW", "10")),
        },
        "REDIS_URL": redis_url,
        "RATELIMIT_STORAGE_URI": redis_url,
        "RATELIMIT_HEADERS_ENABLED": True,
        "RATELIMIT_KEY_PREFIX": "kassa-rl",
        # With Redis away, limits are kept in each process's memory (per process, so N web processes allow up
        # to N times a limit) until Redis answers again: never unlimited, never a refusal for Redis' sake.
        "RATELIMIT_IN_MEMORY_FALLBACK_ENABLED": True,
        "KASSA_ENCRYPTION_KEYS": env.get("KASSA_ENCRYPTION_KEYS", ""),
        "LEDGER_HMAC_KEY": env.get("LEDGER_HMAC_KEY", ""),
        "API_KEY_HMAC_KEY": env.get("API_KEY_HMAC_KEY", ""),
        "API_RATE_LIMIT": env.get("API_RATE_LIMIT", "100/second"),  # per API key (app/api/auth.py)
        "METRICS_TOKEN": env.get("METRICS_TOKEN", ""),
        # API request log rows are written in batches this often (app/reporting/request_logs.py); 0: at once.
        "REQUEST_LOG_FLUSH_SECONDS": _float(env, "REQUEST_LOG_FLUSH_SECONDS", 0.2),
        "WEBHOOKS_ALLOW_PRIVATE": env.get("WEBHOOKS_ALLOW_PRIVATE", "true" if kassa_env == "development" else ""),  # app/webhooks/ssrf.py
        "SANDBOX_PSP_URL": env.get("SANDBOX_PSP_URL", "http://127.0.0.1:8200"),
        "SANDBOX_ACQUIRER_URLS": env.get(
            "SANDBOX_ACQUIRER_URLS", "sandbox=http://127.0.0.1:8201,sandbox_b=http://127.0.0.1:8202"
        ),
        "SANDBOX_PSP_SECRET": env.get("SANDBOX_PSP_SECRET", ""),
        "SANDBOX_WEBHOOK_SECRET": env.get("SANDBOX_WEBHOOK_SECRET", ""),
        # Days a booked capture or refund may be late in its PSP's report before it is a missing_at_psp break (after the
        # connector's own settlement delay, app/reconciliation/service.py). 0: the day it was due.
        "RECONCILIATION_GRACE_DAYS": int(env.get("RECONCILIATION_GRACE_DAYS", "0") or 0),
        # The learned risk score's dispute window: a captured payment younger than this is not labelled
        # legitimate yet (app/risk/learning/training.py; `flask risk train` and the training job).
        "RISK_DISPUTE_WINDOW_DAYS": int(env.get("RISK_DISPUTE_WINDOW_DAYS", "120") or 120),
        # Hours a day's report or statement may keep failing to be fetched before it is raised in the operators'
        # inbox and on the console (app/reconciliation/failures.py): the "after a day".
        "RECONCILIATION_FETCH_RAISE_HOURS": _float(env, "RECONCILIATION_FETCH_RAISE_HOURS", 24),
        # Connect 1 s: a healthy PSP on the same continent accepts a TCP connection in tens of
        # milliseconds; longer means it is down, and failing fast lets failover act.
        # Read 5 s: card authorizations at acquirers take up to a few seconds at p99.
        "PSP_CONNECT_TIMEOUT": _float(env, "PSP_CONNECT_TIMEOUT", 1.0),
        "PSP_READ_TIMEOUT": _float(env, "PSP_READ_TIMEOUT", 5.0),
        "MAX_CONTENT_LENGTH": 1024 * 1024,
        # The console's upload of a day's settlement report or bank statement (/admin/reconciliation/upload) takes
        # files up to this size, that route only (app/__init__.py LARGE_UPLOADS); werkzeug spools the file part to
        # a temporary file as it arrives. A real PSP's day is tens of MB.
        "RECONCILIATION_MAX_UPLOAD_BYTES": int(env.get("RECONCILIATION_MAX_UPLOAD_BYTES", "") or 200 * 1024 * 1024),
        # Where dispute evidence files are kept (one folder per merchant); unset: in PostgreSQL (app/disputes/files.py).
        "FILES_DIRECTORY": env.get("FILES_DIRECTORY", ""),
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": kassa_env == "production",
        "REMEMBER_COOKIE_HTTPONLY": True,
        "REMEMBER_COOKIE_SAMESITE": "Lax",
        "REMEMBER_COOKIE_SECURE": kassa_env == "production",
        "WTF_CSRF_TIME_LIMIT": None,
        # Sessions end after this long unused, and this long after login however busy (app/accounts/sessions.py:
        # 30 minutes and 12 hours, OWASP ASVS level 2); a sensitive action asks for the password or a code
        # again when the last confirmation is older than REAUTH_WINDOW_SECONDS (app/dashboard/reauth.py: 5 minutes).
        "SESSION_IDLE_TIMEOUT_SECONDS": _float(env, "SESSION_IDLE_TIMEOUT_SECONDS", 1800),
        "SESSION_MAX_AGE_SECONDS": _float(env, "SESSION_MAX_AGE_SECONDS", 43200),
        "REAUTH_WINDOW_SECONDS": _float(env, "REAUTH_WINDOW_SECONDS", 300),
        "PUBLIC_BASE_URL": env.get("PUBLIC_BASE_URL", ""),
        # Reverse proxies in front of Kassa whose X-Forwarded-For/-Proto/-Host are trusted (werkzeug's
        # ProxyFix): 0 when clients connect directly, else a client could claim any address.
        "TRUSTED_PROXIES": int(env.get("TRUSTED_PROXIES") or 0),
        "CHECKOUT_LIMITS": env.get("CHECKOUT_LIMITS", ""),  # card-testing limits (app/checkout/limits.py)
        # Days the first payout to a new or changed bank account waits (app/payouts/bank_accounts.py).
        "PAYOUT_COOLING_DAYS": _float(env, "PAYOUT_COOLING_DAYS", 3),
    }
