"""Per-merchant PSP credentials: encrypted at rest, bound to their row, rotatable, and used by the router to
talk to Stripe with the merchant's own key (against the local stand-in for Stripe's API)."""
import base64

import pytest
from sqlalchemy import text

from app.crypto import ENCRYPTED_COLUMNS, CryptoError, SecretBox, rotate_all
from app.psp.credentials import delete_credentials, load_credential, load_credentials, set_credentials
from app.psp.interfaces import CREDENTIAL_MISSING, AuthorizeRequest, LookupOutcome, Outcome
from app.psp.models import PspCredential
from app.psp.router import app_credential_by_id_loader, app_credentials_loader, build_router
from app.psp.stripe_keys import KeyModeError, check_platform_keys, platform_stripe
from app.scoping import Scope
from tests.psp.fake_stripe import FakeStripe, payment_intent, refund


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
    # The same key with another webhook secret updates the current row.
    same = set_credentials(db_session, scope, box, "stripe", secret_key="sk_test_secret_value",
                           webhook_secret="whsec_rolled", publishable_key="pk_test_public")
    assert same.id == row.id and load_credentials(db_session, scope, box, "stripe")["webhook_secret"] == "whsec_rolled"
    # A new key (maybe another account) retires the row it replaces: kept, for the payments made with it.
    again = set_credentials(db_session, scope, box, "stripe", secret_key="sk_test_new")
    assert again.id != row.id and load_credentials(db_session, scope, box, "stripe") == {
        "id": again.id, "secret_key": "sk_test_new", "webhook_secret": None, "publishable_key": None}
    assert row.retired_at is not None and again.retired_at is None
    assert load_credential(db_session, scope, box, "stripe", row.id)["secret_key"] == "sk_test_secret_value"
    # "Delete" retires too: no current credential, the retired ones still load by id (in their scope only).
    assert delete_credentials(db_session, scope, "stripe") and not delete_credentials(db_session, scope, "stripe")
    assert load_credentials(db_session, scope, box, "stripe") is None
    assert load_credential(db_session, scope, box, "stripe", again.id)["secret_key"] == "sk_test_new"
    assert load_credential(db_session, Scope(merchant.id, True), box, "stripe", again.id) is None
    assert db_session.scalar(text("SELECT count(*) FROM psp_credentials WHERE merchant_id = :m")
                             .bindparams(m=merchant.id)) == 2
    db_session.commit()


@pytest.mark.parametrize(("livemode", "secret_key", "publishable_key", "param", "says"), [
    (False, "sk_live_wrong_mode", None, "secret_key", "live-mode key"),
    (True, "sk_test_wrong_mode", None, "secret_key", "test-mode key"),
    (True, "rk_test_restricted", None, "secret_key", "test-mode key"),
    (False, "pk_test_not_a_secret", None, "secret_key", "not a Stripe secret"),
    (False, "sk_test_fine", "pk_live_wrong_mode", "publishable_key", "live-mode key"),
])
def test_a_key_of_the_other_mode_is_refused_and_nothing_is_stored(db_session, merchant, box, livemode, secret_key,
                                                                   publishable_key, param, says):
    scope = Scope(merchant.id, livemode)
    with pytest.raises(KeyModeError) as refused:
        set_credentials(db_session, scope, box, "stripe", secret_key=secret_key, publishable_key=publishable_key)
    assert refused.value.param == param and says in refused.value.message
    assert load_credentials(db_session, scope, box, "stripe") is None
    db_session.rollback()
    # Restricted keys of the right mode are fine.
    assert set_credentials(db_session, scope, box, "stripe",
                           secret_key="rk_live_ok" if livemode else "rk_test_ok").retired_at is None
    db_session.rollback()


def test_ciphertext_is_bound_to_its_row(db_session, merchant, box, factories_merchant):
    a = set_credentials(db_session, Scope(merchant.id, False), box, "stripe", secret_key="sk_test_a")
    b = set_credentials(db_session, Scope(factories_merchant.id, False), box, "stripe", secret_key="sk_test_b")
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
    row = db_session.scalars(scope.select(PspCredential, PspCredential.retired_at.is_(None))).one()
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


