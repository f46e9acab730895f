"""Imports every model module so that the metadata (and Alembic) sees all tables."""
from app.accounts.models import Membership, Merchant, User  # noqa: F401
from app.accounts.audit import AuditEntry  # noqa: F401
from app.events import Event, PendingFanout  # noqa: F401
from app.accounts.api_keys import ApiKey  # noqa: F401
from app.accounts.auth_models import (  # noqa: F401
    Invitation, MailMessage, PasswordResetToken, RecoveryCode, SecondFactor, UserSession,
)
from app.checkout.models import CheckoutSession  # noqa: F401
from app.payments.models import (  # noqa: F401
    IdempotencyKey, Payment, PaymentAttempt, PaymentOrder, PaymentTokenBinding, Refund, Seller,
)
from app.ledger.models import Entry, JournalTransaction, LedgerAccount, LedgerAccountType  # noqa: F401
from app.psp.models import PspCallback, PspCredential  # noqa: F401
from app.disputes.models import Dispute, File  # noqa: F401
from app.reporting.models import ApiRequestLog, DashboardExport, DashboardExportChunk, PaymentRollup, PaymentRollupDelta  # noqa: F401,E501
from app.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookResendJob  # noqa: F401
from app.inbox.claims import InboxClaim  # noqa: F401
from app.risk.models import (  # noqa: F401
    Assessment, PlatformRiskRule, PlatformValueList, PlatformValueListItem, Review, RiskRule, RiskWeights, ValueList,
    ValueListItem,
)
from app.reconciliation.models import BankEntry, BookDay, Break, Match, ReportFile, ReportLine  # noqa: F401
from app.payouts.models import Payout, PayoutItem, PayoutSchedule  # noqa: F401
from app.payouts.bank_account_models import BankAccount, PayoutExport, PayoutExportItem  # noqa: F401
from app.risk.learning.tables import DriftReport, RiskModel, ScorerActivation  # noqa: F401,E402  (issue 23)
from app.risk.fraud_warnings import EarlyFraudWarning  # noqa: F401,E402  (issue 23: registers the early_fraud_warning.* handlers)
