"""Platform admin overview: what the platform holds and where the admin tools are."""
from flask import render_template
from sqlalchemy import func, select

from app.accounts.models import Merchant, User
from app.admin import bp
from app.dashboard.context import platform_admin_required
from app.extensions import db
from app.reconciliation.models import PLATFORM_MERCHANT_ID


@bp.get("/")
@platform_admin_required
def index():
    """Counts across all merchants (cross-merchant queries stay in admin) and links to the tools."""
    users = select(func.count()).select_from(User)
    return render_template(
        "admin/index.html",
        merchant_count=db.session.scalar(select(func.count()).select_from(Merchant)
                                         .where(Merchant.id != PLATFORM_MERCHANT_ID)),
        user_count=db.session.scalar(users),
        admin_count=db.session.scalar(users.where(User.is_platform_admin)),
    )
