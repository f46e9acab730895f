"""Stripe's payout events standing in for the bank deposit, for accounts that declare ``payout_events``.

A merchant connected with its own Stripe account is paid into its own bank, which Kassa never sees; each credential
declares how its payouts are confirmed (app/psp/credentials.py: ``bank_statement``, the platform's default, or
``payout_events``, the merchants' default; the platform's own account per mode in STRIPE_DEPOSIT_CONFIRMATION_TEST/
_LIVE). For a ``payout_events`` account:

* ``payout.paid`` is the deposit of the batch (the payout id is the batch of the account's report lines,
  app/reconciliation/stripe_lines.py): each book's share moves from ``psp_clearing`` to ``cash``
  (``deposit:<po>:<book>:paid``), as the bank statement's deposit would (app/reconciliation/service.py; a negative
  share its book's cash cannot give stays in clearing with a break, ``service.share_not_deposited``); a payout
  whose amount differs from its batch is a ``deposit_mismatch`` break, the money in the platform's suspense.
* ``payout.failed`` opens a ``deposit_mismatch`` break (deposited 0: the batch was not paid). Stripe also sends it
  after ``payout.paid`` when the bank returns the money: then what the paid event moved is reversed first, in each
  book by a transaction of its own (``deposit:<po>:<book>:failed``, the exact opposite legs of
  ``deposit:<po>:<book>:paid`` and of an accepted resolution of the payout's earlier mismatch break,
  ``resolve:<break id>``): the money is back in ``psp_clearing`` (reported by Stripe, not paid), or, for a payout that
  had differed from its batch, out of the platform's cash and suspense again; an open mismatch break of the payout is
  closed, since the failure's break now stands for it.
* A later payout that pays a failed one's money again (a ``payout_failure`` balance transaction among its own, which
  makes no line: app/reconciliation/stripe_lines.py) deposits the failed batch's shares too
  (``deposit:<failed po>:<book>:repaid:<po>``) and closes the failure's break, when that break is open (or resolved
  with nothing posted, awaiting this payment: ``psp_asked``, or matched by hand to this payout) and the amounts
  agree; otherwise the payout differs from what Kassa expects and is a ``deposit_mismatch``.

Exactly once: a callback is stored once per Stripe event id (app/psp/callbacks.py), a book whose deposit of the
batch is posted already moves nothing again, and a book whose deposit was reversed already is not reversed again
(its ``:failed`` key). One at a time per payout (``lock_payout``): two workers handling its paid and failed events
at once, or an operator resolving its break meanwhile, each see what the other posted. Bound to the credential: the payout belongs to the account whose report
carried it; a callback verified with another account's secret is refused (``CallbackScope.refusal``) before anything
is read in a book. A payout whose report is not imported yet waits: the handler raises and the callback sweep tries
again (app/jobs/psp.py). For a ``bank_statement`` account the events change nothing (the statement confirms).

Never the event's word for it: a merchant connected with its own Stripe account holds that account's webhook secret
and could sign a ``payout.paid`` of any amount (issue 21). Before anything is read in a book, the payout is asked of
Stripe with the credential's own key (``stripe_payout``: the router's ``retrieve_payout``, its timeouts, breaker and
bounded retries), and what Stripe answers is applied: its amount, currency, status and arrival date (a ``paid``
payout deposits, a ``failed`` one opens the failure's break, whatever the event's type said; any other status, or a
payout Stripe surely does not have, drops the event with a log line and an audit entry, nothing posted). When Stripe
could not tell (unreachable, a timeout, a 5xx, a rate limit, an open breaker) the handler raises
(``PayoutUnconfirmed``): nothing is posted and the callback sweep asks again.

No Flask in the service functions; the handler takes the running app's ledger key, as the other handlers take their
collaborators. Registered in app.psp.callbacks when app.reconciliation is imported.
"""
import logging
from datetime import UTC, date, datetime

from sqlalchemy import or_, select, text
from sqlalchemy.orm import Session

