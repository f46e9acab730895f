"""Flask-Login wiring: how a session cookie becomes the current user."""
from app.accounts.models import User
from app.extensions import db, login_manager


@login_manager.user_loader
def load_user(user_id: str) -> User | None:
    return db.session.get(User, user_id)
