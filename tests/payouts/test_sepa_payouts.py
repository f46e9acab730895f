"""SEPA payouts end to end in-process: a merchant on the SEPA rail gets its scheduled payouts in an export file
(never through the rail job), each payout once, in transit from then on; paid only from the bank statement's debit,
failed (reversed, the account flagged) from a return."""
import datetime as dt
import itertools
from datetime import timedelta

import pytest
from defusedxml import ElementTree

from app.accounts.models import Merchant
from app.ledger import accounts
from app.payouts import service
from app.payouts.bank_accounts import Actor, payout_destination, set_bank_account
from app.payouts.models import Payout
from app.payouts.sepa import SepaExportError, due_payouts, export_due_payouts, settle_from_statement
from tests.disputes.helpers import seller, verify_ledger
from tests.payouts.helpers import key, split_capture
from tests.reconciliation.helpers import FakeSandbox, balance, deposit, reconcile

NS = {"p": "urn:iso:std:iso:20022:tech:xsd:pain.001.001.03"}
_days = itertools.count()


@pytest.fixture
def sandbox():
    return FakeSandbox(dt.date(2033, 3, 7) + dt.timedelta(days=40 * next(_days)))


def on_sepa(db_session, scope, a, b):
    db_session.get(Merchant, scope.merchant_id).payout_rail = "sepa"
    for seller_id, iban in ((None, "DE89370400440532013000"), (a, "FR1420041010050500013M02606"),
                            (b, "NL91ABNA0417164300")):
        set_bank_account(db_session, scope, seller_id=seller_id, holder_name=f"Holder {seller_id}", country=None,
                         currency="EUR", iban=iban, actor=Actor(None, None), cooling=timedelta(0))
    db_session.commit()


def ready(db_session, scope, sandbox):
    a, b = seller(db_session, scope, "A"), seller(db_session, scope, "B")
    on_sepa(db_session, scope, a, b)
    split_capture(db_session, scope, sandbox, a, b, currency="EUR")
    reconcile(db_session, sandbox)
    day2 = sandbox.day + dt.timedelta(days=1)
    deposit(db_session, sandbox, day2)
    return a, b, day2


def pay(db_session, scope, seller_id, day, amount=None) -> Payout:
    """A scheduled payout of what is available, or a manual one of ``amount``."""
    created = service.create_payout(db_session, scope, seller_id=seller_id, currency="EUR", hmac_key=key(),
                                    today=day, amount=amount, period=day,
                                    business_key=None if amount else service.period_key(seller_id, "EUR", day))
    db_session.commit()
    assert created.payout is not None, created.reason
    return created.payout


def test_sepa_payouts_leave_in_one_file_each_and_are_paid_only_from_the_statement(app, db_session, shop, sandbox):
    scope = shop["scope"]
    a, b, day2 = ready(db_session, scope, sandbox)
    # (The book's cash, less A's payout in transit, covers 38.60 of B's 38.80: B is paid 30.00 by hand.)
    pa, pb = pay(db_session, scope, a, day2), pay(db_session, scope, b, day2, amount=3000)
    assert (pa.rail, pa.next_attempt_at, pa.amount, pb.amount) == ("sepa", None, 5820, 3000)
    # The rail job never picks a SEPA payout.
    assert all(payout_id not in (pa.id, pb.id) for _s, payout_id in service.claim_due(db_session, dt.datetime.now(dt.UTC)
                                                                                       + timedelta(days=30)))
    db_session.rollback()
    export, document = export_due_payouts(db_session, scope, execution_date=day2)
    db_session.commit()
    root = ElementTree.fromstring(document)
    assert sorted(n.text for n in root.iterfind(".//p:EndToEndId", NS)) == sorted([pa.id, pb.id])
    assert root.find(".//p:DbtrAcct//p:IBAN", NS).text == "DE89370400440532013000"
    assert (export.payout_count, export.total) == (2, 8820)
    for payout in (pa, pb):
        db_session.refresh(payout)
        assert (payout.status, payout.rail_reference) == ("in_transit", export.id)
    # Exporting again finds nothing: no payout is in two files.
    assert due_payouts(db_session, scope, now=dt.datetime.now(dt.UTC)) == []
    with pytest.raises(SepaExportError):
        export_due_payouts(db_session, scope, execution_date=day2)
    db_session.rollback()

    # The bank statement's debit of A's payout (its id as remittance), imported by the reconciliation, makes it
    # paid; a different amount changes nothing; the same statement again changes nothing.
    row = scope.get(db_session, Payout, pa.id, for_update=True)
    assert settle_from_statement(db_session, row, amount=-5000, currency="EUR", hmac_key=key()) is None
    db_session.commit()
    statement_day = day2 + timedelta(days=10)
    sandbox.faults.append({"action": "no_batch", "date": statement_day.isoformat(), "batch_id": pa.id,
                           "amount": -5820, "currency": "EUR"})
    imported = deposit(db_session, sandbox, statement_day)
    assert imported.breaks_opened == []
    row = scope.get(db_session, Payout, pa.id)
    assert row.status == "paid" and balance(db_session, scope, accounts.payouts_in_transit("EUR")) == 3000
    assert not deposit(db_session, sandbox, statement_day).created
    assert balance(db_session, scope, accounts.payouts_in_transit("EUR")) == 3000
    # B's transfer came back: failed, its money back in B's payable, its account flagged.
    row = scope.get(db_session, Payout, pb.id, for_update=True)
    assert settle_from_statement(db_session, row, amount=3000, currency="EUR", hmac_key=key()) == "failed"
    db_session.commit()
    assert row.status == "failed" and balance(db_session, scope, accounts.seller_payable(b, "EUR")) == 3880
    assert payout_destination(db_session, scope, b).flagged
    assert balance(db_session, scope, accounts.payouts_in_transit("EUR")) == 0
    verify_ledger(app)