from app.accounts.audit import audit
from app.ledger import accounts
from app.ledger.errors import InsufficientBalance
from app.ledger.models import Entry, JournalTransaction, LedgerAccount
from app.ledger.service import CREDIT, DEBIT, Leg, post_transaction
from app.models_base import lock_until_commit, utcnow
from app.psp.callbacks import CALLBACK_HANDLERS, REFERENCE_RESOLVERS, CallbackOwner, CallbackScope, Recorded
from app.psp.credentials import PAYOUT_EVENTS
from app.psp.interfaces import CallbackEvent, Lookup, LookupOutcome
from app.psp.models import PspCredential
from app.reconciliation import service
from app.reconciliation.models import PLATFORM_MERCHANT_ID, Break, ReportFile, ReportLine
from app.reconciliation.stripe_lines import PLATFORM_CREDENTIAL, PSP, credential_of, returned_payouts, source_of
from app.scoping import Scope

log = logging.getLogger(__name__)

PAID, FAILED = "payout.paid", "payout.failed"
PAYOUT_TYPES = (PAID, FAILED)


class PayoutNotReported(RuntimeError):
    """The payout's report is not imported yet: the callback is retried later (the sweep's backoff)."""


class PayoutUnconfirmed(RuntimeError):
    """Stripe could not tell what the payout is (unreachable, timed out, 5xx, rate limited, open breaker): nothing is
    posted and the callback is retried later (the sweep's backoff)."""


# Stripe's payout statuses that move money in a book; any other (pending, in_transit, canceled) moves nothing yet.
APPLIED_STATUSES = {"paid": PAID, "failed": FAILED}


def confirmed_payout(session: Session, event: CallbackEvent, owner: CallbackOwner, lookup: Lookup) -> dict | None:
    """The payout as Stripe answered ``lookup`` (its amounts in Kassa's units), to apply instead of the event's body;
    None when the event is dropped (Stripe surely has no such payout, or its status moves no money): logged and
    audited in the owner's scope. PayoutUnconfirmed when Stripe could not tell."""
    payout_id = event.psp_reference
    if lookup.outcome == LookupOutcome.UNKNOWN:
        raise PayoutUnconfirmed(f"Stripe could not tell payout {payout_id} of {owner.credential} "
                                f"({lookup.error or 'unknown'}: {lookup.message or 'no answer'}); asked again later")
    payout = (lookup.found.raw if lookup.outcome == LookupOutcome.FOUND and lookup.found is not None else None)
    if payout is not None and payout.get("id") != payout_id:
        raise PayoutUnconfirmed(f"Stripe answered payout {payout.get('id')!r} when asked for {payout_id}")
    if payout is not None and payout.get("status") in APPLIED_STATUSES:
        return payout
    if payout is None:
        reason, status = "Stripe has no such payout for this account", None
    else:
        status = payout.get("status")
        reason = f"Stripe's payout is {status!r}: it moves no money yet"
    log.warning("payout event %s (%s of %s, credential %s) dropped: %s", event.id, event.type, payout_id,
                owner.credential, reason)
    claimed = event.data or {}
    audit(session, "reconciliation.payout_event_dropped", merchant_id=owner.merchant_id, livemode=owner.livemode,
          actor_label=f"{PSP} webhook", target=payout_id,
          details={"event": event.id, "type": event.type, "credential": owner.credential, "reason": reason,
                   "stripe_status": status, "claimed_amount": claimed.get("amount"),
                   "claimed_currency": claimed.get("currency"), "claimed_status": claimed.get("status")})
    return None


