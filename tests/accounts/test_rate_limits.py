"""Sign-in rate limits on Redis: per account (failures only) and per IP (every attempt), with a clear
message on the form, 429 and Retry-After."""
import pytest

from app.extensions import db as _db
from tests.accounts.conftest import PASSWORD, audit_rows, csrf, make_app

ACCOUNT_LIMIT = 3
IP_LIMIT = 8


@pytest.fixture(scope="module")
def app(database):
    application = make_app(database, LOGIN_RATE_LIMIT_PER_ACCOUNT=f"{ACCOUNT_LIMIT} per 15 minutes",
                           LOGIN_RATE_LIMIT_PER_IP=f"{IP_LIMIT} per 10 minutes",
                           RESET_RATE_LIMIT_PER_IP="2 per hour", SIGNUP_RATE_LIMIT_PER_IP="2 per hour")
    yield application
    with application.app_context():
        _db.session.remove()
        _db.engine.dispose()


@pytest.fixture(autouse=True)
def empty_redis(redis):
    redis.flushdb()


def _attempt(client, email, password, ip="10.0.0.1"):
    return client.post("/login", data={"email": email, "password": password, "csrf_token": csrf(client, "/signup")},
                       environ_base={"REMOTE_ADDR": ip})


def test_per_account_limit_counts_failures_and_says_so(client, db_session, team_of):
    merchant, users = team_of("owner")
    email = users["owner"].email
    for _ in range(ACCOUNT_LIMIT):
        assert _attempt(client, email, "wrong password").status_code == 422
    # From now on even the right password is refused, from any address, without checking it.
    for ip in ("10.0.0.1", "10.0.0.2"):
        response = _attempt(client, email.upper(), PASSWORD, ip=ip)
        assert response.status_code == 429
        html = response.get_data(as_text=True)
        assert "Too many failed sign-in attempts for this account." in html and "reset your password" in html
        assert 'role="alert"' in html and 'name="email"' in html  # the form, re-rendered with the message
        assert 0 < int(response.headers["Retry-After"]) <= 15 * 60
    # Another account is not affected.
    _other_merchant, others = team_of("owner", name="Other")
    assert _attempt(client, others["owner"].email, PASSWORD).status_code == 303
    throttled = [row for row in audit_rows(db_session, merchant.id, "user.sign_in_failed")
                 if row.details.get("reason") == "rate_limited"]
    assert len(throttled) == 2


def test_success_resets_the_account_counter(client, team_of):
    _merchant, users = team_of("owner")
    email = users["owner"].email
    for _ in range(ACCOUNT_LIMIT - 1):
        _attempt(client, email, "wrong password")
    assert _attempt(client, email, PASSWORD).status_code == 303
    client.post("/logout", data={"csrf_token": csrf(client, "/signup")})
    for _ in range(ACCOUNT_LIMIT - 1):
        assert _attempt(client, email, "wrong password").status_code == 422
    assert _attempt(client, email, PASSWORD).status_code == 303


def test_per_ip_limit_counts_every_attempt(client, team_of):
    _merchant, users = team_of("owner")
    for n in range(IP_LIMIT):
        # Different unknown accounts, so the per-account limit never applies.
        assert _attempt(client, f"nobody{n}@example.com", "whatever password", ip="10.9.9.9").status_code == 422
    response = _attempt(client, users["owner"].email, PASSWORD, ip="10.9.9.9")
    assert response.status_code == 429
    assert "Too many sign-in attempts from your network." in response.get_data(as_text=True)
    assert int(response.headers["Retry-After"]) > 0
    assert _attempt(client, users["owner"].email, PASSWORD, ip="10.9.9.10").status_code == 303


def test_reset_requests_and_sign_ups_are_limited_per_ip(client):
    for _ in range(2):
        response = client.post("/password/forgot", data={"email": "x@example.com",
                                                          "csrf_token": csrf(client, "/password/forgot")})
        assert response.status_code == 200
    response = client.post("/password/forgot", data={"email": "x@example.com",
                                                      "csrf_token": csrf(client, "/password/forgot")})
    assert response.status_code == 429 and "Too many reset requests" in response.get_data(as_text=True)
    for _ in range(2):
        client.post("/signup", data={"csrf_token": csrf(client, "/signup")})
    response = client.post("/signup", data={"csrf_token": csrf(client, "/signup")})
    assert response.status_code == 429 and "Too many sign-ups" in response.get_data(as_text=True)


def test_an_unreachable_redis_does_not_lock_everyone_out(client, team_of, monkeypatch, caplog):
    import redis as redis_lib

    from app.extensions import limiter

    def down(*_args, **_kwargs):
        raise redis_lib.exceptions.ConnectionError("Redis is down")

    strategy = limiter.limiter
    for method in ("hit", "test", "clear", "get_window_stats"):
        monkeypatch.setattr(strategy, method, down)
    _merchant, users = team_of("owner")
    assert _attempt(client, users["owner"].email, "wrong password").status_code == 422
    assert _attempt(client, users["owner"].email, PASSWORD).status_code == 303
    assert "rate limit storage unavailable" in caplog.text
