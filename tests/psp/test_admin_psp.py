"""/admin/psp: platform admins see the breaker of every connector and credential with its window's figures
and can override it (CSRF-protected form); everyone else gets 404."""
import re

import pytest
from sqlalchemy import select

from app.accounts.audit import AuditEntry
from app.accounts.sessions import start_session
from app.psp.breaker import BreakerState
from app.psp.router import router_for_app
from tests import factories

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def login_as(client, session, user) -> None:
    """A real server-side session for the user, as the login view makes."""
    _row, token = start_session(session, user, second_factor_passed=True)
    session.commit()
    with client.session_transaction() as cookie:
        cookie["sid"] = token


@pytest.fixture
def admin_user(db_session):
    user = factories.user(db_session, is_platform_admin=True)
    db_session.commit()
    return user


@pytest.fixture
def breakers_reset(app):
    router = router_for_app(app)
    for name in router.connector_names():
        router.breaker(name).reset()
    yield router
    for name in router.connector_names():
        router.breaker(name).reset()


def test_anonymous_users_are_sent_to_log_in(client):
    response = client.get("/admin/psp")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_non_admins_get_404(client, db_session, merchant):
    owner = factories.member(db_session, merchant, role="owner")
    db_session.commit()
    login_as(client, db_session, owner)
    assert client.get("/admin/psp").status_code == 404
    assert client.post("/admin/psp/sandbox/breaker", data={"action": "force_open"}).status_code in (400, 404)


def test_admin_sees_each_connector_and_forces_the_breaker(client, db_session, admin_user, breakers_reset):
    router = breakers_reset
    router.breaker("sandbox_b").record_failure()
    login_as(client, db_session, admin_user)
    page = client.get("/admin/psp")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    for name in ("sandbox", "sandbox_b", "stripe"):
        assert f'data-connector="{name}"' in html
    assert len(re.findall(r'data-credential="platform">.*?data-state="closed"', html, re.S)) == 3
    assert re.search(r'data-connector="sandbox_b".*?class="breaker-failures">1<', html, re.S)

    token = _CSRF.search(html).group(1)
    response = client.post("/admin/psp/sandbox/breaker", data={"action": "force_open", "csrf_token": token})
    assert response.status_code == 302
    assert router.breaker("sandbox").state() == BreakerState.OPEN
    html = client.get("/admin/psp").get_data(as_text=True)
    assert re.search(r'data-connector="sandbox".*?data-state="open"', html, re.S) and "forced" in html
    audit = db_session.scalars(select(AuditEntry).where(AuditEntry.action == "psp.breaker.force_open")).one()
    assert audit.target == "sandbox:platform" and audit.actor_user_id == admin_user.id

    client.post("/admin/psp/sandbox/breaker", data={"action": "force_close", "csrf_token": token})
    snap = router.breaker("sandbox").snapshot()
    assert snap.state == BreakerState.CLOSED and snap.forced == "closed"
    client.post("/admin/psp/sandbox/breaker", data={"action": "reset", "csrf_token": token})
    assert router.breaker("sandbox").snapshot().forced is None


def test_override_needs_a_csrf_token_and_a_known_action(client, db_session, admin_user, breakers_reset):
    login_as(client, db_session, admin_user)
    assert client.post("/admin/psp/sandbox/breaker", data={"action": "force_open"}).status_code == 400
    assert breakers_reset.breaker("sandbox").state() == BreakerState.CLOSED
    token = _CSRF.search(client.get("/admin/psp").get_data(as_text=True)).group(1)
    assert client.post("/admin/psp/sandbox/breaker", data={"action": "explode", "csrf_token": token}).status_code == 404
    assert client.post("/admin/psp/nope/breaker", data={"action": "reset", "csrf_token": token}).status_code == 404


