"""``flask ledger verify`` and ``flask ledger trial-balance`` on a clean ledger."""
from app.ledger.integration import LAST_VERIFY_KEY, last_verify
from tests.ledger.conftest import capture_legs, cr, dr, post


def test_verify_on_an_empty_ledger(app):
    result = app.test_cli_runner().invoke(args=["ledger", "verify"])
    assert result.exit_code == 0, result.output
    assert "checked 0 accounts, 0 entries, 0 transactions (platform)" in result.output


def test_verify_passes_and_remembers_the_result(app, db_session, book, hmac_key, redis):
    post(db_session, book, "capture:1", capture_legs(), hmac_key)
    post(db_session, book, "settle:1", [dr("cash:USD", 9710), dr("psp_fees:USD", 290),
                                        cr("psp_receivable:sandbox:USD", 10000)], hmac_key)
    redis.delete(LAST_VERIFY_KEY)
    result = app.test_cli_runner().invoke(args=["ledger", "verify"])
    assert result.exit_code == 0, result.output
    assert "ledger OK" in result.output
    stored = last_verify(redis)
    assert stored["ok"] is True and stored["entries"] >= 7 and stored["scope"] == "platform"
    # A book-only verify does not replace the platform-wide result shown to admins.
    scoped = app.test_cli_runner().invoke(args=["ledger", "verify", "--merchant", book.merchant_id])
    assert scoped.exit_code == 0 and f"({book.merchant_id}/test)" in scoped.output
    assert last_verify(redis)["scope"] == "platform"


def test_trial_balance_prints_per_mode_and_currency(app, db_session, book, hmac_key):
    post(db_session, book, "capture:jpy", capture_legs(currency="JPY"), hmac_key)
    result = app.test_cli_runner().invoke(args=["ledger", "trial-balance", "--merchant", book.merchant_id])
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if line.startswith("test  JPY"))
    assert "¥10,000" in line and line.endswith("OK")
    platform = app.test_cli_runner().invoke(args=["ledger", "trial-balance"])
    assert platform.exit_code == 0 and "UNBALANCED" not in platform.output


def test_mode_needs_a_merchant(app):
    result = app.test_cli_runner().invoke(args=["ledger", "verify", "--mode", "live"])
    assert result.exit_code == 2 and "--mode needs --merchant" in result.output


def test_the_verify_job_stores_its_result(app, db_session, book, hmac_key, redis):
    from app.ledger.jobs import verify_ledger

    post(db_session, book, "capture:job", capture_legs(), hmac_key)
    redis.delete(LAST_VERIFY_KEY)
    assert verify_ledger() is True
    assert last_verify(redis)["ok"] is True
