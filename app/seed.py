"""Demo data for `python3 kassa.py run`: a platform admin and a demo merchant with a team. Idempotent."""
import click
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy import select

from app.accounts.models import Membership, Merchant, User
from app.accounts.passwords import hash_password
from app.accounts.permissions import Role
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
        lines.append(f"  {email:<22} {DEMO_PASSWORD}   ({'platform admin' if is_admin else role})")
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

from app.disputes.seed import seed_demo_disputes  # noqa: E402

SEED_STEPS.append(seed_demo_disputes)
