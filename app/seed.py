"""Demo data for `python3 kassa.py run`: a platform admin and a demo merchant with a team, and something
of each kind in the operators' inbox. Idempotent."""
import click
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy import select

from app.accounts.models import Membership, Merchant, User
from app.accounts.passwords import hash_password
from app.accounts.permissions import Role
from app.accounts.second_factor import SecondFactor, enrol_confirmed
from app.crypto import SecretBox
from app.extensions import db
from app.ids import new_id

DEMO_PASSWORD = "kassa-demo-password"
DEMO_MERCHANT_NAME = "Demo Shop"
DEMO_USERS = [
    ("admin@kassa.test", "Platform Admin", None, True),
    ("owner@demo.test", "Olivia Owner", Role.OWNER, False),
    ("dev@demo.test", "Dev Eloper", Role.DEVELOPER, False),
    ("analyst@demo.test", "Ana Lyst", Role.ANALYST, False),
]

# The demo platform admin's TOTP secret (platform admins must use two-step sign-in), public in the README for
# the demo only: add it to an authenticator app, or print the current code with
# `python3 -c "import pyotp; print(pyotp.TOTP('KASSADEMOTOTPSECRETFORADMINONLY2').now())"` in .venv.
DEMO_ADMIN_TOTP_SECRET = "KASSADEMOTOTPSECRETFORADMINONLY2"

# Later features register extra seeding steps here: functions (session, merchant, web_url) -> lines to print.
SEED_STEPS: list = []
DEFAULT_WEB_URL = "http://127.0.0.1:5000"


def seed_demo(session, web_url: str = DEFAULT_WEB_URL) -> tuple[Merchant, list[str]]:
    """Create (or find) the demo merchant and users; returns the merchant and lines to print."""
    merchant = session.scalars(select(Merchant).where(Merchant.name == DEMO_MERCHANT_NAME)).first()
    if merchant is None:
        merchant = Merchant(id=new_id("mer"), name=DEMO_MERCHANT_NAME, display_name=DEMO_MERCHANT_NAME)
        session.add(merchant)
        session.flush()
    lines = []
    for email, name, role, is_admin in DEMO_USERS:
        user = session.scalars(select(User).where(User.email == email)).first()
        if user is None:
            user = User(id=new_id("usr"), email=email, name=name,
                        password_hash=hash_password(DEMO_PASSWORD), is_platform_admin=is_admin)
            session.add(user)
            session.flush()
        if role is not None:
            membership = session.scalars(select(Membership).where(
                Membership.user_id == user.id, Membership.merchant_id == merchant.id)).first()
            if membership is None:
                session.add(Membership(id=new_id("mem"), user_id=user.id, merchant_id=merchant.id, role=role))
        if is_admin and session.get(SecondFactor, user.id) is None:
            enrol_confirmed(session, user, SecretBox(current_app.config.get("KASSA_ENCRYPTION_KEYS", "")),
                            DEMO_ADMIN_TOTP_SECRET)
        lines.append(f"  {email:<22} {DEMO_PASSWORD}   ({'platform admin' if is_admin else role})"
                     + (f", TOTP secret {DEMO_ADMIN_TOTP_SECRET}" if is_admin else ""))
    for step in SEED_STEPS:
        lines.extend(step(session, merchant, web_url))
    return merchant, lines


@click.command("seed-demo")
@with_appcontext
def seed_demo_command():
    """Create the demo merchant, its team and a platform admin (safe to run again)."""
    merchant, lines = seed_demo(db.session, current_app.config.get("PUBLIC_BASE_URL") or DEFAULT_WEB_URL)
    db.session.commit()
    click.echo(f"Demo merchant: {merchant.name} ({merchant.id})")
    click.echo("Demo logins:")
    for line in lines:
        click.echo(line)


from app.accounts.api_keys_cli import seed_api_keys  # noqa: E402

SEED_STEPS.append(seed_api_keys)

from app.checkout.service import seed_demo_session  # noqa: E402

SEED_STEPS.append(seed_demo_session)

# Demo inbox items: an outcome unknown at the PSP, a callback that failed to apply, a webhook endpoint
# disabled for failing (disputes due soon come from app/disputes/seed.py). Each is found again by a fixed marker.
DEMO_STUCK_DESCRIPTION = "Demo: authorization outcome unknown at the PSP"
DEMO_CALLBACK_ID = "demo-failed-callback"
DEMO_ENDPOINT_URL = "https://demo-shop.example/kassa/webhooks"


