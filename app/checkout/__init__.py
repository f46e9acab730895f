"""Hosted checkout (/c/<session id>) for shoppers."""
from flask import Blueprint

bp = Blueprint("checkout", __name__, url_prefix="/c")

from app.checkout import routes  # noqa: E402,F401