def payout_owner(session: Session, scope: CallbackScope, event: CallbackEvent) -> CallbackOwner | None:
    """The account a payout belongs to: the one whose imported report carried its batch (looked up across accounts
    on purpose, so that a callback of another account is refused), else the verifying account's own (its report is
    not in yet)."""
    if event.type not in PAYOUT_TYPES or scope.psp != PSP or not event.psp_reference:
        return None
    known = session.execute(
        select(ReportFile.source, ReportFile.livemode).join(ReportLine, ReportLine.file_id == ReportFile.id)
        .where(ReportLine.psp == PSP, ReportLine.livemode.in_((False, True)),
               ReportLine.batch_id == event.psp_reference).limit(1)).one_or_none()
    credential, livemode = ((credential_of(known.source), known.livemode) if known is not None
                            else (scope.verified_with, scope.livemode))
    if credential == PLATFORM_CREDENTIAL:
        merchant_id = PLATFORM_MERCHANT_ID
    else:
        merchant_id = session.scalar(select(PspCredential.merchant_id).where(PspCredential.id == credential))
        if merchant_id is None:
            return None
    return CallbackOwner(merchant_id, livemode, "payout", event.psp_reference, PSP, credential=credential)


def deposit_confirmation(session: Session, owner: CallbackOwner, platform_confirmation: str) -> str:
    """How the owner's account confirms its deposits (the platform's from the configuration)."""
    if owner.credential == PLATFORM_CREDENTIAL:
        return platform_confirmation
    return session.scalars(owner.scope.select(PspCredential, PspCredential.id == owner.credential)).one() \
        .deposit_confirmation


def lock_payout(session: Session, livemode: bool, payout_id: str) -> None:
    """One at a time per payout (a transaction-scoped lock): its paid and failed events, a later payout paying it
    again and the resolution of its break each read what the others post (two sweep workers may take the paid and
    the failed event at once); the second waits for the first's commit, then sees its postings."""
    lock_until_commit(session, f"reconciliation:payout:{livemode}:{payout_id}")


def _posted(session: Session, scope: Scope, business_key: str) -> bool:
    return session.scalar(select(JournalTransaction.id).where(
        JournalTransaction.merchant_id == scope.merchant_id, JournalTransaction.livemode == scope.livemode,
        JournalTransaction.business_key == business_key)) is not None


def _day(timestamp) -> date:
    return datetime.fromtimestamp(int(timestamp), UTC).date() if timestamp else utcnow().date()


def _returned(session: Session, source: str, livemode: bool, payout_id: str) -> list[tuple[str, int, str]]:
    """The failed payouts this payout pays again (``payout_failure`` balance transactions in its account's latest
    reports), read from the stored documents that name it."""
    contents = session.scalars(select(ReportFile.content).where(
        ReportFile.source == source, ReportFile.kind == "settlement", ReportFile.livemode == livemode,
        ReportFile.id.not_in(select(ReportFile.supersedes_id).where(ReportFile.supersedes_id.is_not(None))),
        text("position(convert_to(:payout, 'UTF8') in reconciliation_files.content) > 0")
        .bindparams(payout=payout_id))).all()
    found: dict[str, tuple[str, int, str]] = {}
    for content in contents:
        for failed, amount, currency in returned_payouts(content, payout_id):
            found[failed] = (failed, amount, currency)
    return sorted(found.values())


def _repayable(session: Session, livemode: bool, source: str, failed: str, amount: int, currency: str, paying: str):
    """A failed payout's shares, when its open failure break and its reversed (or never posted) deposit let this
    payout pay it again in full; else None."""
    platform = service.platform_scope(livemode)
    # Open, or closed by this very payout before (a redelivered payout.paid moves nothing again: its keys), or
    # resolved without a posting that awaits this payment: Stripe asked to pay it again (psp_asked), or matched by
    # hand to this payout; the batch is still in clearing then (an accepted or written-off one is not).
    row = session.scalars(platform.select(Break, Break.dedupe_key == f"payout_failed:{failed}", or_(
        Break.status == "open", (Break.status == "closed") & (Break.object_id == paying),
        (Break.status == "resolved") & Break.resolution_transaction_id.is_(None) & or_(
            Break.resolution == "psp_asked",
            (Break.resolution == "matched_by_hand") & (Break.object_id == paying))))).one_or_none()
    shares = service.batch_shares(session, livemode, failed, source=source)
    if row is None or not shares or {share.currency for share in shares} != {currency} \
            or sum(share.total for share in shares) != amount:
        return None
    for share in shares:
        scope = Scope(share.book, livemode)
        book = service._book(scope)
        if _posted(session, scope, f"deposit:{failed}:{book}:paid") and \
                not _posted(session, scope, f"deposit:{failed}:{book}:failed"):
            return None  # its cash was never moved back to clearing
    return row, shares


