"""Ledger: accounts, journal transactions, entries; the rules the database enforces; the posting function.

The database itself refuses, whoever writes (the application role cannot disable triggers; only a
superuser or the owner can, and tests show that `flask ledger verify` then catches the tampering):

1. a journal transaction that does not balance per currency, or has no debit or no credit
   (deferred constraint triggers, checked at COMMIT);
2. an entry whose currency is not its account's (trigger), or whose book is not its account's or its
   transaction's (composite foreign keys);
3. UPDATE, DELETE or TRUNCATE of entries and transactions (kassa_reject_change() from 0001_base); on
   accounts, any change but balance, version and chain head (last_hmac), version going down, DELETE and
   TRUNCATE;
4. a negative balance on an account that forbids it (CHECK);
5. a second transaction with the same business key in a book (UNIQUE).

`ledger_post(...)` does a whole posting in one round trip (app/ledger/service.py explains why).

The application role gets SELECT and INSERT on the three tables and UPDATE of (balance, version,
last_hmac) on accounts only.

Revision ID: 0005_ledger
Revises: 0002_audit_log
Create Date: 2026-11-20
"""
import sqlalchemy as sa
from alembic import op

revision = "0005_ledger"
down_revision = "0002_audit_log"
branch_labels = None
depends_on = None


ENTRY_ACCOUNT_CHECK = """
CREATE FUNCTION ledger_entry_check_currency() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_currency text;
BEGIN
    SELECT a.currency INTO v_currency FROM ledger_accounts a WHERE a.id = NEW.account_id;
    -- A missing account is left to the foreign key, which names it.
    IF FOUND AND v_currency <> NEW.currency THEN
        RAISE EXCEPTION 'ledger entry % is in %, but its account % is in %',
            NEW.id, NEW.currency, NEW.account_id, v_currency
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER ledger_entries_currency BEFORE INSERT ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_entry_check_currency();
"""

# Deferred to COMMIT: the entries of a transaction arrive one INSERT (or row) at a time, and only the whole
# set has to balance. Runs once per entry row; each run checks its whole transaction (a few index reads).
BALANCED_CHECK = """
CREATE FUNCTION ledger_check_transaction_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_unbalanced record;
BEGIN
    SELECT e.currency,
           coalesce(sum(e.amount) FILTER (WHERE e.direction = 'debit'), 0) AS debits,
           coalesce(sum(e.amount) FILTER (WHERE e.direction = 'credit'), 0) AS credits
      INTO v_unbalanced
      FROM ledger_entries e
     WHERE e.transaction_id = NEW.transaction_id
     GROUP BY e.currency
    HAVING coalesce(sum(e.amount) FILTER (WHERE e.direction = 'debit'), 0)
        <> coalesce(sum(e.amount) FILTER (WHERE e.direction = 'credit'), 0)
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger transaction % does not balance in %: debits % <> credits %',
            NEW.transaction_id, v_unbalanced.currency, v_unbalanced.debits, v_unbalanced.credits
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END;
$$;
CREATE CONSTRAINT TRIGGER ledger_entries_balanced AFTER INSERT ON ledger_entries
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_check_transaction_balanced();

CREATE FUNCTION ledger_check_transaction_has_entries() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM ledger_entries e WHERE e.transaction_id = NEW.id AND e.direction = 'debit')
       OR NOT EXISTS (SELECT 1 FROM ledger_entries e WHERE e.transaction_id = NEW.id AND e.direction = 'credit')
    THEN
        RAISE EXCEPTION 'ledger transaction % (%) needs at least one debit and one credit entry',
            NEW.id, NEW.business_key
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END;
$$;
CREATE CONSTRAINT TRIGGER ledger_transactions_have_entries AFTER INSERT ON ledger_transactions
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_check_transaction_has_entries();
"""

