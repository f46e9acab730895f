"""Reconciliation: files as received, staged report lines, bank statement entries, matches, breaks; the platform book.

1. The ledger account types ``psp_clearing`` (asset, may go negative), ``payouts_in_transit`` (liability, may not)
   and ``suspense`` (liability, may go negative) and their overdraft rules are already rows of
   ``ledger_account_types`` (0015_ledger_account_rules seeded every type ARCHITECTURE.md names; the reasons are in
   app/ledger/accounts.py). This migration checks they are there with those rules, and fails loudly otherwise.
2. The platform book per mode: a reserved ``merchants`` row ``mer_platform``, so that suspense accounts and
   their transactions obey the ledger's book rules (merchant_id NOT NULL, one book per transaction); its
   livemode false/true books are the two modes. Platform-wide rows stay local tables (ARCHITECTURE.md).
3. ``reconciliation_files`` (content unchanged, SHA-256 checksum, source, version; the application may insert and
   read them, and update only the computed ``differences`` and ``line_count``), ``reconciliation_lines`` (staged
   by COPY, keyed by file and line number), ``reconciliation_bank_entries``; merchant-owned
   ``reconciliation_matches`` and ``reconciliation_breaks`` lead their keys with ``merchant_id`` (shard rules).

Revision ID: 0022_reconciliation
Revises: 0021_payment_credentials
Create Date: 2026-12-07
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0022_reconciliation'
down_revision = '0021_payment_credentials'
branch_labels = None
depends_on = None


EXPECTED_TYPES = {"psp_clearing": ("asset", True), "payouts_in_transit": ("liability", False),
                  "suspense": ("liability", True)}
PLATFORM_MERCHANT_ID = "mer_platform"


def upgrade():
    rows = op.get_bind().execute(sa.text(
        "SELECT name, kind, allow_negative FROM ledger_account_types WHERE name = ANY(:names)"),
        {"names": list(EXPECTED_TYPES)}).all()
    found = {row.name: (row.kind, row.allow_negative) for row in rows}
    if found != EXPECTED_TYPES:
        raise RuntimeError(f"ledger_account_types should hold {EXPECTED_TYPES}, holds {found}")
    op.execute(sa.text("INSERT INTO merchants (id, name) VALUES (:id, 'Kassa platform book') "
                       "ON CONFLICT (id) DO NOTHING").bindparams(id=PLATFORM_MERCHANT_ID))
    op.create_table('reconciliation_files',
    sa.Column('id', sa.String(), nullable=False),
    sa.Column('source', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('livemode', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('report_date', sa.Date(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('checksum', sa.String(length=64), nullable=False),
    sa.Column('content', sa.LargeBinary(), nullable=False),
    sa.Column('filename', sa.String(length=255), nullable=True),
    sa.Column('supersedes_id', sa.String(), nullable=True),
    sa.Column('line_count', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('differences', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('uploaded_by', sa.String(length=320), nullable=True),
    sa.Column('received_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("kind IN ('settlement', 'bank_statement')", name=op.f('ck_reconciliation_files_kind')),
    sa.CheckConstraint('version >= 1', name=op.f('ck_reconciliation_files_version')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reconciliation_files')),
    sa.UniqueConstraint('source', 'kind', 'livemode', 'report_date', 'checksum', name='uq_reconciliation_files_checksum'),
    sa.UniqueConstraint('source', 'kind', 'livemode', 'report_date', 'version', name='uq_reconciliation_files_version')
    )
    op.create_table('reconciliation_bank_entries',
    sa.Column('file_id', sa.String(), nullable=False),
    sa.Column('entry_no', sa.Integer(), nullable=False),
    sa.Column('livemode', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('booking_date', sa.Date(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('batch_id', sa.String(length=100), nullable=True),
    sa.Column('bank_reference', sa.String(length=100), nullable=True),
    sa.Column('status', sa.String(length=16), server_default=sa.text("'staged'"), nullable=False),
    sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name=op.f('ck_reconciliation_bank_entries_currency')),
    sa.CheckConstraint("status IN ('staged', 'matched', 'mismatch', 'unmatched')", name=op.f('ck_reconciliation_bank_entries_status')),
    sa.ForeignKeyConstraint(['file_id'], ['reconciliation_files.id'], name='fk_reconciliation_bank_entries_file'),
    sa.PrimaryKeyConstraint('file_id', 'entry_no', name='pk_reconciliation_bank_entries')
    )
    op.create_index('ix_reconciliation_bank_entries_batch', 'reconciliation_bank_entries', ['livemode', 'batch_id'], unique=False)
    op.create_table('reconciliation_breaks',
    sa.Column('merchant_id', sa.String(), nullable=False),
    sa.Column('livemode', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('id', sa.String(), nullable=False),
    sa.Column('type', sa.String(length=30), nullable=False),
    sa.Column('psp', sa.String(length=64), nullable=False),
    sa.Column('dedupe_key', sa.String(length=300), nullable=False),
    sa.Column('status', sa.String(length=10), server_default=sa.text("'open'"), nullable=False),
    sa.Column('report_date', sa.Date(), nullable=False),
    sa.Column('reference', sa.String(length=255), nullable=True),
    sa.Column('batch_id', sa.String(length=100), nullable=True),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('kassa_amount', sa.BigInteger(), nullable=True),
    sa.Column('psp_amount', sa.BigInteger(), nullable=True),
    sa.Column('object_type', sa.String(length=20), nullable=True),
    sa.Column('object_id', sa.String(), nullable=True),
    sa.Column('lines', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'[]'::jsonb"), nullable=False),
    sa.Column('detail', sa.Text(), server_default=sa.text("''"), nullable=False),
    sa.Column('assigned_to', sa.String(length=320), nullable=True),
    sa.Column('opened_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('resolution', sa.String(length=20), nullable=True),
    sa.Column('resolution_note', sa.Text(), nullable=True),
    sa.Column('resolved_by', sa.String(length=320), nullable=True),
    sa.Column('resolution_transaction_id', sa.String(), nullable=True),
    sa.CheckConstraint("(status = 'resolved') = (resolution IS NOT NULL)", name=op.f('ck_reconciliation_breaks_resolved_has_resolution')),
    sa.CheckConstraint("resolution IN ('matched_by_hand', 'accepted', 'psp_asked', 'written_off')", name=op.f('ck_reconciliation_breaks_resolution')),
    sa.CheckConstraint("status IN ('open', 'closed', 'resolved')", name=op.f('ck_reconciliation_breaks_status')),
    sa.CheckConstraint("type IN ('missing_in_kassa', 'missing_at_psp', 'amount_mismatch', 'currency_mismatch', 'duplicate', 'fee_mismatch', 'deposit_mismatch', 'deposit_without_batch', 'dispute_notice_missed')", name=op.f('ck_reconciliation_breaks_type')),
    sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'], name=op.f('fk_reconciliation_breaks_merchant_id_merchants')),
    sa.PrimaryKeyConstraint('merchant_id', 'id', name='pk_reconciliation_breaks'),
    sa.UniqueConstraint('merchant_id', 'livemode', 'dedupe_key', name='uq_reconciliation_breaks_dedupe')
    )
    op.create_index('ix_reconciliation_breaks_open', 'reconciliation_breaks', ['opened_at'], unique=False, postgresql_where=sa.text("status = 'open'"))
    op.create_index('ix_reconciliation_breaks_scope_status', 'reconciliation_breaks', ['merchant_id', 'livemode', 'status', 'opened_at'], unique=False)
    op.create_table('reconciliation_lines',
    sa.Column('file_id', sa.String(), nullable=False),
    sa.Column('line_no', sa.Integer(), nullable=False),
    sa.Column('psp', sa.String(length=64), nullable=False),
    sa.Column('livemode', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('report_date', sa.Date(), nullable=False),
    sa.Column('batch_id', sa.String(length=100), nullable=False),
    sa.Column('reference', sa.String(length=255), nullable=False),
    sa.Column('type', sa.String(length=20), nullable=False),
    sa.Column('gross', sa.BigInteger(), nullable=False),
    sa.Column('fee', sa.BigInteger(), nullable=False),
    sa.Column('net', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('status', sa.String(length=16), server_default=sa.text("'staged'"), nullable=False),
    sa.Column('merchant_id', sa.String(), nullable=True),
    sa.Column('object_type', sa.String(length=20), nullable=True),
    sa.Column('object_id', sa.String(), nullable=True),
    sa.Column('expected_amount', sa.BigInteger(), nullable=True),
    sa.Column('expected_currency', sa.String(length=3), nullable=True),
    sa.Column('transaction_id', sa.String(), nullable=True),
    sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name=op.f('ck_reconciliation_lines_currency')),
    sa.CheckConstraint("status IN ('staged', 'matched', 'mismatch', 'unmatched', 'duplicate', 'unchanged', 'refused', 'superseded')", name=op.f('ck_reconciliation_lines_status')),
    sa.CheckConstraint("type IN ('charge', 'refund', 'refund_failure', 'dispute', 'fee', 'payout')", name=op.f('ck_reconciliation_lines_type')),
    sa.ForeignKeyConstraint(['file_id'], ['reconciliation_files.id'], name='fk_reconciliation_lines_file'),
    sa.PrimaryKeyConstraint('file_id', 'line_no', name='pk_reconciliation_lines'),
    # Half of each page free: the line's update with its posting's id stays on its page (app/reconciliation/models.py).
    postgresql_with={'fillfactor': 50}
    )
    op.create_index('ix_reconciliation_lines_batch', 'reconciliation_lines', ['psp', 'livemode', 'batch_id'], unique=False)
    op.create_index('ix_reconciliation_lines_book', 'reconciliation_lines', ['merchant_id', 'livemode', 'report_date'], unique=False)
    op.create_index('ix_reconciliation_lines_reference', 'reconciliation_lines', ['psp', 'livemode', 'reference', 'type'], unique=False)
    op.create_table('reconciliation_matches',
    sa.Column('merchant_id', sa.String(), nullable=False),
    sa.Column('livemode', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('id', sa.String(), nullable=False),
    sa.Column('file_id', sa.String(), nullable=False),
    sa.Column('line_no', sa.Integer(), nullable=False),
    sa.Column('object_type', sa.String(length=20), nullable=False),
    sa.Column('object_id', sa.String(), nullable=False),
    sa.Column('transaction_id', sa.String(), nullable=True),
    sa.Column('matched_by', sa.String(length=10), server_default=sa.text("'auto'"), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("matched_by IN ('auto', 'operator')", name=op.f('ck_reconciliation_matches_matched_by')),
    sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'], name=op.f('fk_reconciliation_matches_merchant_id_merchants')),
    sa.PrimaryKeyConstraint('merchant_id', 'id', name='pk_reconciliation_matches')
    )
    op.create_index('ix_reconciliation_matches_line', 'reconciliation_matches', ['merchant_id', 'file_id', 'line_no'], unique=False)
    op.create_index('ix_reconciliation_matches_scope_object', 'reconciliation_matches', ['merchant_id', 'livemode', 'object_id'], unique=False)
    # Files are facts as received: inserted and read; only the computed summary columns change.
    op.execute("GRANT SELECT, INSERT ON reconciliation_files TO kassa_app")
    op.execute("GRANT UPDATE (line_count, differences) ON reconciliation_files TO kassa_app")
    op.execute("GRANT SELECT, INSERT, UPDATE ON reconciliation_lines, reconciliation_bank_entries, "
               "reconciliation_matches, reconciliation_breaks TO kassa_app")


def downgrade():
    # The platform book's merchants row stays: its ledger rows (immutable) may refer to it.
    op.drop_index('ix_reconciliation_matches_scope_object', table_name='reconciliation_matches')
    op.drop_index('ix_reconciliation_matches_line', table_name='reconciliation_matches')
    op.drop_table('reconciliation_matches')
    op.drop_index('ix_reconciliation_lines_reference', table_name='reconciliation_lines')
    op.drop_index('ix_reconciliation_lines_book', table_name='reconciliation_lines')
    op.drop_index('ix_reconciliation_lines_batch', table_name='reconciliation_lines')
    op.drop_table('reconciliation_lines')
    op.drop_index('ix_reconciliation_breaks_scope_status', table_name='reconciliation_breaks')
    op.drop_index('ix_reconciliation_breaks_open', table_name='reconciliation_breaks', postgresql_where=sa.text("status = 'open'"))
    op.drop_table('reconciliation_breaks')
    op.drop_index('ix_reconciliation_bank_entries_batch', table_name='reconciliation_bank_entries')
    op.drop_table('reconciliation_bank_entries')
    op.drop_table('reconciliation_files')
