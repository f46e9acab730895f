"""Platform admin (/admin), the operator console: the inbox, merchants, users, payments across merchants,
PSP breakers, the ledger. Platform admins only (everyone else gets 404)."""
from flask import Blueprint

bp = Blueprint("admin", __name__, url_prefix="/admin")

from app.admin import overview_views  # noqa: E402,F401  (/admin/)
from app.admin import psp_views  # noqa: E402,F401  (/admin/psp)
from app.admin import ledger_views  # noqa: E402,F401  (/admin/ledger)
from app.admin import inbox_views  # noqa: E402,F401  (/admin/inbox, callbacks, webhook endpoints)
from app.admin import merchants_views  # noqa: E402,F401  (/admin/merchants)
from app.admin import users_views  # noqa: E402,F401  (/admin/users)
from app.admin import payments_views  # noqa: E402,F401  (/admin/payments)
from app.admin.helpers import template_globals  # noqa: E402

bp.context_processor(template_globals)
