"""Ledger: account types and their overdraft rule in the database; every journal transaction sealed by an HMAC.

1. ``ledger_account_types`` holds each account type's kind and whether its accounts may go negative,
   seeded with every type ARCHITECTURE.md names, those later issues open included (psp_clearing,
   payouts_in_transit, suspense). ``ledger_accounts`` refers to it with a composite foreign key on
   (account_type, kind, allow_negative): an account's kind and overdraft flag can only be its type's, so
   no writer, the application role included, opens a ``cash`` account that may go negative. The
   application role may only read the table; rows are only ever added (triggers, as on the ledger's
   other tables): changing a type's rule is a migration that says why.
2. ``ledger_transactions.hmac``: the transaction's seal, an HMAC over all its columns (app/ledger/chain.py),
   and each new entry's HMAC covers its transaction's seal, so ``flask ledger verify`` catches a change to
   a transaction's kind, description, reference, business key or time. The key never reaches the
   database, so this migration cannot seal the transactions already posted: they keep a NULL seal and
   their entries keep the old message (which covers the business key, not the kind, description or
   reference); verify counts them as unsealed.
3. ``ledger_post`` computes the seal and the new entry HMACs, and takes kind and overdraft rule from
   ``ledger_account_types`` instead of from its caller (it loses its p_kinds and p_allow_negative
   arguments).

Revision ID: 0015_ledger_account_rules
Revises: 0014_token_binding
Create Date: 2026-11-24
"""
import importlib.util
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision = "0015_ledger_account_rules"
down_revision = "0014_token_binding"
branch_labels = None
depends_on = None

# (name, kind, allow_negative, subject): the reasons per type are in app/ledger/accounts.py.
ACCOUNT_TYPES = [
    ("psp_receivable", "asset", True, "connector"),
    ("seller_payable", "liability", True, "seller"),
    ("psp_fees", "expense", True, None),
    ("merchant_revenue", "revenue", False, None),
    ("dispute_fees", "expense", False, None),
    ("cash", "asset", False, None),
    ("psp_clearing", "asset", True, "connector"),
    ("payouts_in_transit", "liability", False, None),
    ("suspense", "liability", True, "connector"),
]

OLD_POST_SIGNATURE = (
    "ledger_post(text, boolean, text, text, text, text, text, text[], text[], text[], bigint[], text[], "
    "text[], text[], text[], text[], boolean[], bytea, bytea, boolean)"
)
POST_SIGNATURE = (
    "ledger_post(text, boolean, text, text, text, text, text, text[], text[], text[], bigint[], text[], "
    "text[], text[], text[], bytea, bytea, boolean)"
)

# As in 0005_ledger (whose comment explains steps 1-4, the subtransaction and strict mode), except:
# the transaction's seal is computed before the claim and inserted with it (transactions are never
# updated); the entries' message carries the seal instead of the business key; accounts are opened
# with their type's kind and overdraft flag, read from ledger_account_types; the posted_at returned is
# the transaction's (0005 returned its entries' time, a few microseconds later).
POST_FUNCTION = """
CREATE FUNCTION ledger_post(
    p_merchant_id text, p_livemode boolean, p_transaction_id text, p_business_key text, p_kind text,
    p_description text, p_reference text,
    p_entry_ids text[], p_codes text[], p_directions text[], p_amounts bigint[], p_currencies text[],
    p_account_ids text[], p_account_types text[], p_subjects text[],
    p_mac_inner bytea, p_mac_outer bytea, p_strict boolean DEFAULT false
) RETURNS TABLE (outcome text, transaction_id text, posted_at timestamptz, account_code text, balance_after bigint)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    v_legs int := cardinality(p_codes);
    v_mode text := CASE WHEN p_livemode THEN 'live' ELSE 'test' END;
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
    v_claimed timestamptz;
    v_seal bytea;
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
       OR cardinality(p_subjects) <> v_legs THEN
        RAISE EXCEPTION 'ledger_post: needs at least two legs and one array element per leg in every leg array'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- The transaction's seal (app/ledger/chain.py: "|<UTF-8 length>:<value>" per field, "|-" for NULL).
    v_claimed := clock_timestamp();
    v_message := 'kassa-ledger-transaction-v1';
    FOREACH v_field IN ARRAY ARRAY[p_transaction_id, p_merchant_id, v_mode, p_business_key, p_kind, p_description,
                                   p_reference, ((extract(epoch FROM v_claimed) * 1000000)::bigint)::text] LOOP
        v_message := v_message || CASE WHEN v_field IS NULL THEN '|-'
                                       ELSE '|' || octet_length(convert_to(v_field, 'UTF8')) || ':' || v_field END;
    END LOOP;
    -- HMAC-SHA256 from the key's pads (RFC 2104): the database has sha256() but no hmac().
    v_seal := sha256(p_mac_outer || sha256(p_mac_inner || convert_to(v_message, 'UTF8')));

    BEGIN
        -- 1. Claim the business key.
        INSERT INTO ledger_transactions AS t
               (id, merchant_id, livemode, business_key, kind, description, reference, posted_at, hmac)
        VALUES (p_transaction_id, p_merchant_id, p_livemode, p_business_key, p_kind, p_description,
                p_reference, v_claimed, v_seal)
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

        -- 2. Open the accounts used for the first time, with their type's kind and overdraft rule.
        INSERT INTO ledger_accounts
               (id, merchant_id, livemode, code, account_type, subject, kind, normal_balance, currency, allow_negative)
        SELECT DISTINCT ON (l.code) l.id, p_merchant_id, p_livemode, l.code, l.account_type, l.subject, t.kind,
               CASE WHEN t.kind IN ('asset', 'expense') THEN 'debit' ELSE 'credit' END, l.currency, t.allow_negative
          FROM unnest(p_codes, p_account_ids, p_account_types, p_subjects, p_currencies)
               AS l(code, id, account_type, subject, currency)
          JOIN ledger_account_types t ON t.name = l.account_type
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
            -- An account type missing from ledger_account_types opens no account.
            RAISE EXCEPTION 'ledger_post: could not open or lock every account of % (unknown type?)', p_codes;
        END IF;

        -- 4. Balances and versions leg by leg (an account may appear in several legs), then the checks.
        -- The entry's message: the transaction's part once (with its seal), then each entry's fields. Built
        -- here in PL/pgSQL: a SQL helper function per field would not be inlined and would cost an executor
        -- start per field.
        v_posted := clock_timestamp();
        v_prefix := 'kassa-ledger-v2';
        FOREACH v_field IN ARRAY ARRAY[p_transaction_id, encode(v_seal, 'hex'), p_merchant_id, v_mode,
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
    RETURN QUERY SELECT 'posted'::text, p_transaction_id, v_claimed, NULL::text, NULL::bigint;
END;
$$;
"""