def test_follow_ups_go_to_the_account_that_made_the_payment_even_after_it_was_replaced(app, db_session, merchant,
                                                                                         box):
    """Issue 14 review: a capture, refund or lookup after the merchant replaced (or deleted) its Stripe
    credentials goes to the account that holds the authorization, never the new one or the platform's."""
    fake = FakeStripe()
    config = {**app.config, "STRIPE_API_BASE": fake.url, "STRIPE_API_KEY_LIVE": "sk_live_platform"}
    router = build_router(config, credentials=app_credentials_loader(app),
                          credential_by_id=app_credential_by_id_loader(app))
    scope = Scope(merchant.id, True)
    owner = {"merchant_id": merchant.id, "livemode": True}
    try:
        old = set_credentials(db_session, scope, box, "stripe", secret_key="sk_live_old_account")
        db_session.commit()
        fake.answer("POST", "/v1/payment_intents", (200, payment_intent()))
        fake.answer("POST", "/v1/payment_intents/pi_kassa_1/confirm", (200, payment_intent(status="requires_capture")))
        authorized = router.authorize("stripe", AuthorizeRequest(
            amount=2500, currency="EUR", token="pm_card_visa", idempotency_key="att_1", reference="att_1", **owner))
        assert authorized.outcome == Outcome.SUCCEEDED and authorized.credential == old.id

        new = set_credentials(db_session, scope, box, "stripe", secret_key="sk_live_new_account")
        db_session.commit()
        assert new.id != old.id
        fake.requests.clear()
        fake.answer("POST", "/v1/payment_intents/pi_kassa_1/capture", (200, payment_intent(status="succeeded")))
        captured = router.capture("stripe", "pi_kassa_1", 2500, "EUR", "cap_1", credential=old.id, **owner)
        assert captured.outcome == Outcome.SUCCEEDED and captured.credential == old.id
        assert {r.headers["Authorization"] for r in fake.requests} == {"Bearer sk_live_old_account"}
        # Without a recorded credential (a new payment) the current one is used.
        fake.requests.clear()
        fake.answer("GET", "/v1/payment_intents/pi_kassa_1", (200, payment_intent(status="succeeded")))
        assert router.retrieve("stripe", psp_reference="pi_kassa_1", **owner).credential == new.id
        assert {r.headers["Authorization"] for r in fake.requests} == {"Bearer sk_live_new_account"}

        # Deleted (retired): the old payment's refund still goes to its account.
        assert delete_credentials(db_session, scope, "stripe")
        db_session.commit()
        fake.requests.clear()
        fake.answer("POST", "/v1/refunds", (200, refund()))
        refunded = router.refund("stripe", "pi_kassa_1", 500, "EUR", "re_1", credential=old.id, **owner)
        assert refunded.outcome == Outcome.SUCCEEDED
        assert {r.headers["Authorization"] for r in fake.requests} == {"Bearer sk_live_old_account"}
        # The platform's payments stay on the platform's live key.
        fake.requests.clear()
        router.retrieve("stripe", psp_reference="pi_kassa_1", credential="platform", **owner)
        assert {r.headers["Authorization"] for r in fake.requests} == {"Bearer sk_live_platform"}

        # A credential that does not exist (or is another merchant's or mode's) is refused: nothing is sent,
        # neither with the merchant's current account nor the platform's.
        fake.requests.clear()
        for credential, mode in ((old.id, False), ("pcr_gone", True)):
            refused = router.capture("stripe", "pi_kassa_1", 2500, "EUR", "cap_2", credential=credential,
                                     merchant_id=merchant.id, livemode=mode)
            assert refused.outcome == Outcome.NOT_PROCESSED and refused.error == CREDENTIAL_MISSING
            assert credential in refused.message
            looked = router.retrieve("stripe", psp_reference="pi_kassa_1", credential=credential,
                                     merchant_id=merchant.id, livemode=mode)
            assert looked.outcome == LookupOutcome.UNKNOWN and looked.error == CREDENTIAL_MISSING
        assert fake.requests == []
    finally:
        router.close()
        fake.close()