def payout_paid(session: Session, *, credential: str, livemode: bool, payout: dict, hmac_key: bytes,
                now: datetime | None = None) -> list[str]:
    """The payout reached the account's bank: the deposit of its batch (the ids of the transactions posted; none
    when it was posted before), and of the failed payouts it pays again (``deposit:<failed po>:<book>:repaid``,
    each one's failure break closed). PayoutNotReported when the account's report of it is not imported yet."""
    now = now or utcnow()
    payout_id, amount, currency = payout["id"], int(payout.get("amount") or 0), (payout.get("currency") or "").upper()
    lock_payout(session, livemode, payout_id)
    source = source_of(credential)
    shares = service.batch_shares(session, livemode, payout_id, source=source)
    returned = _returned(session, source, livemode, payout_id)
    for failed in sorted({failed for failed, _, _ in returned} - {payout_id}):
        lock_payout(session, livemode, failed)
    if not shares and not returned:
        raise PayoutNotReported(f"no imported report of {source} carries payout {payout_id} yet")
    platform = service.platform_scope(livemode)
    if session.scalars(platform.select(Break, Break.dedupe_key == f"payout_failed:{payout_id}")).first() is not None:
        # Delivered after the payout's failure (Stripe does not promise the order): a failed payout stays failed.
        log.info("payout.paid of %s ignored: the payout failed before", payout_id)
        return []
    repaid = []
    for failed, failed_amount, failed_currency in returned:
        found = _repayable(session, livemode, source, failed, failed_amount, failed_currency, payout_id)
        if found is not None:
            repaid.append((failed, *found))
    total = sum(share.total for share in shares) + sum(sum(s.total for s in found) for _, _, found in repaid)
    currencies = {share.currency for share in shares} | {s.currency for _, _, found in repaid for s in found}
    posted = []
    if currencies != {currency} or total != amount:
        key = f"deposit:{payout_id}:{service._book(platform)}:paid"
        if _posted(session, platform, key):
            return []
        again = f" and the {len(returned)} failed payout(s) it pays again" if returned else ""
        service.open_break(session, platform, type_="deposit_mismatch", psp=PSP,
                           dedupe_key=f"deposit_mismatch:{payout_id}:{currency}", report_date=_day(
                               payout.get("arrival_date")), currency=currency, kassa_amount=total, psp_amount=amount,
                           batch_id=payout_id, now=now,
                           detail=f"Stripe paid out {amount} {currency} for batch {payout_id}, whose lines{again} "
                                  f"total {total}; the payout is in suspense until resolved.")
        if amount:
            legs = service.legs_from_changes({accounts.cash(currency): amount,
                                              accounts.suspense(PSP, currency): amount}, service._currency)
            posted.append(post_transaction(session, platform, key, "deposit", legs, hmac_key=hmac_key,
                                           reference=payout_id,
                                           description=f"Stripe payout {payout_id} differing from its batch").id)
        return posted
    moves = [(payout_id, share, "paid", f"Stripe payout {payout_id} paid (payout.paid)") for share in shares]
    for failed, row, found in repaid:
        moves += [(failed, share, f"repaid:{payout_id}",
                   f"Stripe payout {failed}, failed, paid again in {payout_id} (payout.paid)") for share in found]
        if row.status == "open":
            row.status, row.closed_at = "closed", now
            row.object_type, row.object_id = "payout", payout_id
    for batch, share, suffix, description in moves:
        scope = Scope(share.book, livemode)
        key = f"deposit:{batch}:{service._book(scope)}:{suffix}"
        if not share.total or _posted(session, scope, key):
            continue
        moved = service.deposit_share(session, scope, share, key, hmac_key=hmac_key, reference=payout_id,
                                      description=description)
        if moved is not None:
            posted.append(moved.id)
        else:  # a negative share its book's cash cannot give: left in clearing for an operator
            service.share_not_deposited(session, scope, share, batch, dedupe=suffix,
                                        report_date=_day(payout.get("arrival_date")), now=now)
    return posted


