"""Stripe balance transactions mapped onto Kassa's settlement lines, checked against Stripe's own example objects
(stripe_examples.json: the objects used here, unchanged, from stripe/openapi's fixtures3.json), no network."""
import copy
import json
from pathlib import Path

import pytest

from app.reconciliation.parsing import SettlementLine, parse_settlement_csv
from app.reconciliation.stripe_lines import UnsupportedBalanceTransaction, lines_csv, map_balance_transactions

FIXTURES = Path(__file__).with_name("stripe_examples.json")
RESOURCES = json.loads(FIXTURES.read_text())["resources"]


def example(name: str) -> dict:
    return copy.deepcopy(RESOURCES[name])


def test_a_payout_s_charge_refund_and_dispute_become_lines():
    payout = example("payout")
    charge_bt = example("balance_transaction")
    charge_bt["source"] = example("charge")  # expanded: the charge names its PaymentIntent
    charge_bt["source"]["payment_intent"] = "pi_3Example"
    charge_bt.update(amount=10000, fee=320, net=9680)
    refund_bt = example("balance_transaction") | {"type": "refund", "reporting_category": "refund", "amount": -2500,
                                                  "fee": 0, "net": -2500, "source": example("refund")["id"]}
    dispute = example("dispute")
    dispute_bt = example("balance_transaction") | {"type": "adjustment", "reporting_category": "dispute",
                                                   "amount": -3000, "fee": 1500, "net": -4500, "source": dispute}
    payout_bt = example("balance_transaction") | {"type": "payout", "amount": -1100, "net": -1100}

    lines = map_balance_transactions([charge_bt, refund_bt, dispute_bt, payout_bt], payout["id"])
    assert lines == [
        SettlementLine("pi_3Example", "charge", 10000, 320, 9680, "USD", payout["id"]),
        SettlementLine(example("refund")["id"], "refund", -2500, 0, -2500, "USD", payout["id"]),
        SettlementLine(dispute["id"], "dispute", -3000, 0, -3000, "USD", payout["id"]),
        SettlementLine(dispute["id"], "fee", 0, 1500, -1500, "USD", payout["id"]),
    ]
    # The same shape as a sandbox report: imported and stored like one.
    assert list(parse_settlement_csv(lines_csv(lines))) == lines


def test_the_unexpanded_example_keeps_its_charge_id_and_fx_is_refused():
    bt = example("balance_transaction")
    [line] = map_balance_transactions([bt], "po_1")
    assert (line.reference, line.type, line.gross, line.net, line.currency) == (bt["source"], "charge", 100, 100, "USD")
    with pytest.raises(UnsupportedBalanceTransaction, match="until FX"):
        map_balance_transactions([bt | {"exchange_rate": 1.1}], "po_1")
    with pytest.raises(UnsupportedBalanceTransaction, match="not reconciled yet"):
        map_balance_transactions([bt | {"type": "topup"}], "po_1")



def test_a_stored_stripe_document_is_read_payout_by_payout_with_stripes_currency_rules():
    from app.reconciliation.parsing import ReportFormatError
    from app.reconciliation.stripe_lines import parse_stripe_report, report_document

    bt = example("balance_transaction") | {"currency": "isk", "amount": 150000, "fee": 4500, "net": 145500}
    first, second = example("payout") | {"id": "po_isk"}, example("payout") | {"id": "po_empty"}
    content = report_document("platform", False, (0, 86400), [first, second], {"po_isk": [bt], "po_empty": []})
    # Stripe writes ISK with two decimals (150000 is 1,500 ISK); Kassa keeps ISO minor units (ISK has none).
    assert list(parse_stripe_report(content)) == [SettlementLine(bt["source"], "charge", 1500, 45, 1455, "ISK",
                                                                 "po_isk")]
    assert report_document("platform", False, (0, 86400), [first, second], {"po_isk": [bt], "po_empty": []}) == content
    with pytest.raises(ReportFormatError, match="not a Stripe settlement document"):
        list(parse_stripe_report(b"reference,type,gross,fee,net,currency,batch_id\n"))
    with pytest.raises(ReportFormatError, match="until FX"):
        list(parse_stripe_report(report_document("platform", False, (0, 1), [first],
                                                 {"po_isk": [bt | {"exchange_rate": "1.1"}]})))


def test_a_failed_payout_s_money_paid_again_is_no_line_and_is_read_from_the_stored_document():
    from app.reconciliation.stripe_lines import report_document, returned_payouts

    charge = example("balance_transaction")
    failure = example("balance_transaction") | {"id": "txn_fail", "type": "payout_failure",
                                                "reporting_category": "payout_reversal", "amount": 2900, "fee": 0,
                                                "net": 2900, "source": "po_failed", "currency": "isk"}
    assert [line.type for line in map_balance_transactions([charge, failure], "po_next")] == ["charge"]
    content = report_document("pcr_x", False, (0, 1), [{"id": "po_next"}], {"po_next": [charge, failure]})
    # Read with Stripe's currency rules (ISK is written with two decimals).
    assert returned_payouts(content, "po_next") == [("po_failed", 29, "ISK")]
    assert returned_payouts(content, "po_other") == [] and returned_payouts(b"not json", "po_next") == []
