"""Ledger tables: account types, accounts, journal transactions and their entries (migrations 0005 and 0015).

Rows are written by the database function ``ledger_post`` (called by app/ledger/service.py), never through
the ORM: these models are for reading. Entries and transactions are append-only (triggers); accounts
change only in their balance, version and chain head.

merchant_id and livemode are declared here rather than through MerchantOwned: the mixin adds a separate
index on merchant_id, which the composite unique keys below already cover, and every index costs each
posting a write.
"""
from datetime import datetime

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models_base import Base, utcnow


class LedgerAccountType(Base):
    """One family of accounts and its rules: kind, overdraft, what the code's middle part names.

    Platform-wide reference data, seeded by the migration and read-only to the application role;
    app/ledger/accounts.py's ACCOUNT_TYPES says the same (a test compares them) and gives the reasons.
    """

    __tablename__ = "ledger_account_types"
    __table_args__ = (
        UniqueConstraint("name", "kind", "allow_negative", name="uq_ledger_account_types_rule"),
        CheckConstraint("kind IN ('asset', 'liability', 'equity', 'revenue', 'expense')", name="kind"),
        CheckConstraint("subject IN ('connector', 'seller')", name="subject"),
    )

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    allow_negative: Mapped[bool]
    subject: Mapped[str | None] = mapped_column(String(20))

    def __repr__(self) -> str:
        return f"<LedgerAccountType {self.name} {self.kind}{' may go negative' if self.allow_negative else ''}>"


class LedgerAccount(Base):
    """An account of one book (a merchant in one mode), in one currency, with its running balance.

    ``balance`` is in the account's normal direction (debits minus credits for assets and expenses,
    credits minus debits otherwise); ``version`` counts its entries, the last one carrying it as
    ``version_after``; ``last_hmac`` is that entry's hmac. ``kind`` and ``allow_negative`` are its type's
    (a foreign key to the type's row with both), so the CHECK below applies the type's overdraft rule.
    """

    __tablename__ = "ledger_accounts"
    __table_args__ = (
        UniqueConstraint("merchant_id", "livemode", "code", name="uq_ledger_accounts_book_code"),
        # Target of the entries' composite foreign key: an entry's book is its account's book.
        UniqueConstraint("id", "merchant_id", "livemode", name="uq_ledger_accounts_id_book"),
        ForeignKeyConstraint(
            ["account_type", "kind", "allow_negative"],
            ["ledger_account_types.name", "ledger_account_types.kind", "ledger_account_types.allow_negative"],
            name="fk_ledger_accounts_type_rule",
        ),
        Index("ix_ledger_accounts_book_type_subject", "merchant_id", "livemode", "account_type", "subject"),
        CheckConstraint("allow_negative OR balance >= 0", name="balance_not_negative"),
        CheckConstraint("kind IN ('asset', 'liability', 'equity', 'revenue', 'expense')", name="kind"),
        CheckConstraint("normal_balance = CASE WHEN kind IN ('asset', 'expense') THEN 'debit' ELSE 'credit' END",
                        name="normal_balance"),
        CheckConstraint("currency ~ '^[A-Z]{3}$'", name="currency"),
        CheckConstraint("version >= 0", name="version"),
        CheckConstraint("(version = 0) = (last_hmac IS NULL) AND (last_hmac IS NULL OR octet_length(last_hmac) = 32)",
                        name="chain_head"),
    )

    id: Mapped[str] = mapped_column(primary_key=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"))
    livemode: Mapped[bool] = mapped_column(server_default=text("false"))
    code: Mapped[str] = mapped_column(String(200))
    account_type: Mapped[str] = mapped_column(String(40))
    subject: Mapped[str | None] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(16))
    normal_balance: Mapped[str] = mapped_column(String(6))
    currency: Mapped[str] = mapped_column(String(3))
    allow_negative: Mapped[bool]
    balance: Mapped[int] = mapped_column(server_default=text("0"))
    version: Mapped[int] = mapped_column(server_default=text("0"))
    # The hmac of the account's last entry (the chain head), read and replaced under the account's lock.
    last_hmac: Mapped[bytes | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=text("now()"))

    def __repr__(self) -> str:
        return f"<LedgerAccount {self.code} {self.balance} v{self.version}>"


