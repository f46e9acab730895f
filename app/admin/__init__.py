"""Platform admin (/admin): fraud review, breaker state, trial balance; platform admins only."""
from flask import Blueprint

bp = Blueprint("admin", __name__, url_prefix="/admin")

from app.admin import overview_views  # noqa: E402,F401  (/admin/)
from app.admin import psp_views  # noqa: E402,F401  (/admin/psp)
from app.admin import ledger_views  # noqa: E402,F401  (/admin/ledger)
from app.admin import disputes_views  # noqa: E402,F401  (/admin/disputes)
