"""The tables of sign-in, second factor, recovery, mail and team invitations, in one place for app/models.py."""
from app.accounts.mail import MailMessage
from app.accounts.recovery import PasswordResetToken
from app.accounts.second_factor import RecoveryCode, SecondFactor
from app.accounts.sessions import UserSession
from app.accounts.team import Invitation

__all__ = ["Invitation", "MailMessage", "PasswordResetToken", "RecoveryCode", "SecondFactor", "UserSession"]
