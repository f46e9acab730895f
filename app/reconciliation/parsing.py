"""Parsing what PSPs and banks send: settlement CSV lines and camt.053 bank statements, streamed.

Both are untrusted input. CSV rows are checked one by one (integers only, ``net = gross - fee``); camt.053 is
XML and goes only through defusedxml, which refuses entity declarations and external references (no "billion
laughs", no file or network reads), then is walked element by element.
"""
import csv
import io
import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Iterator

from defusedxml import ElementTree

from app.money import CURRENCY_EXPONENTS

SETTLEMENT_COLUMNS = ("reference", "type", "gross", "fee", "net", "currency", "batch_id")
LINE_TYPES = ("charge", "refund", "refund_failure", "dispute", "fee", "payout")
_TEXT = re.compile(r"^[A-Za-z0-9_.:\-]{1,255}$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_AMOUNT = re.compile(r"\d{1,18}(\.\d{1,5})?")
CAMT_NS = re.compile(r"^\{urn:iso:std:iso:20022:tech:xsd:camt\.053\.001\.\d\d\}")


class ReportFormatError(ValueError):
    """A file that is not what its source promised; the message names the line and the problem."""


@dataclass(frozen=True)
class SettlementLine:
    """One settlement report line in Kassa's shape (Stripe balance transactions are mapped onto it too)."""

    reference: str
    type: str
    gross: int
    fee: int
    net: int
    currency: str
    batch_id: str


@dataclass(frozen=True)
class StatementEntry:
    """One booked entry of a bank statement: signed amount in minor units, the PSP payout id it names."""

    booking_date: date
    amount: int
    currency: str
    batch_id: str | None
    bank_reference: str | None


def plain_identifier(value: str | None) -> bool:
    """A reference or batch id a report may carry: letters, digits and ``_.:-``, 1 to 255 of them."""
    return bool(value) and _TEXT.fullmatch(value) is not None


def currency_code(value: str | None) -> bool:
    """Three capital letters (ISO 4217's form)."""
    return bool(value) and _CURRENCY.fullmatch(value) is not None


def _integer(value: str, name: str, number: int) -> int:
    if not re.fullmatch(r"-?\d{1,18}", value or ""):
        raise ReportFormatError(f"line {number}: {name} must be an integer number of minor units, got {value!r}")
    return int(value)


def parse_settlement_csv(content: bytes) -> Iterator[SettlementLine]:
    """The lines of a settlement CSV (header first), checked; ReportFormatError on the first bad one."""
    # Decoded as it is read (no second copy of the whole file as text): memory stays flat beside the bytes.
    reader = csv.reader(io.TextIOWrapper(io.BytesIO(content), encoding="utf-8", newline=""))
    try:
        yield from _settlement_rows(reader)
    except UnicodeDecodeError:
        raise ReportFormatError("the report is not UTF-8 text") from None


def _settlement_rows(reader) -> Iterator[SettlementLine]:
    header = next(reader, None)
    if header is None or tuple(header) != SETTLEMENT_COLUMNS:
        raise ReportFormatError(f"the header must be {','.join(SETTLEMENT_COLUMNS)}")
    for number, row in enumerate(reader, start=2):
        if not row:
            continue
        yield check_settlement_row(row, number)


def check_settlement_row(row, number: int) -> SettlementLine:
    """One settlement row (its columns as text) checked: the line, or ReportFormatError naming line ``number``.
    The importer checks rows in SQL (app/reconciliation/service.py) and asks this for the message of the first bad
    one, so both say the same."""
    if len(row) != len(SETTLEMENT_COLUMNS):
        raise ReportFormatError(f"line {number}: expected {len(SETTLEMENT_COLUMNS)} columns, got {len(row)}")
    reference, type_, gross, fee, net, currency, batch_id = row
    if not plain_identifier(reference) or not plain_identifier(batch_id):
        raise ReportFormatError(f"line {number}: reference and batch_id must be plain identifiers")
    if type_ not in LINE_TYPES:
        raise ReportFormatError(f"line {number}: unknown type {type_!r}")
    if not currency_code(currency):
        raise ReportFormatError(f"line {number}: currency must be an ISO 4217 code, got {currency!r}")
    line = SettlementLine(reference, type_, _integer(gross, "gross", number), _integer(fee, "fee", number),
                          _integer(net, "net", number), currency, batch_id)
    if line.net != line.gross - line.fee:
        raise ReportFormatError(f"line {number}: net {line.net} is not gross {line.gross} - fee {line.fee}")
    return line


def _minor_units(text: str | None, currency: str) -> int:
    exponent = CURRENCY_EXPONENTS.get(currency, 2)
    # ISO 20022 amounts: at most 18 digits, plain decimal notation (no NaN, Infinity or exponent: Decimal would take
    # them, and "1E999999999" would become an integer of a billion digits).
    if not _AMOUNT.fullmatch((text or "").strip()):
        raise ReportFormatError(f"amount {text!r} is not a decimal number")
    try:
        value = Decimal((text or "").strip())
    except InvalidOperation:
        raise ReportFormatError(f"amount {text!r} is not a decimal number") from None
    scaled = value.scaleb(exponent)
    if value < 0 or scaled != scaled.to_integral_value():
        raise ReportFormatError(f"amount {text!r} has more decimals than {currency} allows")
    return int(scaled)


def parse_camt053(content: bytes) -> Iterator[StatementEntry]:
    """The booked entries of an ISO 20022 camt.053 statement (any 001.xx version), parsed with defusedxml."""
    try:
        root = ElementTree.fromstring(content, forbid_dtd=True)
    except Exception as exc:  # defusedxml's refusals and ParseError alike: the file is not a usable statement
        raise ReportFormatError(f"not a well-formed camt.053 statement: {exc}") from None
    match = CAMT_NS.match(root.tag)
    if not match or not root.tag.endswith("}Document"):
        raise ReportFormatError("not a camt.053 document")
    ns = match.group(0)

    def find(element, path):
        return element.find("/".join(ns + part for part in path.split("/")))

    for statement in root.iter(ns + "Stmt"):
        for entry in statement.iter(ns + "Ntry"):
            status = find(entry, "Sts")
            status_text = (status.findtext(ns + "Cd") or status.text or "").strip() if status is not None else "BOOK"
            if status_text != "BOOK":
                continue
            amount = find(entry, "Amt")
            if amount is None or not _CURRENCY.match(amount.get("Ccy", "")):
                raise ReportFormatError("an entry has no amount with a currency")
            currency = amount.get("Ccy")
            value = _minor_units(amount.text, currency)
            indicator = (find(entry, "CdtDbtInd").text or "").strip() if find(entry, "CdtDbtInd") is not None else ""
            if indicator not in ("CRDT", "DBIT"):
                raise ReportFormatError("an entry's CdtDbtInd must be CRDT or DBIT")
            booked = find(entry, "BookgDt/Dt")
            try:
                booking_date = date.fromisoformat((booked.text or "").strip()[:10]) if booked is not None else None
            except ValueError:
                booking_date = None
            if booking_date is None:
                raise ReportFormatError("an entry has no booking date")
            remittance = find(entry, "NtryDtls/TxDtls/RmtInf/Ustrd")
            batch = (remittance.text or "").strip() if remittance is not None else None
            reference = find(entry, "AcctSvcrRef")
            yield StatementEntry(booking_date, value if indicator == "CRDT" else -value, currency,
                                 batch if batch and _TEXT.match(batch) else None,
                                 (reference.text or "").strip()[:100] if reference is not None else None)