def test_the_platforms_stripe_key_is_per_mode(app, db_session, merchant):
    """A test-mode payment of a merchant on the platform's account uses the test key, a live one the live key;
    STRIPE_API_KEY (one key for both modes before) is the test key only."""
    fake = FakeStripe()
    config = {**app.config, "STRIPE_API_BASE": fake.url, "STRIPE_API_KEY": "sk_test_legacy",
              "STRIPE_API_KEY_TEST": "sk_test_platform", "STRIPE_API_KEY_LIVE": "sk_live_platform"}
    legacy_only = {**app.config, "STRIPE_API_BASE": fake.url, "STRIPE_API_KEY": "sk_test_legacy"}
    try:
        for livemode, key in ((False, "sk_test_platform"), (True, "sk_live_platform")):
            router = build_router(config, credentials=app_credentials_loader(app))
            fake.requests.clear()
            router.retrieve("stripe", psp_reference="pi_kassa_1", merchant_id=merchant.id, livemode=livemode)
            assert {r.headers["Authorization"] for r in fake.requests} == {f"Bearer {key}"}
            router.close()
        router = build_router(legacy_only, credentials=app_credentials_loader(app))
        fake.requests.clear()
        router.retrieve("stripe", psp_reference="pi_kassa_1", merchant_id=merchant.id, livemode=False)
        assert {r.headers["Authorization"] for r in fake.requests} == {"Bearer sk_test_legacy"}
        fake.requests.clear()
        live = router.retrieve("stripe", psp_reference="pi_kassa_1", merchant_id=merchant.id, livemode=True)
        assert live.outcome == LookupOutcome.UNKNOWN and fake.requests == []
        router.close()
        # A live key configured as the test key is never used for test mode.
        router = build_router({**app.config, "STRIPE_API_BASE": fake.url, "STRIPE_API_KEY_TEST": "sk_live_oops"},
                              credentials=app_credentials_loader(app))
        wrong = router.retrieve("stripe", psp_reference="pi_kassa_1", merchant_id=merchant.id, livemode=False)
        assert wrong.outcome == LookupOutcome.UNKNOWN and wrong.error == "not_configured" and fake.requests == []
        router.close()
    finally:
        fake.close()


def test_platform_keys_are_checked_against_their_mode_at_start_up(database):
    from app import create_app
    from tests.conftest import app_config

    check_platform_keys({"STRIPE_API_KEY_TEST": "rk_test_ok", "STRIPE_API_KEY_LIVE": "sk_live_ok",
                         "STRIPE_PUBLISHABLE_KEY_LIVE": "pk_live_ok"})
    assert platform_stripe({"STRIPE_WEBHOOK_SECRET": "whsec_old", "STRIPE_WEBHOOK_SECRET_LIVE": "whsec_live"},
                           True).webhook_secret == "whsec_live"
    assert platform_stripe({"STRIPE_WEBHOOK_SECRET": "whsec_old"}, False).webhook_secret == "whsec_old"
    assert platform_stripe({"STRIPE_WEBHOOK_SECRET": "whsec_old"}, True).webhook_secret is None
    for setting, value in (("STRIPE_API_KEY_LIVE", "sk_test_in_live"), ("STRIPE_API_KEY_TEST", "sk_live_in_test"),
                           ("STRIPE_API_KEY", "sk_live_legacy_is_test"), ("STRIPE_PUBLISHABLE_KEY_TEST", "pk_live_x")):
        with pytest.raises(RuntimeError, match=setting.removesuffix("_TEST").removesuffix("_LIVE")):
            create_app(app_config(database, **{setting: value}))
