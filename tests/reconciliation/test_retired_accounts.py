"""A merchant's Stripe key replaced or removed (its credential retired) still has payouts to come for the payments
made with it: the scheduled fetch keeps asking for its reports until every one of them is reported (or its
missing_at_psp break is resolved), and the console lists what is still missing."""
import datetime as dt

from app.crypto import SecretBox
from app.psp.credentials import delete_credentials
from app.reconciliation import fetch
from app.reconciliation.models import Break
from tests.reconciliation.test_stripe_source import (
    charge_bt,
    connected,
    import_account_report,
    payout,
    stripe_payment,
)


def _fetched(app, session) -> list[str]:
    box = SecretBox(app.config["KASSA_ENCRYPTION_KEYS"])
    found = [account.credential for account in fetch.stripe_accounts(session, app.config, box)]
    session.rollback()
    return found


def _pending(session, credential: str):
    rows = [row for row in fetch.retired_pending(session) if row.credential == credential]
    session.rollback()
    return rows


def test_a_retired_credential_is_fetched_until_its_payments_are_reported(app, db_session, shop):
    scope = shop["scope"]
    day = dt.date(2026, 5, 4)
    old = connected(app, db_session, scope, "recon_retiring")
    stripe_payment(db_session, scope, 5000, "pi_retiring_a", old.id, day)
    stripe_payment(db_session, scope, 3000, "pi_retiring_b", old.id, day)
    new = connected(app, db_session, scope, "recon_replacing")  # a new key: the old credential is retired
    assert new.id != old.id
    assert {old.id, new.id} <= set(_fetched(app, db_session))
    [pending] = _pending(db_session, old.id)
    assert (pending.merchant_id, pending.livemode, pending.payments, pending.refunds) == (scope.merchant_id, False,
                                                                                          2, 0)

    # One payout carries the first payment: the second is still due, the account still fetched.
    import_account_report(app, db_session, old.id, day, [payout("po_retiring_a", 4850)],
                          {"po_retiring_a": [charge_bt("pi_retiring_a", 5000, 150, "po_retiring_a")]})
    assert _pending(db_session, old.id)[0].payments == 1
    assert old.id in _fetched(app, db_session)

    # The next carries the other: its reports are complete, the retired account is fetched no more.
    import_account_report(app, db_session, old.id, day + dt.timedelta(days=1), [payout("po_retiring_b", 2910)],
                          {"po_retiring_b": [charge_bt("pi_retiring_b", 3000, 90, "po_retiring_b")]})
    assert _pending(db_session, old.id) == []
    fetched = _fetched(app, db_session)
    assert old.id not in fetched and new.id in fetched


def test_a_removed_credential_whose_payment_never_settles_stops_once_its_break_is_resolved(app, db_session, shop):
    scope = shop["scope"]
    day = dt.date(2026, 5, 8)
    old = connected(app, db_session, scope, "recon_removed")
    stripe_payment(db_session, scope, 2500, "pi_removed", old.id, day)
    delete_credentials(db_session, scope, "stripe")
    db_session.commit()
    assert old.id in _fetched(app, db_session)

    # Its report of a much later day finds the payment missing at the PSP; resolving that break ends the fetch.
    import_account_report(app, db_session, old.id, day + dt.timedelta(days=20), [], {})
    db_session.rollback()
    [missing] = db_session.scalars(scope.select(Break, Break.reference == "pi_removed")).all()
    assert missing.type == "missing_at_psp"
    db_session.commit()
    assert old.id in _fetched(app, db_session)
    _resolve_in(db_session, scope, missing)
    assert old.id not in _fetched(app, db_session)


def _resolve_in(session, scope, row):
    from flask import current_app

    from app.payments.deps import deps_for
    from app.reconciliation.resolution import resolve_break

    resolve_break(session, scope, row.id, resolution="written_off", note="Stripe never paid it",
                  hmac_key=deps_for(current_app).ledger_hmac_key, actor_user_id=None, actor_label="ops@kassa.test")
    session.commit()