# The WHEN clause is evaluated without calling PL/pgSQL, so the balance updates of every posting pay
# nothing for this guard.
ACCOUNT_GUARD = """
CREATE FUNCTION ledger_reject_account_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger account %: only balance, version and last_hmac may change, and version only upward',
        OLD.code
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER ledger_accounts_guard BEFORE UPDATE ON ledger_accounts FOR EACH ROW
    WHEN (NEW.id <> OLD.id OR NEW.merchant_id <> OLD.merchant_id OR NEW.livemode <> OLD.livemode
          OR NEW.code <> OLD.code OR NEW.account_type <> OLD.account_type
          OR NEW.subject IS DISTINCT FROM OLD.subject OR NEW.kind <> OLD.kind
          OR NEW.normal_balance <> OLD.normal_balance OR NEW.currency <> OLD.currency
          OR NEW.allow_negative <> OLD.allow_negative OR NEW.created_at <> OLD.created_at
          OR NEW.version < OLD.version)
    EXECUTE FUNCTION ledger_reject_account_change();
CREATE TRIGGER ledger_accounts_no_delete BEFORE DELETE ON ledger_accounts
    FOR EACH ROW EXECUTE FUNCTION kassa_reject_change();
CREATE TRIGGER ledger_accounts_no_truncate BEFORE TRUNCATE ON ledger_accounts
    FOR EACH STATEMENT EXECUTE FUNCTION kassa_reject_change();
"""

POST_SIGNATURE = (
    "ledger_post(text, boolean, text, text, text, text, text, text[], text[], text[], bigint[], text[], "
    "text[], text[], text[], text[], boolean[], bytea, bytea, boolean)"
)

