"""SEPA credit-transfer export (app/payouts/sepa.py): a schema-valid pain.001 with the payout id as EndToEndId,
and a payout in exactly one export, however often (or however concurrently) payouts are exported."""
import threading
from datetime import date

import pytest
from defusedxml import ElementTree
from sqlalchemy import select, text

from app.extensions import db
from app.payouts.bank_account_models import PayoutExport, PayoutExportItem
from app.payouts.bank_accounts import PayoutDestination
from app.payouts.sepa import SepaExportError, Transfer, build_pain001, export_document, export_transfers
from app.scoping import Scope
from tests import factories

NS = {"p": "urn:iso:std:iso:20022:tech:xsd:pain.001.001.03"}
DEBTOR = PayoutDestination("ba_debtor", "Marketplace GmbH", "DE", "EUR", "DE89370400440532013000", "COBADEFFXXX",
                           None, None, None, False)
ALICE = PayoutDestination("ba_alice", "Alice Potter", "FR", "EUR", "FR1420041010050500013M02606", None, None, None,
                          None, False)


def transfer(payout_id: str, amount: int = 1250, destination: PayoutDestination = ALICE, currency: str = "EUR"):
    return Transfer(payout_id, amount, currency, destination, f"Payout {payout_id}")


def end_to_end_ids(document: bytes) -> list[str]:
    return [node.text for node in ElementTree.fromstring(document).iterfind(".//p:EndToEndId", NS)]


@pytest.fixture
def scope(db_session):
    merchant = factories.merchant(db_session, name="Exporting Shop")
    db_session.commit()
    return Scope(merchant.id, False)


def test_the_file_is_a_valid_pain001_with_the_payout_ids_as_end_to_end_ids():
    document = build_pain001([transfer("po_1", 1250), transfer("po_2", 99)], DEBTOR, message_id="pexp_1",
                             execution_date=date(2026, 12, 9))
    root = ElementTree.fromstring(document)
    assert end_to_end_ids(document) == ["po_1", "po_2"]
    assert root.find(".//p:GrpHdr/p:MsgId", NS).text == "pexp_1"
    assert root.find(".//p:GrpHdr/p:CtrlSum", NS).text == "13.49"
    assert root.find(".//p:DbtrAcct//p:IBAN", NS).text == DEBTOR.iban
    assert [n.text for n in root.iterfind(".//p:CdtrAcct//p:IBAN", NS)] == [ALICE.iban] * 2
    assert root.find(".//p:ReqdExctnDt", NS).text == "2026-12-09"


@pytest.mark.parametrize("bad, message", [
    (transfer("po_usd", currency="USD"), "in euro"),
    (transfer("po_local", destination=PayoutDestination("ba_us", "Bob", "US", "EUR", None, None, "000123456789",
                                                        "011000015", None, False)), "without an IBAN"),
])
def test_what_sepa_cannot_pay_is_refused(bad, message):
    with pytest.raises(SepaExportError) as refused:
        build_pain001([bad], DEBTOR, message_id="m", execution_date=date(2026, 12, 9))
    assert message in refused.value.message


def test_a_payout_is_in_exactly_one_export(db_session, scope):
    first, document = export_transfers(db_session, scope, [transfer("po_a"), transfer("po_b")], DEBTOR,
                                       execution_date=date(2026, 12, 9))
    db_session.commit()
    assert end_to_end_ids(document) == ["po_a", "po_b"] and (first.payout_count, first.total) == (2, 2500)
    second, document = export_transfers(db_session, scope, [transfer("po_b"), transfer("po_c", 500)], DEBTOR,
                                        execution_date=date(2026, 12, 10))
    db_session.commit()
    assert end_to_end_ids(document) == ["po_c"] and (second.payout_count, second.total) == (1, 500)
    with pytest.raises(SepaExportError):
        export_transfers(db_session, scope, [transfer("po_a"), transfer("po_c")], DEBTOR,
                         execution_date=date(2026, 12, 11))
    db_session.rollback()
    items = db_session.execute(select(PayoutExportItem.payout_id, PayoutExportItem.export_id).where(
        PayoutExportItem.merchant_id == scope.merchant_id).order_by(PayoutExportItem.payout_id)).all()
    assert items == [("po_a", first.id), ("po_b", first.id), ("po_c", second.id)]
    # The stored file is sealed (it lists account numbers) and comes back as handed out.
    stored = db_session.scalars(scope.select(PayoutExport, PayoutExport.id == first.id)).one()
    assert ALICE.iban not in stored.document_encrypted
    assert end_to_end_ids(export_document(stored)) == ["po_a", "po_b"]
    # Another merchant's export of the same payout ids is its own book (ids are global: this never happens).
    assert db_session.scalars(Scope("mer_other", False).select(PayoutExport)).all() == []


def test_the_database_refuses_a_payout_in_a_second_export(db_session, scope):
    export, _ = export_transfers(db_session, scope, [transfer("po_x")], DEBTOR, execution_date=date(2026, 12, 9))
    db_session.commit()
    with pytest.raises(Exception, match="pk_payout_export_items"):
        db_session.execute(text(
            "INSERT INTO payout_export_items (merchant_id, livemode, payout_id, export_id, bank_account_id, amount, "
            "currency) VALUES (:m, false, 'po_x', :e, 'ba_alice', 1, 'EUR')"), {"m": scope.merchant_id, "e": export.id})
    db_session.rollback()
    with pytest.raises(Exception, match="permission denied"):
        db_session.execute(text("DELETE FROM payout_export_items WHERE merchant_id = :m"), {"m": scope.merchant_id})
    db_session.rollback()


def test_two_concurrent_exports_list_each_payout_once(app, db_session, scope):
    barrier = threading.Barrier(2)
    documents: list[bytes] = []
    errors: list[Exception] = []

    def run():
        with app.app_context():
            session = db.session
            try:
                barrier.wait()
                _export, document = export_transfers(session, scope, [transfer("po_r1"), transfer("po_r2")],
                                                     DEBTOR, execution_date=date(2026, 12, 9))
                session.commit()
                documents.append(document)
            except SepaExportError as exc:
                session.rollback()
                errors.append(exc)
            finally:
                session.remove()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    listed = [payout_id for document in documents for payout_id in end_to_end_ids(document)]
    assert sorted(listed) == ["po_r1", "po_r2"]
    assert len(documents) + len(errors) == 2
