"""Merchant dashboard (/dashboard), cookie sessions with a role per merchant."""
from flask import Blueprint

bp = Blueprint("dashboard", __name__, url_prefix="/dashboard")
