"""The merchant API (/v1): JSON, authenticated by API keys."""
from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/v1")

from app.api import errors  # noqa: E402,F401
from app.api import account  # noqa: E402,F401
from app.api import checkout_sessions  # noqa: E402,F401
from app.api import balance, events, openapi, payments, refunds, sellers  # noqa: E402,F401
from app.api import disputes, files  # noqa: E402,F401  (issue 20: disputes and their evidence files)
from app.api import request_log  # noqa: E402,F401  (Developers > Logs: app/api/request_log.py)
from app.api import webhook_endpoints  # noqa: E402,F401  (issue 7: app/api/webhook_endpoints.py)
from app.api import risk  # noqa: E402,F401  (issue 19: reviews and Radar value lists, app/api/risk.py)
from app.api import payouts  # noqa: E402,F401  (issue 22: payouts, balance transactions, schedules)
from app.api import fraud_warnings  # noqa: E402,F401  (issue 23: /v1/radar/early_fraud_warnings)