def _reversal_legs(session: Session, scope: Scope, business_keys: list[str]) -> list[Leg]:
    """The legs that undo every posting of ``business_keys`` in one book (netted per account)."""
    rows = session.execute(
        select(LedgerAccount.code, Entry.direction, Entry.amount, Entry.currency)
        .join(JournalTransaction, JournalTransaction.id == Entry.transaction_id)
        .join(LedgerAccount, LedgerAccount.id == Entry.account_id)
        .where(JournalTransaction.merchant_id == scope.merchant_id, JournalTransaction.livemode == scope.livemode,
               JournalTransaction.business_key.in_(business_keys),
               Entry.merchant_id == scope.merchant_id, Entry.livemode == scope.livemode)).all()
    net: dict[tuple[str, str], int] = {}
    for code, direction, amount, currency in rows:
        net[(code, currency)] = net.get((code, currency), 0) + (amount if direction == DEBIT else -amount)
    return [Leg(code, CREDIT if debited > 0 else DEBIT, abs(debited), currency)
            for (code, currency), debited in sorted(net.items()) if debited]


def reverse_paid(session: Session, *, livemode: bool, payout_id: str, books: list[str], hmac_key: bytes,
                 unreversed: list[str] | None = None) -> list[str]:
    """Undo what ``payout.paid`` moved for a payout, once per book (the ids of the transactions posted). A book whose
    ``cash`` no longer holds the money (spent since, and cash never goes negative) is left as it is and named in
    ``unreversed``: the failure's break says so and an operator resolves it by hand."""
    platform = service.platform_scope(livemode)
    # An accepted resolution of the payout's mismatch break moved the batch onwards (suspense and clearing to
    # cash): undone with it.
    resolved = [row.id for row in session.scalars(platform.select(
        Break, Break.batch_id == payout_id, Break.type == "deposit_mismatch",
        Break.dedupe_key.like("deposit_mismatch:%"), Break.resolution.in_(("accepted", "written_off"))))]
    posted = []
    for book in sorted(set(books) | {PLATFORM_MERCHANT_ID}):
        scope = Scope(book, livemode)
        key = f"deposit:{payout_id}:{service._book(scope)}:failed"
        if _posted(session, scope, key):
            continue
        legs = _reversal_legs(session, scope, [f"deposit:{payout_id}:{service._book(scope)}:paid",
                                               *(f"resolve:{break_id}" for break_id in resolved)])
        if not legs:
            continue
        try:
            posted.append(post_transaction(session, scope, key, "deposit", legs, hmac_key=hmac_key,
                                           reference=payout_id,
                                           description=f"Stripe payout {payout_id} failed after it was paid: "
                                                       "its deposit reversed (payout.failed)").id)
        except InsufficientBalance:  # nothing was written; the session is still usable (app/ledger/service.py)
            log.warning("payout %s failed after it was paid: the cash of %s no longer holds it; not reversed",
                        payout_id, service._book(scope))
            if unreversed is not None:
                unreversed.append(book)
    return posted