def test_a_payout_in_its_cooling_period_waits_for_the_next_file(app, db_session, shop, sandbox):
    scope = shop["scope"]
    a, b, day2 = ready(db_session, scope, sandbox)
    set_bank_account(db_session, scope, seller_id=a, holder_name="A again", country="FR", currency="EUR",
                     iban="FR7630006000011234567890189", actor=Actor(None, None), cooling=timedelta(days=3))
    db_session.commit()
    pa = pay(db_session, scope, a, day2)
    assert pa.held_until is not None
    with pytest.raises(SepaExportError):
        export_due_payouts(db_session, scope, execution_date=day2)
    db_session.rollback()
    export, _document = export_due_payouts(db_session, scope, execution_date=day2, now=pa.held_until)
    assert export.payout_count == 1
    db_session.rollback()


def test_owners_switch_to_sepa_export_a_file_once_and_download_it_again(app, client, db_session, shop, sandbox):
    import re

    from tests.dashboard.conftest import login_as

    scope = shop["scope"]
    a, b, day2 = ready(db_session, scope, sandbox)
    db_session.get(Merchant, scope.merchant_id).payout_rail = "sandbox"
    db_session.commit()
    login_as(client, db_session, shop["owner"])
    own = f"/dashboard/{scope.merchant_id}/test/sellers/own"
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', client.get(own).get_data(as_text=True)).group(1)
    assert client.post(f"{own}/payout_rail", data={"csrf_token": token, "rail": "sepa"}).status_code == 303
    db_session.rollback()
    assert db_session.get(Merchant, scope.merchant_id).payout_rail == "sepa"
    pa = pay(db_session, scope, a, day2)
    page = client.get(own).get_data(as_text=True)
    assert "1 payout waiting for a file" in page
    seller_page = client.get(f"/dashboard/{scope.merchant_id}/test/sellers/{a}").get_data(as_text=True)
    assert pa.id in seller_page and "in transit" in seller_page.lower() and "•••• 2606" in seller_page
    response = client.post(f"{own}/exports", data={"csrf_token": token})
    assert response.status_code == 200 and response.mimetype == "application/xml"
    assert pa.id in response.get_data(as_text=True)
    again = client.post(f"{own}/exports", data={"csrf_token": token})
    assert again.status_code == 422 and "No SEPA payout is waiting" in again.get_data(as_text=True)
    export_id = re.search(r"(pexp_\w+)\.xml", again.get_data(as_text=True)).group(1)
    download = client.get(f"{own}/exports/{export_id}")
    assert download.status_code == 200 and pa.id in download.get_data(as_text=True)
    # The file holds the payees' account numbers in clear: not downloadable again without a recent confirmation.
    app.config["REAUTH_WINDOW_SECONDS"] = 0.000001
    try:
        stale = client.get(f"{own}/exports/{export_id}")
    finally:
        app.config.pop("REAUTH_WINDOW_SECONDS")
    assert stale.status_code == 303 and "/account/confirm" in stale.headers["Location"]
    # Another merchant's people cannot download it.
    from tests import factories
    other = factories.merchant(db_session, name="Other")
    intruder = factories.member(db_session, other, "owner")
    db_session.commit()
    login_as(client, db_session, intruder)
    assert client.get(f"/dashboard/{other.id}/test/sellers/own/exports/{export_id}").status_code == 404
    assert client.get(f"{own}/exports/{export_id}").status_code == 404


def test_a_payout_to_an_account_replaced_since_stays_out_of_the_file(app, db_session, shop, sandbox):
    scope = shop["scope"]
    a, b, day2 = ready(db_session, scope, sandbox)
    pa = pay(db_session, scope, a, day2)
    old_account = pa.bank_account_id
    # The owners replace A's account (say, the old one was not A's): the pending payout must not go to the old one.
    set_bank_account(db_session, scope, seller_id=a, holder_name="A again", country="FR", currency="EUR",
                     iban="FR7630006000011234567890189", actor=Actor(None, None), cooling=timedelta(0))
    db_session.commit()
    pb = pay(db_session, scope, b, day2, amount=1000)  # (what cash has left after A's payout)
    export, document = export_due_payouts(db_session, scope, execution_date=day2)
    db_session.commit()
    ids = [e.text for e in ElementTree.fromstring(document).iterfind(".//p:EndToEndId", NS)]
    assert ids == [pb.id] and export.payout_count == 1
    assert service.get_payout(db_session, scope, pa.id).status == "pending"
    assert old_account != payout_destination(db_session, scope, a).bank_account_id
    db_session.commit()