def test_admin_sees_each_credentials_breaker_with_its_window_figures(client, db_session, admin_user, breakers_reset):
    router = breakers_reset
    shop = factories.merchant(db_session, name="Acme Books")
    db_session.commit()
    credential = f"{shop.id}:live"
    own = router.breaker("stripe", credential)
    own.reset()
    for failed in (True, True, True, False):
        permit = own.allow()
        own.record_failure(permit) if failed else own.record_success(permit)
    own.back_off(20)
    login_as(client, db_session, admin_user)

    html = client.get("/admin/psp").get_data(as_text=True)
    row = re.search(rf'<tr data-connector="stripe" data-credential="{credential}">(.*?)</tr>', html, re.S).group(1)
    assert "Acme Books (live)" in row
    assert 'class="breaker-calls">4<' in row and 'class="breaker-failures">3<' in row
    assert 'class="breaker-rate">75 %<' in row and 'data-state="closed"' in row  # 4 calls: below the minimum
    assert "opens at 50 % failed of at least 20 calls" in row and "in the last 60 s" in row
    assert "rate limited: backing off until" in row
    platform = re.search(r'<tr data-connector="stripe" data-credential="platform">(.*?)</tr>', html, re.S).group(1)
    assert 'class="breaker-calls">0<' in platform and "backing off" not in platform

    # The override acts on that credential's breaker alone.
    token = _CSRF.search(html).group(1)
    response = client.post("/admin/psp/stripe/breaker",
                           data={"action": "force_open", "credential": credential, "csrf_token": token})
    assert response.status_code == 302
    assert own.state() == BreakerState.OPEN and router.breaker("stripe").state() == BreakerState.CLOSED
    audit = db_session.scalars(select(AuditEntry).where(AuditEntry.target == f"stripe:{credential}")).one()
    assert audit.action == "psp.breaker.force_open" and audit.details["credential"] == credential
    html = client.get("/admin/psp").get_data(as_text=True)
    assert re.search(rf'data-credential="{credential}">.*?data-state="open"', html, re.S)
    own.reset()

    # Only the platform's credential or an existing merchant's own in a mode.
    for bad in ("mer_01NOSUCHMERCHANT0000000000:live", f"{shop.id}:staging", "kassa:breaker:index"):
        assert client.post("/admin/psp/stripe/breaker",
                           data={"action": "reset", "credential": bad, "csrf_token": token}).status_code == 404


def test_a_stored_credentials_breaker_is_named_by_its_id_and_labelled(app, client, db_session, admin_user,
                                                                       breakers_reset):
    """Payments record the psp_credentials id they were made with, and the router's breakers carry it: the page
    labels it with the merchant and mode (retired once replaced), and the override accepts only existing ones."""
    from app.crypto import SecretBox
    from app.psp.credentials import set_credentials
    from app.scoping import Scope

    router = breakers_reset
    shop = factories.merchant(db_session, name="Paper Mill")
    box = SecretBox(app.config["KASSA_ENCRYPTION_KEYS"])
    old = set_credentials(db_session, Scope(shop.id, True), box, "stripe", secret_key="sk_live_mill_old").id
    set_credentials(db_session, Scope(shop.id, True), box, "stripe", secret_key="sk_live_mill_new")
    db_session.commit()
    breaker = router.breaker("stripe", old)
    breaker.reset()
    breaker.record_failure(breaker.allow())
    login_as(client, db_session, admin_user)
    html = client.get("/admin/psp").get_data(as_text=True)
    row = re.search(rf'<tr data-connector="stripe" data-credential="{old}">(.*?)</tr>', html, re.S).group(1)
    assert "Paper Mill (live, retired)" in row
    token = _CSRF.search(html).group(1)
    assert client.post("/admin/psp/stripe/breaker",
                       data={"action": "force_open", "credential": old, "csrf_token": token}).status_code == 302
    assert breaker.state() == BreakerState.OPEN
    breaker.reset()
    assert client.post("/admin/psp/stripe/breaker",
                       data={"action": "reset", "credential": "pcr_nosuchcredential", "csrf_token": token}
                       ).status_code == 404


