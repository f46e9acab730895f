"""Inbound PSP callbacks (/hooks/<psp>), authenticated by the PSP's signature."""
from flask import Blueprint

bp = Blueprint("hooks", __name__, url_prefix="/hooks")

from app.hooks import sandbox  # noqa: E402,F401  (/hooks/sandbox, /hooks/stripe)
