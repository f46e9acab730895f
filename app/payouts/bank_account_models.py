"""Bank accounts that payouts go to (one active account per seller, or for the merchant itself, and book), and
the SEPA credit-transfer files payouts are exported in (app/payouts/sepa.py).

A change never edits the numbers of a row: the new account is a new row and the old one is marked replaced
(kept, so that past payouts still name where they went). The account number (IBAN or local number) is sealed
with app/crypto.py SecretBox; only its last four characters are stored in clear, for the masked display.
"""
from datetime import date, datetime

from sqlalchemy import CheckConstraint, ForeignKey, ForeignKeyConstraint, Index, PrimaryKeyConstraint, \
    String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from app.crypto import register_encrypted_column
from app.models_base import Base, utcnow

KINDS = ("iban", "local")


class BankAccount(Base):
    """A payout destination: holder, country, currency and the sealed account number."""

    __tablename__ = "bank_accounts"
    __table_args__ = (
        # merchant_id leads every key (ARCHITECTURE.md, "Growing past one machine").
        PrimaryKeyConstraint("merchant_id", "id", name="pk_bank_accounts"),
        CheckConstraint("kind IN ('iban', 'local')", name="kind"),
        # One active account per seller and book, and one for the merchant itself (seller_id NULL): a
        # concurrent second change waits for the first's commit and then fails instead of leaving two.
        Index("uq_bank_accounts_active_seller", "merchant_id", "livemode", "seller_id", unique=True,
              postgresql_where=text("replaced_at IS NULL AND seller_id IS NOT NULL")),
        Index("uq_bank_accounts_active_merchant", "merchant_id", "livemode", unique=True,
              postgresql_where=text("replaced_at IS NULL AND seller_id IS NULL")),
        Index("ix_bank_accounts_scope_seller", "merchant_id", "livemode", "seller_id", "created_at"),
    )

    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"))
    livemode: Mapped[bool] = mapped_column(server_default=text("false"))
    id: Mapped[str] = mapped_column(String(64))
    # NULL: the merchant's own account (its net revenue is paid there). No foreign key to sellers yet: that
    # older table's key is its id alone, and a key of (merchant_id, id) comes with its sharding migration.
    seller_id: Mapped[str | None] = mapped_column(String(64))
    holder_name: Mapped[str] = mapped_column(String(140))   # SEPA's limit for a creditor's name
    country: Mapped[str] = mapped_column(String(2))
    currency: Mapped[str] = mapped_column(String(3))
    kind: Mapped[str] = mapped_column(String(10))           # iban | local
    # The IBAN (kind iban) or the local account number, sealed; AAD binds it to this row (account_aad).
    number_encrypted: Mapped[str] = mapped_column(Text)
    last4: Mapped[str] = mapped_column(String(4))
    bic: Mapped[str | None] = mapped_column(String(11))          # a bank's identifier, public
    routing_code: Mapped[str | None] = mapped_column(String(34))  # sort code, ABA routing number, ...: public
    bank_name: Mapped[str | None] = mapped_column(String(200))
    # Payouts to it wait until then (the cooling period after a new or changed account).
    cooling_until: Mapped[datetime | None]
    # A payout to it failed: no payout goes there until the account is changed.
    flagged_at: Mapped[datetime | None]
    flag_code: Mapped[str | None] = mapped_column(String(64))
    created_by: Mapped[str | None] = mapped_column(String(64))   # the user id
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))
    replaced_at: Mapped[datetime | None]


def account_aad(row: BankAccount) -> str:
    """Associated data of a sealed account number: binds the ciphertext to its book and row."""
    return f"bank_accounts:{row.merchant_id}:{row.id}"


# `flask secrets rotate` re-seals them under the newest key (app/crypto.py).
register_encrypted_column(BankAccount, "number_encrypted", associated_data=account_aad)


class PayoutExport(Base):
    """A SEPA credit-transfer file (pain.001) as it was produced: the platform's bank pays what it lists."""

    __tablename__ = "payout_exports"
    __table_args__ = (
        PrimaryKeyConstraint("merchant_id", "id", name="pk_payout_exports"),
        Index("ix_payout_exports_scope_created", "merchant_id", "livemode", "created_at"),
    )

    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"))
    livemode: Mapped[bool] = mapped_column(server_default=text("false"))
    id: Mapped[str] = mapped_column(String(64))
    message_id: Mapped[str] = mapped_column(String(35))     # the file's MsgId (pain.001's Max35Text)
    debtor_bank_account_id: Mapped[str] = mapped_column(String(64))
    debtor_last4: Mapped[str] = mapped_column(String(4))
    currency: Mapped[str] = mapped_column(String(3))
    payout_count: Mapped[int]
    total: Mapped[int]                                       # minor units
    execution_date: Mapped[date]
    # The XML as handed out, sealed like the account numbers it lists (export_aad).
    document_encrypted: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))


class PayoutExportItem(Base):
    """A payout in an export: its key (merchant_id, payout_id) lets a payout into exactly one file."""

    __tablename__ = "payout_export_items"
    __table_args__ = (
        PrimaryKeyConstraint("merchant_id", "payout_id", name="pk_payout_export_items"),
        ForeignKeyConstraint(["merchant_id", "export_id"], ["payout_exports.merchant_id", "payout_exports.id"],
                             name="fk_payout_export_items_export"),
        Index("ix_payout_export_items_export", "merchant_id", "export_id"),
    )

    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"))
    livemode: Mapped[bool] = mapped_column(server_default=text("false"))
    payout_id: Mapped[str] = mapped_column(String(64))       # the EndToEndId in the file
    export_id: Mapped[str] = mapped_column(String(64))
    bank_account_id: Mapped[str] = mapped_column(String(64))
    amount: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))


def export_aad(row: PayoutExport) -> str:
    """Associated data of a sealed export file."""
    return f"payout_exports:{row.merchant_id}:{row.id}"


register_encrypted_column(PayoutExport, "document_encrypted", associated_data=export_aad)
