"""Demo data: three days of the sandbox's reports and bank statements for the demo merchant (test mode),
reconciled: a clean day, a day with one break of each kind the sandbox's faults produce (a dispute whose notice
Kassa missed included: its lines create the dispute), and the day a late line arrives. Idempotent: nothing is added once demo files exist. The files are written here in the sandbox's formats
(sandbox_psp/settlement.py) for payments booked as the payments worker books them (they are Kassa's records
only: the running sandbox never saw them).
"""
from datetime import datetime, time, timedelta, timezone

from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.disputes.seed import _captured_payment
from app.models_base import utcnow
from app.payments.deps import deps_for
from app.reconciliation import service
from app.reconciliation.models import ReportFile
from app.scoping import Scope

PSP = "sandbox"
HEADER = "reference,type,gross,fee,net,currency,batch_id\n"


def _fee(gross: int) -> int:
    per_mille, fixed = service.CONTRACTED_PRICING[PSP]
    return (gross * per_mille + 500) // 1000 + fixed


def _batch(day, currency: str = "EUR") -> str:
    return f"po_{PSP}_{day:%Y%m%d}_{currency}"


def _line(reference: str, gross: int, day, *, fee: int | None = None, currency: str = "EUR") -> tuple:
    fee = _fee(gross) if fee is None else fee
    return (reference, "charge", gross, fee, gross - fee, currency, _batch(day, currency))


def _csv(lines) -> bytes:
    return (HEADER + "".join(",".join(map(str, line)) + "\n" for line in lines)).encode()


def _camt(day, entries) -> bytes:
    """A camt.053.001.02 statement with one booked entry per (batch, amount in minor units, currency)."""
    ntry = "".join(
        f'<Ntry><Amt Ccy="{currency}">{abs(amount) // 100}.{abs(amount) % 100:02d}</Amt>'
        f"<CdtDbtInd>{'CRDT' if amount > 0 else 'DBIT'}</CdtDbtInd><Sts>BOOK</Sts><BookgDt><Dt>{day}</Dt></BookgDt>"
        f"<AcctSvcrRef>DEMO{day:%Y%m%d}{n:03d}</AcctSvcrRef><NtryDtls><TxDtls><RmtInf><Ustrd>{batch}</Ustrd></RmtInf>"
        "</TxDtls></NtryDtls></Ntry>" for n, (batch, amount, currency) in enumerate(entries, 1))
    return ('<?xml version="1.0" encoding="UTF-8"?><Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02">'
            f"<BkToCstmrStmt><Stmt><Id>DEMO{day:%Y%m%d}</Id>{ntry}</Stmt></BkToCstmrStmt></Document>").encode()


def _psp_record(reference: str, payment, day):
    """The PSP's answer to a lookup of the demo's missed dispute (the sandbox's dispute object, normalized)."""
    from app.psp.interfaces import Lookup, Outcome, PspResult
    from app.psp.sandbox import dispute_data

    created = int(datetime.combine(day, time(12), timezone.utc).timestamp())
    dispute = {"id": reference, "acquirer": PSP, "authorization": payment.psp_reference, "amount": 2200,
               "currency": "EUR", "reason": "fraudulent", "status": "needs_response", "created": created,
               "evidence_details": {"due_by": created + 7 * 86400, "submission_count": 0},
               "is_charge_refundable": False,
               "balance_transactions": [{"type": "dispute", "amount": -2200, "fee": 1500, "currency": "EUR",
                                         "created": created}]}

    def lookup(connector: str, wanted: str, livemode: bool, credential: str | None = None):
        if wanted != reference:
            return Lookup.absent(connector, "No such dispute.")
        return Lookup.of(PspResult(outcome=Outcome.SUCCEEDED, connector=connector, psp_reference=reference,
                                   status="needs_response", raw=dispute_data(dispute)))

    return lookup


