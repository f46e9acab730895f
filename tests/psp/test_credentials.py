"""Per-merchant PSP credentials: encrypted at rest, bound to their row, rotatable, and used by the router to
talk to Stripe with the merchant's own key (against the local stand-in for Stripe's API)."""
import base64

import pytest
from sqlalchemy import text

from app.crypto import ENCRYPTED_COLUMNS, CryptoError, SecretBox, rotate_all
from app.psp.credentials import delete_credentials, load_credentials, set_credentials
from app.psp.interfaces import AuthorizeRequest, Outcome
from app.psp.models import PspCredential
from app.psp.router import app_credentials_loader, build_router
from app.scoping import Scope
from tests.psp.fake_stripe import FakeStripe, payment_intent


@pytest.fixture
def box(app):
    return SecretBox(app.config["KASSA_ENCRYPTION_KEYS"])


def test_secrets_are_encrypted_at_rest_and_round_trip(db_session, merchant, box):
    scope = Scope(merchant.id, False)
    row = set_credentials(db_session, scope, box, "stripe", secret_key="sk_test_secret_value",
                          webhook_secret="whsec_secret_value", publishable_key="pk_test_public")
    db_session.commit()
    stored = db_session.execute(text("SELECT secret_key_encrypted, webhook_secret_encrypted FROM psp_credentials "
                                     "WHERE id = :id"), {"id": row.id}).one()
    assert "sk_test_secret_value" not in stored[0] and "whsec_secret_value" not in stored[1]
    assert stored[0].startswith(box.keys[0][0] + "$")
    assert load_credentials(db_session, scope, box, "stripe") == {
        "id": row.id, "secret_key": "sk_test_secret_value", "webhook_secret": "whsec_secret_value",
        "publishable_key": "pk_test_public"}
    # Other mode, other merchant: nothing.
    assert load_credentials(db_session, Scope(merchant.id, True), box, "stripe") is None
    # Replacing keeps one row per merchant, mode and PSP.
    again = set_credentials(db_session, scope, box, "stripe", secret_key="sk_test_new")
    assert again.id == row.id and load_credentials(db_session, scope, box, "stripe")["webhook_secret"] is None
    assert delete_credentials(db_session, scope, "stripe") and not delete_credentials(db_session, scope, "stripe")
    db_session.commit()


def test_ciphertext_is_bound_to_its_row(db_session, merchant, box, factories_merchant):
    a = set_credentials(db_session, Scope(merchant.id, False), box, "stripe", secret_key="sk_a")
    b = set_credentials(db_session, Scope(factories_merchant.id, False), box, "stripe", secret_key="sk_b")
    b.secret_key_encrypted = a.secret_key_encrypted  # copied between rows: does not authenticate
    db_session.flush()
    with pytest.raises(CryptoError):
        load_credentials(db_session, Scope(factories_merchant.id, False), box, "stripe")
    db_session.rollback()


@pytest.fixture
def factories_merchant(db_session):
    from tests import factories

    row = factories.merchant(db_session, name="Other Shop")
    db_session.commit()
    return row


def test_credential_columns_are_registered_for_rotation(db_session, merchant, box, app):
    labels = {entry.label for entry in ENCRYPTED_COLUMNS}
    assert {"psp_credentials.secret_key_encrypted", "psp_credentials.webhook_secret_encrypted"} <= labels
    scope = Scope(merchant.id, True)
    set_credentials(db_session, scope, box, "stripe", secret_key="sk_live_rotate", webhook_secret="whsec_rotate")
    db_session.commit()
    new_key = "k2:" + base64.b64encode(b"2" * 32).decode()
    rotated_box = SecretBox(f"{new_key},{app.config['KASSA_ENCRYPTION_KEYS']}")
    counts = rotate_all(db_session, rotated_box)
    db_session.commit()
    assert counts["psp_credentials.secret_key_encrypted"] >= 1
    row = db_session.scalars(scope.select(PspCredential)).one()
    assert row.secret_key_encrypted.startswith("k2$")
    assert load_credentials(db_session, scope, SecretBox(new_key), "stripe")["secret_key"] == "sk_live_rotate"