def seed_demo_inbox(session, merchant: Merchant, _web_url: str) -> list[str]:
    """SEED_STEPS entry: one item of each of the inbox's kinds, for the demo merchant in test mode."""
    from datetime import timedelta

    from sqlalchemy.dialects.postgresql import insert

    from app.models_base import utcnow
    from app.payments.models import Payment, PaymentAttempt, PaymentOrder
    from app.payments.service import default_seller
    from app.psp.models import PspCallback
    from app.scoping import Scope
    from app.webhooks.models import DisabledReason, EndpointStatus, WebhookEndpoint
    from app.webhooks.service import create_endpoint
    from app.webhooks.settings import settings_for

    scope, now = Scope(merchant.id, False), utcnow()
    if session.scalars(scope.select(Payment, Payment.description == DEMO_STUCK_DESCRIPTION)).first() is None:
        created = now - timedelta(hours=2)
        payment = scope.new(Payment, id=new_id("pay"), amount=4200, currency="EUR", status="processing",
                            capture_method="automatic", amount_capturable=0, amount_received=0, amount_refunded=0,
                            customer_email="stuck@example.com", description=DEMO_STUCK_DESCRIPTION, metadata_={},
                            payment_method_token="tok_demo_stuck", payment_method_vault="sandbox", capture_count=0,
                            created_at=created, updated_at=created)
        session.add(payment)
        session.flush()
        session.add(scope.new(PaymentOrder, id=new_id("po"), payment_id=payment.id,
                              seller_id=default_seller(session, scope).id, position=0, amount=4200, fee=0,
                              amount_captured=0, fee_captured=0, amount_refunded=0, fee_refunded=0))
        attempt_id = new_id("att")
        # Asked about again in a week, not by the janitor's next sweep: the demo keeps its item until an
        # operator asks the PSP now (the sandbox knows nothing of it, so the answer is definite).
        session.add(scope.new(PaymentAttempt, id=attempt_id, payment_id=payment.id, operation="authorize",
                              status="unknown", amount=4200, currency="EUR", vault="sandbox",
                              payment_method_token="tok_demo_stuck", connector="sandbox",
                              idempotency_key=f"kassa-{attempt_id}", tries=3,
                              error_message="read timeout after 5 s", next_attempt_at=now + timedelta(days=7),
                              started_at=created, attention_since=created + timedelta(minutes=30),
                              attention_reason=f"No definite outcome of this authorize since {created:%Y-%m-%d %H:%M} "
                                               "UTC; last answer: sandbox could not tell (read_timeout). "
                                               "Kassa keeps asking.",
                              created_at=created, updated_at=created))
        payment.latest_attempt_id = attempt_id
    session.execute(insert(PspCallback).values(
        id=new_id("pcb"), psp="sandbox", callback_id=DEMO_CALLBACK_ID, type="authorization.updated",
        connector="sandbox", psp_reference="auth_demo_unknown", livemode=False, verified_with="platform",
        payload={"id": "auth_demo_unknown", "status": "authorized"}, received_at=now - timedelta(days=1),
        processed_at=now - timedelta(hours=1), result="failed", attempts=30, next_attempt_at=now,
        last_error="OperationalError: the handler could not reach the database (demo)",
    ).on_conflict_do_nothing(constraint="uq_psp_callbacks_psp_callback_id"))
    if session.scalars(scope.select(WebhookEndpoint, WebhookEndpoint.url == DEMO_ENDPOINT_URL)).first() is None:
        endpoint, _secret = create_endpoint(session, scope, settings_for(current_app), url=DEMO_ENDPOINT_URL,
                                            enabled_events=["*"], description="Demo: disabled after failing")
        endpoint.status, endpoint.disabled_reason = EndpointStatus.DISABLED, DisabledReason.FAILING
        endpoint.failing_since, endpoint.disabled_at = now - timedelta(days=3, hours=2), now - timedelta(hours=2)
        endpoint.disabled_detail = "Every delivery attempt failed for three days; the last one: 502 Bad Gateway."
    session.flush()
    return ["Operator inbox (as admin@kassa.test): an unknown outcome, a failed callback, a disabled webhook "
            "endpoint and disputes due soon under /admin/inbox"]


SEED_STEPS.append(seed_demo_inbox)

# Before the disputes' payments exist: the reconciled demo days must not find them unreported.
from app.reconciliation.seed import seed_demo_reconciliation  # noqa: E402

SEED_STEPS.append(seed_demo_reconciliation)

# Right after reconciliation: its deposited days are what the demo payouts pay (the disputes that follow then leave
# the demo seller a negative balance, carried to its next payouts).
from app.payouts.seed import seed_demo_payouts  # noqa: E402

SEED_STEPS.append(seed_demo_payouts)


from app.disputes.seed import seed_demo_disputes  # noqa: E402

SEED_STEPS.append(seed_demo_disputes)

from app.risk.seed import seed_demo_risk  # noqa: E402

SEED_STEPS.append(seed_demo_risk)

from app.risk.learning.demo import seed_demo_model  # noqa: E402  (issue 23)

SEED_STEPS.append(seed_demo_model)