def seed_demo_reconciliation(session: Session, merchant, _web_url: str) -> list[str]:
    """SEED_STEPS entry: three reconciled days of the demo merchant (test mode), once."""
    if session.scalar(select(ReportFile.id).where(ReportFile.filename.like("demo-%")).limit(1)) is not None:
        return []
    scope = Scope(merchant.id, False)
    deps = deps_for(current_app._get_current_object())
    today = utcnow().date()
    d1, d2, d3 = (today - timedelta(days=n) for n in (4, 3, 2))

    def pay(amount: int, day, email: str):
        when = datetime.combine(day, time(10), timezone.utc)
        return _captured_payment(session, scope, amount, email, when, deps)

    p1, p2 = pay(10000, d1, "ada@example.com"), pay(2500, d1, "bo@example.com")
    dup, short, fee, fx, dropped, late, disputed = (pay(amount, d2, f"demo{n}@example.com") for n, amount in
                                                    enumerate((5000, 4000, 3000, 2000, 1500, 6000, 2200)))
    missed = f"dp_recon_missed_{d2:%Y%m%d}"
    day1 = [_line(p1.psp_reference, 10000, d1), _line(p2.psp_reference, 2500, d1)]
    day2 = [_line(dup.psp_reference, 5000, d2), _line(dup.psp_reference, 5000, d2),          # duplicate
            _line(short.psp_reference, 3900, d2),                                            # amount mismatch
            _line(fee.psp_reference, 3000, d2, fee=_fee(3000) + 50),                         # fee off the contract
            _line(fx.psp_reference, 2000, d2, currency="USD"),                               # currency mismatch
            _line("auth_demo_unknown_charge", 900, d2),                                      # missing in Kassa
            _line(disputed.psp_reference, 2200, d2),
            (missed, "dispute", -2200, 0, -2200, "EUR", _batch(d2)),                        # a dispute whose notice
            (missed, "fee", 0, 1500, -1500, "EUR", _batch(d2))]                              # Kassa missed
    # (``dropped`` is never reported: missing at the PSP; ``late`` arrives the next day and closes its break.)
    day3 = [_line(late.psp_reference, 6000, d3)]
    total = {day: {} for day in (d1, d2, d3)}
    for day, lines in ((d1, day1), (d2, day2), (d3, day3)):
        for line in lines:
            total[day][line[6]] = (total[day].get(line[6], (0, line[5]))[0] + line[4], line[5])
    statements = {
        d2: [(batch, amount, currency) for batch, (amount, currency) in total[d1].items()],
        d3: [(batch, amount - (50 if currency == "EUR" else 0), currency)                  # the EUR batch paid short
             for batch, (amount, currency) in total[d2].items()] + [("po_sandbox_demo_unknown", 1234, "EUR")],
        d3 + timedelta(days=1): [(batch, amount, currency) for batch, (amount, currency) in total[d3].items()],
    }
    session.flush()
    notices = service.DisputeNotices(lookup=_psp_record(missed, disputed, d2), deps=deps)
    for day, lines in ((d1, day1), (d2, day2), (d3, day3)):
        service.reconcile_settlement(session, psp=PSP, livemode=False, report_date=day, content=_csv(lines),
                                     hmac_key=deps.ledger_hmac_key, filename=f"demo-{PSP}-{day}.csv",
                                     dispute_notices=notices)
        if day in statements:
            service.reconcile_statement(session, livemode=False, report_date=day, content=_camt(day, statements[day]),
                                        hmac_key=deps.ledger_hmac_key, filename=f"demo-bank-{day}.xml")
    last = d3 + timedelta(days=1)
    service.reconcile_statement(session, livemode=False, report_date=last, content=_camt(last, statements[last]),
                                hmac_key=deps.ledger_hmac_key, filename=f"demo-bank-{last}.xml")
    session.flush()
    return [f"Reconciliation: {d1} to {d3} reconciled, with one break of each kind (/admin/reconciliation, "
            "Settlement in the dashboard)"]