def payout_failed(session: Session, *, credential: str, livemode: bool, payout: dict, hmac_key: bytes,
                  now: datetime | None = None) -> str | None:
    """The payout did not reach the bank, or the bank returned it: what a ``payout.paid`` of it moved is reversed
    (money back to ``psp_clearing``), then a deposit_mismatch break (deposited 0); its id, None if filed before."""
    now = now or utcnow()
    payout_id, currency = payout["id"], (payout.get("currency") or "").upper()
    lock_payout(session, livemode, payout_id)
    shares = service.batch_shares(session, livemode, payout_id, source=source_of(credential))
    if not shares:
        raise PayoutNotReported(f"no imported report of {source_of(credential)} carries payout {payout_id} yet")
    unreversed: list[str] = []
    reversed_ = reverse_paid(session, livemode=livemode, payout_id=payout_id,
                             books=[share.book for share in shares], hmac_key=hmac_key, unreversed=unreversed)
    platform = service.platform_scope(livemode)
    if reversed_ and PLATFORM_MERCHANT_ID not in unreversed:
        # The paid event's own mismatch break (its money was in suspense, now reversed) gives way to this one.
        for stale in session.scalars(platform.select(Break, Break.batch_id == payout_id, Break.status == "open",
                                                     Break.dedupe_key.like("deposit_mismatch:%"))):
            stale.status, stale.closed_at = "closed", now
    why = " ".join(part for part in (payout.get("failure_code"), payout.get("failure_message")) if part)
    returned = (" after it was paid (the bank returned it): its deposit is reversed and the batch is back in "
                "psp_clearing" if reversed_ else "")
    if unreversed:
        returned += (f"{'' if reversed_ else ' after it was paid (the bank returned it)'}; the cash of "
                     f"{', '.join(unreversed)} no longer holds its share, so that deposit is NOT reversed: move it "
                     "back by hand")
    opened = service.open_break(
        session, platform, type_="deposit_mismatch", psp=PSP,
        dedupe_key=f"payout_failed:{payout_id}", report_date=_day(payout.get("arrival_date")), currency=currency,
        kassa_amount=sum(share.total for share in shares), psp_amount=0, batch_id=payout_id, now=now,
        detail=f"Stripe reports payout {payout_id} failed{returned} ({why or 'no reason given'}): "
               "the batch was not paid.")
    return opened.id if opened is not None else None


def stripe_payout(owner: CallbackOwner, payout_id: str) -> Lookup:
    """Ask Stripe for the payout with the owner's own credential (the platform's account, or the merchant's), through
    the running app's router: found, surely absent or unknown."""
    from flask import current_app

    from app.psp.router import router_for_app

    merchant_id = None if owner.credential == PLATFORM_CREDENTIAL else owner.merchant_id
    return router_for_app(current_app._get_current_object()).retrieve_payout(
        PSP, payout_id, merchant_id=merchant_id, livemode=owner.livemode, credential=owner.credential)


def on_payout_event(session: Session, event: CallbackEvent, owner: CallbackOwner) -> Recorded | None:
    """payout.paid / payout.failed of an admitted account: applied, as Stripe has the payout (never as the event's
    body says), when the account confirms deposits by payout events; nothing for an account whose bank statement
    confirms them."""
    from flask import current_app

    from app.ledger.integration import ledger_hmac_key
    from app.psp.stripe_keys import platform_stripe

    platform = platform_stripe(current_app.config, owner.livemode).deposit_confirmation
    if deposit_confirmation(session, owner, platform) != PAYOUT_EVENTS:
        log.info("payout event %s of %s ignored: the bank statement confirms its deposits", event.id, owner.credential)
        return Recorded(None)
    payout = confirmed_payout(session, event, owner, stripe_payout(owner, event.psp_reference))
    if payout is None:
        return Recorded(None)  # dropped (logged and audited): no psp.payout.* event of a payout Stripe denies
    if APPLIED_STATUSES[payout["status"]] == PAID:
        payout_paid(session, credential=owner.credential, livemode=owner.livemode, payout=payout,
                    hmac_key=ledger_hmac_key())
    else:
        payout_failed(session, credential=owner.credential, livemode=owner.livemode, payout=payout,
                      hmac_key=ledger_hmac_key())
    return None  # the callback's own psp.payout.* event is recorded in the owner's book


for _type in PAYOUT_TYPES:
    CALLBACK_HANDLERS[_type] = on_payout_event
if payout_owner not in REFERENCE_RESOLVERS:
    REFERENCE_RESOLVERS.insert(0, payout_owner)