def test_an_operator_declares_how_a_merchants_stripe_deposits_are_confirmed(app, client, db_session, admin_user):
    """Each Stripe account declares how its payouts are confirmed as deposited (app/reconciliation/payout_events.py):
    the page shows the platform's (configuration) and each merchant's own; a merchant's is changed with a reason,
    audited; a missing reason or an unknown choice re-renders the form and changes nothing."""
    from app.crypto import SecretBox
    from app.psp.credentials import current_credential, set_credentials
    from app.scoping import Scope

    shop = factories.merchant(db_session, name="Kiln Works")
    scope = Scope(shop.id, False)
    box = SecretBox(app.config["KASSA_ENCRYPTION_KEYS"])
    credential = set_credentials(db_session, scope, box, "stripe", secret_key="sk_test_kiln").id
    db_session.commit()
    login_as(client, db_session, admin_user)
    html = client.get("/admin/psp").get_data(as_text=True)
    platform = re.search(r'<tr data-credential="platform">(.*?)</tr>', html, re.S).group(1)
    assert "bank statement" in platform and "STRIPE_DEPOSIT_CONFIRMATION_TEST" in platform
    row = re.search(rf'<tr data-credential="{credential}">(.*?)</tr>', html, re.S).group(1)
    assert "Kiln Works" in row and "payout events" in row

    path = f"/admin/psp/credentials/{credential}/deposit-confirmation"
    form = client.get(path).get_data(as_text=True)
    token = _CSRF.search(form).group(1)
    checked = re.search(r'<input[^>]*value="(\w+)"[^>]*checked|<input[^>]*checked[^>]*value="(\w+)"', form)
    assert "payout_events" in checked.groups()
    assert client.post(path, data={"deposit_confirmation": "bank_statement", "reason": "x"}).status_code == 400
    refused = client.post(path, data={"deposit_confirmation": "bank_statement", "reason": "", "csrf_token": token})
    assert refused.status_code == 422 and "Give a reason" in refused.get_data(as_text=True)
    unknown = client.post(path, data={"deposit_confirmation": "webhooks", "reason": "r", "csrf_token": token})
    assert unknown.status_code == 422 and "Not a valid choice" in unknown.get_data(as_text=True)
    db_session.rollback()
    assert current_credential(db_session, scope, "stripe").deposit_confirmation == "payout_events"
    db_session.commit()

    done = client.post(path, data={"deposit_confirmation": "bank_statement", "csrf_token": token,
                                   "reason": "Kiln's Stripe pays into the platform's account"})
    assert done.status_code == 303
    db_session.rollback()
    assert current_credential(db_session, scope, "stripe").deposit_confirmation == "bank_statement"
    entry = db_session.scalars(select(AuditEntry).where(
        AuditEntry.action == "psp_credentials.deposit_confirmation_set", AuditEntry.target == credential)).one()
    assert (entry.merchant_id, entry.actor_user_id, entry.details["previous"], entry.details["reason"]) == (
        shop.id, admin_user.id, "payout_events", "Kiln's Stripe pays into the platform's account")
    db_session.commit()
    assert client.get("/admin/psp/credentials/pcr_nosuchcredential/deposit-confirmation").status_code == 404


def test_non_admins_cannot_see_or_change_a_deposit_confirmation(app, client, db_session):
    from app.crypto import SecretBox
    from app.psp.credentials import set_credentials
    from app.scoping import Scope

    shop = factories.merchant(db_session, name="Kiln Owner")
    owner = factories.member(db_session, shop, "owner")
    box = SecretBox(app.config["KASSA_ENCRYPTION_KEYS"])
    credential = set_credentials(db_session, Scope(shop.id, False), box, "stripe", secret_key="sk_test_own").id
    db_session.commit()
    login_as(client, db_session, owner)
    path = f"/admin/psp/credentials/{credential}/deposit-confirmation"
    assert client.get(path).status_code == 404
    assert client.post(path, data={"deposit_confirmation": "bank_statement", "reason": "mine"}).status_code in (400,
                                                                                                                404)
