"""Migration 0015 on a ledger that 0005 wrote: what old transactions get, and the way back.

A module of its own: it moves its database down and up again.
"""
import flask_migrate
from alembic.script import ScriptDirectory
from flask import current_app

from app.ids import new_id
from app.ledger import chain
from app.ledger.integration import run_verify
from tests.conftest import app_connect
from tests.ledger.conftest import capture_legs, post
from tests.ledger.test_tamper import tamper

REVISION = "0015_ledger_account_rules"
# 0005's ledger_post, as Kassa called it before 0015 (kinds and overdraft flags from the caller).
OLD_POST = (
    "SELECT outcome FROM ledger_post(%(merchant_id)s, false, %(transaction_id)s, %(business_key)s, 'capture', '', "
    "NULL, %(entry_ids)s, %(codes)s, %(directions)s, %(amounts)s, %(currencies)s, %(account_ids)s, "
    "%(account_types)s, %(subjects)s, %(kinds)s, %(allow_negative)s, %(mac_inner)s, %(mac_outer)s)"
)


def post_as_before_0015(database, book, business_key: str, hmac_key: bytes) -> str:
    legs = capture_legs()
    inner, outer = chain.key_pads(hmac_key)
    transaction_id = new_id("ltxn")
    with app_connect(database) as conn:
        row = conn.execute(OLD_POST, {
            "merchant_id": book.merchant_id, "transaction_id": transaction_id, "business_key": business_key,
            "entry_ids": [new_id("lent") for _ in legs], "codes": [leg.account_code for leg in legs],
            "directions": [leg.direction for leg in legs], "amounts": [leg.amount for leg in legs],
            "currencies": [leg.currency for leg in legs], "account_ids": [new_id("lacc") for _ in legs],
            "account_types": [leg.account_code.split(":")[0] for leg in legs],
            "subjects": [leg.account_code.split(":")[1] if leg.account_code.count(":") == 2 else None for leg in legs],
            "kinds": ["asset", "liability", "liability", "revenue"], "allow_negative": [True, True, True, False],
            "mac_inner": inner, "mac_outer": outer}).fetchone()
        conn.commit()
    assert row == ("posted",)
    return transaction_id


def test_transactions_posted_before_0015_verify_unsealed_and_keep_their_business_key(
        app, database, db_session, book, hmac_key):
    down = ScriptDirectory.from_config(current_app.extensions["migrate"].migrate.get_config()) \
        .get_revision(REVISION).down_revision
    db_session.remove()
    flask_migrate.downgrade(revision=down)
    old_txn = post_as_before_0015(database, book, "capture:old", hmac_key)
    flask_migrate.upgrade(revision="heads")

    post(db_session, book, "capture:new", capture_legs(), hmac_key, kind="capture")  # on the same accounts
    report = run_verify(db_session, hmac_key, book)
    assert report.ok, report.discrepancies
    assert (report.transactions, report.unsealed_transactions) == (2, 1)
    result = app.test_cli_runner().invoke(args=["ledger", "verify", "--merchant", book.merchant_id])
    assert result.exit_code == 0 and "unsealed (posted before migration 0015): 1 transactions" in result.output

    # Their entries' old message still covers the business key (not the kind, description or reference).
    tamper(database, "UPDATE ledger_transactions SET business_key = 'capture:other' WHERE id = %s",
           params=(old_txn,))
    report = run_verify(db_session, hmac_key, book)
    assert {(d.problem, d.transaction_id) for d in report.discrepancies} == {("hmac_mismatch", old_txn)}
