"""Parsing untrusted files: camt.053 only through defusedxml (entity declarations refused), CSV lines checked."""
import pytest

from app.reconciliation.parsing import ReportFormatError, parse_camt053, parse_settlement_csv


def test_camt053_with_an_entity_bomb_is_refused():
    bomb = (b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;">]>'
            b'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02">&b;</Document>')
    with pytest.raises(ReportFormatError):
        list(parse_camt053(bomb))


def test_a_settlement_line_whose_net_is_not_gross_less_fee_is_refused():
    header = b"reference,type,gross,fee,net,currency,batch_id\n"
    assert len(list(parse_settlement_csv(header + b"auth_1,charge,1000,59,941,USD,po_1\n"))) == 1
    with pytest.raises(ReportFormatError, match="line 2: net"):
        list(parse_settlement_csv(header + b"auth_1,charge,1000,59,940,USD,po_1\n"))
    with pytest.raises(ReportFormatError, match="integer"):
        list(parse_settlement_csv(header + b"auth_1,charge,10.00,59,941,USD,po_1\n"))


def _statement_with_amount(amount: str) -> bytes:
    return ('<?xml version="1.0"?><Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"><BkToCstmrStmt>'
            f'<Stmt><Ntry><Amt Ccy="USD">{amount}</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts>BOOK</Sts>'
            '<BookgDt><Dt>2031-01-02</Dt></BookgDt></Ntry></Stmt></BkToCstmrStmt></Document>').encode()


@pytest.mark.parametrize("amount", ["NaN", "sNaN", "Infinity", "1E999999999", "1e3", "12,00", "", "-5.00"])
def test_a_camt053_amount_that_is_not_a_plain_decimal_is_refused(amount):
    """Review r3: NaN raised InvalidOperation (a 500), Infinity OverflowError, 1E999999999 built a billion-digit int."""
    assert [e.amount for e in parse_camt053(_statement_with_amount("12.50"))] == [1250]
    with pytest.raises(ReportFormatError):
        list(parse_camt053(_statement_with_amount(amount)))
