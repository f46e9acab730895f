"""The merchant API (/v1): JSON, authenticated by API keys."""
from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/v1")

from app.api import errors  # noqa: E402,F401