class JournalTransaction(Base):
    """A balanced movement of money inside one book, posted at most once per business key.

    ``hmac`` seals every column (app/ledger/chain.py) and each entry's hmac covers it; NULL only on
    transactions posted before migration 0015, which could not be sealed without the key.
    """

    __tablename__ = "ledger_transactions"
    __table_args__ = (
        UniqueConstraint("merchant_id", "livemode", "business_key", name="uq_ledger_transactions_book_key"),
        UniqueConstraint("id", "merchant_id", "livemode", name="uq_ledger_transactions_id_book"),
        CheckConstraint("business_key <> ''", name="business_key"),
        CheckConstraint("hmac IS NULL OR octet_length(hmac) = 32", name="hmac_length"),
    )

    id: Mapped[str] = mapped_column(primary_key=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"))
    livemode: Mapped[bool] = mapped_column(server_default=text("false"))
    business_key: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(40))
    description: Mapped[str] = mapped_column(String(500), server_default=text("''"))
    reference: Mapped[str | None] = mapped_column(String(200))
    # When the business key was claimed (the entries carry the time their accounts were locked).
    posted_at: Mapped[datetime] = mapped_column(server_default=text("now()"))
    hmac: Mapped[bytes | None]

    entries: Mapped[list["Entry"]] = relationship(
        back_populates="transaction", viewonly=True, order_by="Entry.id")

    def __repr__(self) -> str:
        return f"<JournalTransaction {self.business_key} {self.kind}>"


class Entry(Base):
    """One leg of a journal transaction on one account, with the account's state after it and its MAC.

    ``hmac`` is HMAC-SHA256 (keyed by LEDGER_HMAC_KEY) over this entry's content, its transaction's seal
    and the previous entry's hmac on the same account (app/ledger/chain.py), so rewriting history needs a
    key the database does not hold.
    """

    __tablename__ = "ledger_entries"
    __table_args__ = (
        ForeignKeyConstraint(
            ["transaction_id", "merchant_id", "livemode"],
            ["ledger_transactions.id", "ledger_transactions.merchant_id", "ledger_transactions.livemode"],
            name="fk_ledger_entries_transaction_book",
        ),
        ForeignKeyConstraint(
            ["account_id", "merchant_id", "livemode"],
            ["ledger_accounts.id", "ledger_accounts.merchant_id", "ledger_accounts.livemode"],
            name="fk_ledger_entries_account_book",
        ),
        # The chain's order, the statement's order and the proof that no version repeats.
        UniqueConstraint("account_id", "version_after", name="uq_ledger_entries_account_version"),
        Index("ix_ledger_entries_transaction_id", "transaction_id"),
        Index("ix_ledger_entries_account_posted", "account_id", "posted_at"),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("direction IN ('debit', 'credit')", name="direction"),
        CheckConstraint("currency ~ '^[A-Z]{3}$'", name="currency"),
        CheckConstraint("version_after >= 1", name="version_after"),
        CheckConstraint("octet_length(hmac) = 32", name="hmac_length"),
    )

    id: Mapped[str] = mapped_column(primary_key=True)
    transaction_id: Mapped[str]
    account_id: Mapped[str]
    merchant_id: Mapped[str]
    livemode: Mapped[bool]
    direction: Mapped[str] = mapped_column(String(6))
    amount: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    balance_after: Mapped[int]
    version_after: Mapped[int]
    posted_at: Mapped[datetime]
    hmac: Mapped[bytes]

    transaction: Mapped[JournalTransaction] = relationship(back_populates="entries", viewonly=True)
    account: Mapped[LedgerAccount] = relationship(viewonly=True)

    def __repr__(self) -> str:
        return f"<Entry {self.direction} {self.amount} {self.currency} on {self.account_id}>"
