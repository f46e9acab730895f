"""Merchant dashboard (/dashboard), cookie sessions with a role per merchant."""
from flask import Blueprint

bp = Blueprint("dashboard", __name__, url_prefix="/dashboard")

from app.dashboard import auth_views, mail_views, settings_views, shell_views, team_views  # noqa: E402,F401
from app.dashboard import developers  # noqa: E402,F401  (Developers > API keys)
# Home, Payments, Refunds, exports and Developers > Logs (issue 8).
from app.dashboard import exports_views, logs_views, payment_actions, payments_views, reporting_helpers  # noqa: E402,F401
from app.dashboard import webhook_views  # noqa: E402,F401  (Developers > Webhooks, issue 7)
from app.dashboard import api_reference  # noqa: E402,F401  (Developers > API reference, issue 5)
from app.dashboard import ledger_views  # noqa: E402,F401  (Balances, ledger statements, issue 3)
from app.dashboard import settlement_views  # noqa: E402,F401  (Settlement per day, issue 21)
from app.dashboard import go_live_views  # noqa: E402,F401  (Settings > Go live, issue 17)
from app.dashboard import reauth, second_factor_views, sessions_views  # noqa: E402,F401  (issue 18: account security)
from app.dashboard import disputes_views  # noqa: E402,F401  (Disputes, issue 20)
from app.dashboard import risk_views  # noqa: E402,F401  (Risk rules, value lists, reviews, issue 19)
from app.dashboard import payouts_views  # noqa: E402,F401  (Payouts, issue 22)
from app.dashboard import sellers_views  # noqa: E402,F401  (Sellers and their bank accounts, issue 22)
