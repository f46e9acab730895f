"""Second-factor codes are rate-limited like passwords: per account the wrong codes count (then even the right
one is refused, from any address), per IP every attempt counts; 429 with Retry-After and the form again."""
import pyotp
import pytest

from app.extensions import db as _db
from tests import factories
from tests.accounts.conftest import PASSWORD, audit_rows, csrf, csrf_from, make_app

ACCOUNT_LIMIT = 3
IP_LIMIT = 4


@pytest.fixture(scope="module")
def app(database):
    application = make_app(database, SECOND_FACTOR_RATE_LIMIT_PER_ACCOUNT=f"{ACCOUNT_LIMIT} per 15 minutes",
                           SECOND_FACTOR_RATE_LIMIT_PER_IP=f"{IP_LIMIT} per 10 minutes")
    yield application
    with application.app_context():
        _db.session.remove()
        _db.engine.dispose()


@pytest.fixture(autouse=True)
def empty_redis(redis):
    redis.flushdb()


def halfway(app, email: str, ip: str):
    """A client that gave the password from this address; returns it and the second-factor page's CSRF token."""
    client = app.test_client()
    client.post("/login", data={"email": email, "password": PASSWORD, "csrf_token": csrf(client, "/login")},
                environ_base={"REMOTE_ADDR": ip})
    return client, csrf_from(client.get("/login/second-factor").get_data(as_text=True))


def attempt(client, token: str, value: str, ip: str):
    return client.post("/login/second-factor", data={"code": value, "csrf_token": token},
                       environ_base={"REMOTE_ADDR": ip})


def test_wrong_codes_lock_the_account_for_a_while(app, db_session, team_of):
    merchant, users = team_of("owner")
    user = users["owner"]
    secret = factories.second_factor(db_session, user)
    db_session.commit()
    client, token = halfway(app, user.email, "10.0.0.1")
    for _ in range(ACCOUNT_LIMIT):
        assert attempt(client, token, "000000", "10.0.0.1").status_code == 422
    for ip in ("10.0.0.1", "10.0.0.2"):
        other, other_token = halfway(app, user.email, ip)
        response = attempt(other, other_token, pyotp.TOTP(secret).now(), ip)
        assert response.status_code == 429, ip
        html = response.get_data(as_text=True)
        assert "Too many wrong codes for this account." in html and 'role="alert"' in html and 'name="code"' in html
        assert 0 < int(response.headers["Retry-After"]) <= 15 * 60
    failures = audit_rows(db_session, merchant.id, "user.second_factor_failed")
    assert len(failures) == ACCOUNT_LIMIT  # refused without checking the code


def test_a_right_code_clears_the_account_counter(app, db_session, team_of):
    _merchant, users = team_of("owner")
    user = users["owner"]
    secret = factories.second_factor(db_session, user)
    db_session.commit()
    client, token = halfway(app, user.email, "10.0.1.1")
    for _ in range(ACCOUNT_LIMIT - 1):
        attempt(client, token, "000000", "10.0.1.1")
    assert attempt(client, token, pyotp.TOTP(secret).now(), "10.0.1.1").status_code == 303
    other, other_token = halfway(app, user.email, "10.0.1.2")
    assert attempt(other, other_token, "000000", "10.0.1.2").status_code == 422  # not 429: counting from zero


def test_every_attempt_counts_per_address(app, db_session, team_of):
    _merchant, users = team_of("owner", "admin")
    for role in ("owner", "admin"):
        factories.second_factor(db_session, users[role])
    db_session.commit()
    # Spread over two accounts (no account reaches its limit), from one address.
    clients = [halfway(app, users[role].email, "10.0.2.1") for role in ("owner", "admin")]
    statuses = [attempt(client, token, "000000", "10.0.2.1").status_code
                for n in range(IP_LIMIT) for client, token in [clients[n % 2]]]
    assert statuses == [422] * IP_LIMIT
    response = attempt(*clients[0], "000000", "10.0.2.1")
    assert response.status_code == 429 and "Too many attempts from your network." in response.get_data(as_text=True)
    other_address = halfway(app, users["admin"].email, "10.0.2.2")
    assert attempt(*other_address, "000000", "10.0.2.2").status_code == 422