# The whole posting in one round trip (see app/ledger/service.py for the argument order and for why):
#   1. claim the business key (INSERT ... ON CONFLICT DO NOTHING): a concurrent post of the same key
#      waits here, before it holds any account lock, and then finds the committed transaction, which it
#      returns when its kind and legs are the same ('replayed') and refuses otherwise ('conflict');
#   2. open missing accounts, in code order (two postings opening the same new accounts wait for each
#      other in the same order, never in a cycle);
#   3. lock the accounts FOR UPDATE in id order (every posting locks in the same order: no deadlock);
#   4. compute balances, versions and the chained HMACs, refuse an overdraft ('insufficient_balance'),
#      update the accounts and insert the entries.
# Steps 1-4 run in a block with an exception handler (a subtransaction): an overdraft undoes the claim
# and releases the locks, and the caller gets a result row instead of an aborted transaction.
# With p_strict, refusals raise instead (SQLSTATE KL001 overdraft, KL002 conflict; DETAIL and HINT carry
# the account code / balance or the existing transaction's id), aborting the caller's transaction: the
# service sends COMMIT in the same network flight in that mode, and a refused posting must then never
# commit the caller's other work.
# READ COMMITTED is required: each statement must see rows committed while it waited for a lock.
POST_FUNCTION = """
CREATE FUNCTION ledger_post(
    p_merchant_id text, p_livemode boolean, p_transaction_id text, p_business_key text, p_kind text,
    p_description text, p_reference text,
    p_entry_ids text[], p_codes text[], p_directions text[], p_amounts bigint[], p_currencies text[],
    p_account_ids text[], p_account_types text[], p_subjects text[], p_kinds text[], p_allow_negative boolean[],
    p_mac_inner bytea, p_mac_outer bytea, p_strict boolean DEFAULT false
) RETURNS TABLE (outcome text, transaction_id text, posted_at timestamptz, account_code text, balance_after bigint)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    v_legs int := cardinality(p_codes);
    v_ids text[];
    v_codes text[];
    v_balance bigint[];
    v_version bigint[];
    v_normal text[];
    v_allow_negative boolean[];
    v_head bytea[];
    v_entry_account text[] := '{}';
    v_entry_balance bigint[] := '{}';
    v_entry_version bigint[] := '{}';
    v_entry_mac bytea[] := '{}';
    v_existing text;
    v_existing_kind text;
    v_same boolean;
    v_posted timestamptz;
    v_prefix text;
    v_message text;
    v_field text;
    v_mac bytea;
    v_fail_code text;
    v_fail_balance bigint;
    i int;
    j int;
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'ledger_post needs READ COMMITTED isolation, not %', current_setting('transaction_isolation')
            USING ERRCODE = 'feature_not_supported';
    END IF;
    IF v_legs IS NULL OR v_legs < 2
       OR cardinality(p_entry_ids) <> v_legs OR cardinality(p_directions) <> v_legs
       OR cardinality(p_amounts) <> v_legs OR cardinality(p_currencies) <> v_legs
       OR cardinality(p_account_ids) <> v_legs OR cardinality(p_account_types) <> v_legs
       OR cardinality(p_subjects) <> v_legs OR cardinality(p_kinds) <> v_legs
       OR cardinality(p_allow_negative) <> v_legs THEN
        RAISE EXCEPTION 'ledger_post: needs at least two legs and one array element per leg in every leg array'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    BEGIN
        -- 1. Claim the business key.
        INSERT INTO ledger_transactions AS t
               (id, merchant_id, livemode, business_key, kind, description, reference, posted_at)
        VALUES (p_transaction_id, p_merchant_id, p_livemode, p_business_key, p_kind, p_description,
                p_reference, clock_timestamp())
        ON CONFLICT (merchant_id, livemode, business_key) DO NOTHING;
        IF NOT FOUND THEN
            -- A new statement, so a new snapshot: it sees the transaction whose commit we waited for.
            SELECT t.id, t.kind INTO v_existing, v_existing_kind FROM ledger_transactions t
             WHERE t.merchant_id = p_merchant_id AND t.livemode = p_livemode AND t.business_key = p_business_key;
            -- Same kind and the same legs in any order (as multisets of code, direction, amount, currency).
            v_same := v_existing_kind = p_kind AND
                (SELECT array_agg(concat_ws('|', a.code, e.direction, e.amount, e.currency)
                                  ORDER BY concat_ws('|', a.code, e.direction, e.amount, e.currency))
                   FROM ledger_entries e JOIN ledger_accounts a ON a.id = e.account_id
                  WHERE e.transaction_id = v_existing)
                = (SELECT array_agg(concat_ws('|', l.code, l.direction, l.amount, l.currency)
                                    ORDER BY concat_ws('|', l.code, l.direction, l.amount, l.currency))
                     FROM unnest(p_codes, p_directions, p_amounts, p_currencies)
                          AS l(code, direction, amount, currency));
            IF v_same IS NOT TRUE AND p_strict THEN
                RAISE EXCEPTION 'business key % was already posted with other legs', p_business_key
                    USING ERRCODE = 'KL002', DETAIL = v_existing;
            END IF;
            RETURN QUERY SELECT CASE WHEN v_same IS TRUE THEN 'replayed' ELSE 'conflict' END, v_existing,
                                NULL::timestamptz, NULL::text, NULL::bigint;
            RETURN;
        END IF;

        -- 2. Open the accounts used for the first time.
        INSERT INTO ledger_accounts
               (id, merchant_id, livemode, code, account_type, subject, kind, normal_balance, currency, allow_negative)
        SELECT DISTINCT ON (l.code) l.id, p_merchant_id, p_livemode, l.code, l.account_type, l.subject, l.kind,
               CASE WHEN l.kind IN ('asset', 'expense') THEN 'debit' ELSE 'credit' END, l.currency, l.allow_negative
          FROM unnest(p_codes, p_account_ids, p_account_types, p_subjects, p_kinds, p_currencies, p_allow_negative)
               AS l(code, id, account_type, subject, kind, currency, allow_negative)
         WHERE NOT EXISTS (SELECT 1 FROM ledger_accounts a
                            WHERE a.merchant_id = p_merchant_id AND a.livemode = p_livemode AND a.code = l.code)
         ORDER BY l.code
        ON CONFLICT (merchant_id, livemode, code) DO NOTHING;

        -- 3. Lock them in id order. FOR UPDATE under READ COMMITTED returns each row as last committed,
        -- with its chain head (the hmac of its last entry, NULL before the first).
        SELECT array_agg(a.id ORDER BY a.id), array_agg(a.code ORDER BY a.id),
               array_agg(a.balance ORDER BY a.id), array_agg(a.version ORDER BY a.id),
               array_agg(a.normal_balance ORDER BY a.id), array_agg(a.allow_negative ORDER BY a.id),
               array_agg(a.last_hmac ORDER BY a.id)
          INTO v_ids, v_codes, v_balance, v_version, v_normal, v_allow_negative, v_head
          FROM (SELECT x.id, x.code, x.balance, x.version, x.normal_balance, x.allow_negative, x.last_hmac
                  FROM ledger_accounts x
                 WHERE x.merchant_id = p_merchant_id AND x.livemode = p_livemode AND x.code = ANY (p_codes)
                 ORDER BY x.id
                   FOR UPDATE) a;
        IF cardinality(v_ids) IS DISTINCT FROM (SELECT count(DISTINCT c) FROM unnest(p_codes) AS c) THEN
            RAISE EXCEPTION 'ledger_post: could not open or lock every account of %', p_codes;
        END IF;

        -- 4. Balances and versions leg by leg (an account may appear in several legs), then the checks.
        -- The MAC message (app/ledger/chain.py): "kassa-ledger-v1" then "|<UTF-8 length>:<value>" per field,
        -- the transaction's fields once, then each entry's. Built here in PL/pgSQL: a SQL helper function
        -- per field would not be inlined and would cost an executor start per field.
        v_posted := clock_timestamp();
        v_prefix := 'kassa-ledger-v1';
        FOREACH v_field IN ARRAY ARRAY[p_transaction_id, p_business_key, p_merchant_id,
                                       CASE WHEN p_livemode THEN 'live' ELSE 'test' END,
                                       ((extract(epoch FROM v_posted) * 1000000)::bigint)::text] LOOP
            v_prefix := v_prefix || '|' || octet_length(convert_to(v_field, 'UTF8')) || ':' || v_field;
        END LOOP;
        FOR i IN 1 .. v_legs LOOP
            j := array_position(v_codes, p_codes[i]);
            IF p_directions[i] = v_normal[j] THEN
                v_balance[j] := v_balance[j] + p_amounts[i];
            ELSE
                v_balance[j] := v_balance[j] - p_amounts[i];
            END IF;
            v_version[j] := v_version[j] + 1;
            v_message := v_prefix;
            FOREACH v_field IN ARRAY ARRAY[p_entry_ids[i], v_ids[j], p_directions[i], p_amounts[i]::text,
                                           p_currencies[i], v_balance[j]::text, v_version[j]::text,
                                           coalesce(encode(v_head[j], 'hex'), '')] LOOP
                v_message := v_message || '|' || octet_length(convert_to(v_field, 'UTF8')) || ':' || v_field;
            END LOOP;
            -- HMAC-SHA256 from the key's pads (RFC 2104): the database has sha256() but no hmac().
            v_mac := sha256(p_mac_outer || sha256(p_mac_inner || convert_to(v_message, 'UTF8')));
            v_head[j] := v_mac;
            v_entry_account[i] := v_ids[j];
            v_entry_balance[i] := v_balance[j];
            v_entry_version[i] := v_version[j];
            v_entry_mac[i] := v_mac;
        END LOOP;
        FOR j IN 1 .. cardinality(v_ids) LOOP
            IF v_balance[j] < 0 AND NOT v_allow_negative[j] THEN
                v_fail_code := v_codes[j];
                v_fail_balance := v_balance[j];
                RAISE EXCEPTION 'insufficient balance' USING ERRCODE = 'KL001';
            END IF;
        END LOOP;

        UPDATE ledger_accounts x SET balance = u.balance, version = u.version, last_hmac = u.head
          FROM unnest(v_ids, v_balance, v_version, v_head) AS u(id, balance, version, head)
         WHERE x.id = u.id;
        INSERT INTO ledger_entries (id, transaction_id, account_id, merchant_id, livemode, direction, amount,
                                    currency, balance_after, version_after, posted_at, hmac)
        SELECT u.id, p_transaction_id, u.account_id, p_merchant_id, p_livemode, u.direction, u.amount,
               u.currency, u.balance_after, u.version_after, v_posted, u.hmac
          FROM unnest(p_entry_ids, v_entry_account, p_directions, p_amounts, p_currencies,
                      v_entry_balance, v_entry_version, v_entry_mac)
               AS u(id, account_id, direction, amount, currency, balance_after, version_after, hmac);
    EXCEPTION WHEN SQLSTATE 'KL001' THEN
        -- Everything since BEGIN is undone: the claim, the opened accounts, the locks.
        IF p_strict THEN
            RAISE EXCEPTION '% may not go negative: this posting would leave it at %', v_fail_code, v_fail_balance
                USING ERRCODE = 'KL001', DETAIL = v_fail_code, HINT = v_fail_balance::text;
        END IF;
        RETURN QUERY SELECT 'insufficient_balance'::text, NULL::text, NULL::timestamptz, v_fail_code, v_fail_balance;
        RETURN;
    END;
    RETURN QUERY SELECT 'posted'::text, p_transaction_id, v_posted, NULL::text, NULL::bigint;
END;
$$;
"""


