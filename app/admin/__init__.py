"""Platform admin (/admin): fraud review, breaker state, trial balance; platform admins only."""
from flask import Blueprint

bp = Blueprint("admin", __name__, url_prefix="/admin")
