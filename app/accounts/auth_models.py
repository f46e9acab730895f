"""The tables of sign-in, recovery, mail and team invitations, in one place for app/models.py."""
from app.accounts.mail import MailMessage
from app.accounts.recovery import PasswordResetToken
from app.accounts.sessions import UserSession
from app.accounts.team import Invitation

__all__ = ["Invitation", "MailMessage", "PasswordResetToken", "UserSession"]