def test_router_talks_to_stripe_with_the_merchants_own_key(app, db_session, merchant, box):
    fake = FakeStripe()
    config = {**app.config, "STRIPE_API_BASE": fake.url, "STRIPE_API_KEY": ""}
    router = build_router(config, credentials=app_credentials_loader(app))
    try:
        set_credentials(db_session, Scope(merchant.id, True), box, "stripe", secret_key="sk_live_merchant_own")
        db_session.commit()
        fake.answer("POST", "/v1/payment_intents", (200, payment_intent()))
        fake.answer("POST", "/v1/payment_intents/pi_kassa_1/confirm", (200, payment_intent(status="requires_capture")))
        request = AuthorizeRequest(amount=2500, currency="EUR", token="pm_card_visa", idempotency_key="att_live_1",
                                   reference="att_live_1", merchant_id=merchant.id, livemode=True)
        assert router.route("stripe", merchant_id=merchant.id, livemode=True) == ["stripe"]
        result = router.authorize("stripe", request)
        assert result.outcome == Outcome.SUCCEEDED and result.connector == "stripe"
        assert {r.headers["Authorization"] for r in fake.requests} == {"Bearer sk_live_merchant_own"}

        # A merchant without credentials (and no platform key) sends nothing.
        count = len(fake.requests)
        other = router.authorize("stripe", AuthorizeRequest(
            amount=100, currency="EUR", token="pm_card_visa", idempotency_key="att_live_2", reference="att_live_2",
            merchant_id=merchant.id, livemode=False))
        assert other.outcome == Outcome.NOT_PROCESSED and other.error == "not_configured"
        assert len(fake.requests) == count
    finally:
        router.close()
        fake.close()


def test_cli_stores_a_merchants_own_stripe_account_encrypted_and_audited(app, db_session, merchant, box):
    runner = app.test_cli_runner()
    # The secret is asked at a hidden prompt when not given on the command line, and never echoed.
    result = runner.invoke(args=["psp-credentials", "set", "--merchant", merchant.id,
                                 "--publishable-key", "pk_test_cli"], input="sk_test_from_prompt\n")
    assert result.exit_code == 0, result.output
    assert "sk_test_from_prompt" not in result.output
    db_session.expire_all()
    loaded = load_credentials(db_session, Scope(merchant.id, False), box, "stripe")
    assert loaded.pop("id").startswith("pcr_") and loaded == {
        "secret_key": "sk_test_from_prompt", "webhook_secret": None, "publishable_key": "pk_test_cli"}
    # A key of the other mode, or an unknown merchant, is refused and changes nothing.
    wrong = runner.invoke(args=["psp-credentials", "set", "--merchant", merchant.id, "--live",
                                "--secret-key", "sk_test_not_live"])
    assert wrong.exit_code != 0 and "--secret-key" in wrong.output
    unknown = runner.invoke(args=["psp-credentials", "set", "--merchant", "mer_nobody", "--secret-key", "sk_test_x"])
    assert unknown.exit_code != 0 and "no merchant" in unknown.output
    db_session.expire_all()
    assert load_credentials(db_session, Scope(merchant.id, True), box, "stripe") is None
    deleted = runner.invoke(args=["psp-credentials", "delete", "--merchant", merchant.id])
    assert deleted.exit_code == 0, deleted.output
    db_session.expire_all()
    assert load_credentials(db_session, Scope(merchant.id, False), box, "stripe") is None
    actions = db_session.scalars(text("SELECT action FROM audit_log WHERE merchant_id = :m ORDER BY created_at")
                                 .bindparams(m=merchant.id)).all()
    assert actions == ["psp_credentials.set", "psp_credentials.deleted"]
