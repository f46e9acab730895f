"""Inbound PSP callbacks (/hooks/<psp>), authenticated by the PSP's signature."""
from flask import Blueprint

bp = Blueprint("hooks", __name__, url_prefix="/hooks")