def _append_only(table: str) -> None:
    op.execute(f"""
        CREATE TRIGGER {table}_no_update_delete BEFORE UPDATE OR DELETE ON {table}
        FOR EACH ROW EXECUTE FUNCTION kassa_reject_change();
        CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
        FOR EACH STATEMENT EXECUTE FUNCTION kassa_reject_change();
    """)


def upgrade():
    op.create_table(
        "ledger_accounts",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("merchant_id", sa.String(), nullable=False),
        sa.Column("livemode", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("code", sa.String(length=200), nullable=False),
        sa.Column("account_type", sa.String(length=40), nullable=False),
        sa.Column("subject", sa.String(length=100), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("normal_balance", sa.String(length=6), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("allow_negative", sa.Boolean(), nullable=False),
        sa.Column("balance", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("version", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("last_hmac", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["merchant_id"], ["merchants.id"],
                                name=op.f("fk_ledger_accounts_merchant_id_merchants")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_accounts")),
        sa.UniqueConstraint("merchant_id", "livemode", "code", name="uq_ledger_accounts_book_code"),
        sa.UniqueConstraint("id", "merchant_id", "livemode", name="uq_ledger_accounts_id_book"),
        sa.CheckConstraint("allow_negative OR balance >= 0", name=op.f("ck_ledger_accounts_balance_not_negative")),
        sa.CheckConstraint("kind IN ('asset', 'liability', 'equity', 'revenue', 'expense')",
                           name=op.f("ck_ledger_accounts_kind")),
        sa.CheckConstraint("normal_balance = CASE WHEN kind IN ('asset', 'expense') THEN 'debit' ELSE 'credit' END",
                           name=op.f("ck_ledger_accounts_normal_balance")),
        sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name=op.f("ck_ledger_accounts_currency")),
        sa.CheckConstraint("version >= 0", name=op.f("ck_ledger_accounts_version")),
        sa.CheckConstraint(
            "(version = 0) = (last_hmac IS NULL) AND (last_hmac IS NULL OR octet_length(last_hmac) = 32)",
            name=op.f("ck_ledger_accounts_chain_head")),
    )
    op.create_index("ix_ledger_accounts_book_type_subject", "ledger_accounts",
                    ["merchant_id", "livemode", "account_type", "subject"])

    op.create_table(
        "ledger_transactions",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("merchant_id", sa.String(), nullable=False),
        sa.Column("livemode", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("business_key", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("description", sa.String(length=500), server_default=sa.text("''"), nullable=False),
        sa.Column("reference", sa.String(length=200), nullable=True),
        sa.Column("posted_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["merchant_id"], ["merchants.id"],
                                name=op.f("fk_ledger_transactions_merchant_id_merchants")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_transactions")),
        sa.UniqueConstraint("merchant_id", "livemode", "business_key", name="uq_ledger_transactions_book_key"),
        sa.UniqueConstraint("id", "merchant_id", "livemode", name="uq_ledger_transactions_id_book"),
        sa.CheckConstraint("business_key <> ''", name=op.f("ck_ledger_transactions_business_key")),
    )

    op.create_table(
        "ledger_entries",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("transaction_id", sa.String(), nullable=False),
        sa.Column("account_id", sa.String(), nullable=False),
        sa.Column("merchant_id", sa.String(), nullable=False),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.Column("direction", sa.String(length=6), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("balance_after", sa.BigInteger(), nullable=False),
        sa.Column("version_after", sa.BigInteger(), nullable=False),
        sa.Column("posted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("hmac", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["transaction_id", "merchant_id", "livemode"],
            ["ledger_transactions.id", "ledger_transactions.merchant_id", "ledger_transactions.livemode"],
            name="fk_ledger_entries_transaction_book"),
        sa.ForeignKeyConstraint(
            ["account_id", "merchant_id", "livemode"],
            ["ledger_accounts.id", "ledger_accounts.merchant_id", "ledger_accounts.livemode"],
            name="fk_ledger_entries_account_book"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_entries")),
        sa.UniqueConstraint("account_id", "version_after", name="uq_ledger_entries_account_version"),
        sa.CheckConstraint("amount > 0", name=op.f("ck_ledger_entries_amount_positive")),
        sa.CheckConstraint("direction IN ('debit', 'credit')", name=op.f("ck_ledger_entries_direction")),
        sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name=op.f("ck_ledger_entries_currency")),
        sa.CheckConstraint("version_after >= 1", name=op.f("ck_ledger_entries_version_after")),
        sa.CheckConstraint("octet_length(hmac) = 32", name=op.f("ck_ledger_entries_hmac_length")),
    )
    op.create_index("ix_ledger_entries_transaction_id", "ledger_entries", ["transaction_id"])
    op.create_index("ix_ledger_entries_account_posted", "ledger_entries", ["account_id", "posted_at"])

    op.execute(ENTRY_ACCOUNT_CHECK)
    op.execute(BALANCED_CHECK)
    op.execute(ACCOUNT_GUARD)
    _append_only("ledger_transactions")
    _append_only("ledger_entries")
    op.execute(POST_FUNCTION)

    op.execute("GRANT SELECT, INSERT ON ledger_accounts TO kassa_app")
    op.execute("GRANT UPDATE (balance, version, last_hmac) ON ledger_accounts TO kassa_app")
    op.execute("GRANT SELECT, INSERT ON ledger_transactions, ledger_entries TO kassa_app")
    op.execute(f"REVOKE ALL ON FUNCTION {POST_SIGNATURE} FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION {POST_SIGNATURE} TO kassa_app")


def downgrade():
    op.execute(f"DROP FUNCTION {POST_SIGNATURE}")
    op.drop_table("ledger_entries")
    op.drop_table("ledger_transactions")
    op.drop_table("ledger_accounts")
    for function in ("ledger_entry_check_currency", "ledger_check_transaction_balanced",
                     "ledger_check_transaction_has_entries", "ledger_reject_account_change"):
        op.execute(f"DROP FUNCTION {function}()")
