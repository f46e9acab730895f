"""Platform admin (/admin), the operator console: the inbox, merchants, users, payments across merchants,
PSP breakers, the ledger. Platform admins only (everyone else gets 404).

Every admin action is a POST, and every POST of this blueprint needs a recent re-authentication with the
second factor (app/dashboard/reauth.py): a console view gets it by being a POST here, nothing to add. After
the confirmation the admin comes back to the page the form was on (the Referer); a page that wants the typed
fields back fills its form with ``kept_form()``, and a POST-only view whose form lives elsewhere can name that
page with ``@reauth_required(form_page=...)`` under ``@platform_admin_required``.
"""
from flask import Blueprint, request
from flask_login import current_user

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.before_request
def _reauthenticate_before_every_action():
    if request.method == "POST" and current_user.is_authenticated and current_user.is_platform_admin:
        from app.dashboard.reauth import demand_reauth

        return demand_reauth()
    return None  # others are answered by the view (404 for everyone but platform admins)


from app.admin import overview_views  # noqa: E402,F401  (/admin/)
from app.admin import psp_views  # noqa: E402,F401  (/admin/psp)
from app.admin import ledger_views  # noqa: E402,F401  (/admin/ledger)
from app.admin import inbox_views  # noqa: E402,F401  (/admin/inbox, callbacks, webhook endpoints)
from app.admin import merchants_views  # noqa: E402,F401  (/admin/merchants)
from app.admin import users_views  # noqa: E402,F401  (/admin/users)
from app.admin import payments_views  # noqa: E402,F401  (/admin/payments)
from app.admin import disputes_views  # noqa: E402,F401  (/admin/disputes)
from app.admin import risk_views  # noqa: E402,F401  (/admin/risk: platform rules and lists, review queue; issue 19)
from app.admin import risk_models_views  # noqa: E402,F401  (/admin/risk/models: learned models; issue 23)
from app.admin import reconciliation_views  # noqa: E402,F401  (/admin/reconciliation)
from app.admin.helpers import template_globals  # noqa: E402

bp.context_processor(template_globals)