def _grant_post(signature: str) -> None:
    op.execute(f"REVOKE ALL ON FUNCTION {signature} FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION {signature} TO kassa_app")


def upgrade():
    types = op.create_table(
        "ledger_account_types",
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("allow_negative", sa.Boolean(), nullable=False),
        sa.Column("subject", sa.String(length=20), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_ledger_account_types")),
        # Target of the accounts' foreign key: (type, kind, overdraft flag) as one rule.
        sa.UniqueConstraint("name", "kind", "allow_negative", name="uq_ledger_account_types_rule"),
        sa.CheckConstraint("kind IN ('asset', 'liability', 'equity', 'revenue', 'expense')",
                           name=op.f("ck_ledger_account_types_kind")),
        sa.CheckConstraint("subject IN ('connector', 'seller')", name=op.f("ck_ledger_account_types_subject")),
    )
    op.bulk_insert(types, [dict(zip(("name", "kind", "allow_negative", "subject"), row)) for row in ACCOUNT_TYPES])
    op.execute("""
        CREATE TRIGGER ledger_account_types_no_update_delete BEFORE UPDATE OR DELETE ON ledger_account_types
        FOR EACH ROW EXECUTE FUNCTION kassa_reject_change();
        CREATE TRIGGER ledger_account_types_no_truncate BEFORE TRUNCATE ON ledger_account_types
        FOR EACH STATEMENT EXECUTE FUNCTION kassa_reject_change();
    """)
    op.execute("GRANT SELECT ON ledger_account_types TO kassa_app")
    # Fails on an account whose kind or flag is not its type's: such a row would need a person's look.
    op.create_foreign_key("fk_ledger_accounts_type_rule", "ledger_accounts", "ledger_account_types",
                          ["account_type", "kind", "allow_negative"], ["name", "kind", "allow_negative"])

    op.add_column("ledger_transactions", sa.Column("hmac", sa.LargeBinary(), nullable=True))
    op.create_check_constraint(op.f("ck_ledger_transactions_hmac_length"), "ledger_transactions",
                               "hmac IS NULL OR octet_length(hmac) = 32")

    op.execute(f"DROP FUNCTION {OLD_POST_SIGNATURE}")
    op.execute(POST_FUNCTION)
    _grant_post(POST_SIGNATURE)


def downgrade():
    # Entries posted since the upgrade carry the new message and verify will report them after this.
    op.execute(f"DROP FUNCTION {POST_SIGNATURE}")
    op.execute(_ledger_0005().POST_FUNCTION)
    _grant_post(OLD_POST_SIGNATURE)
    op.drop_constraint(op.f("ck_ledger_transactions_hmac_length"), "ledger_transactions", type_="check")
    op.drop_column("ledger_transactions", "hmac")
    op.drop_constraint("fk_ledger_accounts_type_rule", "ledger_accounts", type_="foreignkey")
    op.drop_table("ledger_account_types")


def _ledger_0005():
    """migrations/versions/0005_ledger.py as a module, for the posting function it created (not a package)."""
    spec = importlib.util.spec_from_file_location("ledger_0005", Path(__file__).with_name("0005_ledger.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
