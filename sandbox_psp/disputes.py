"""Disputes at the sandbox acquirer: how they open, take evidence, get decided, escalate, close or are withdrawn.

Plain functions over a SQLite connection (inside the caller's transaction) and a sandbox time ``now``, like
``operations``. Statuses and reason codes are Stripe's. The lifecycle (API.md, "Disputes"):

* A dispute card's capture opens a dispute one sandbox day later (``open_due_disputes``); an admin call
  opens one on any captured authorization (``open_on_request``). A chargeback takes the disputed amount
  and the DISPUTE_FEE at once (``withdrawn_at``); an inquiry (``warning_*``) takes nothing.
* Evidence is due EVIDENCE_DAYS after opening (``due_by``); it is taken once (``submit_evidence``, refused
  after ``due_by``), which puts the dispute under review, decided ``decision_days`` later
  (``decide_due``): won if the uncategorized text contains ``winning_evidence``, lost if it contains
  ``losing_evidence``, otherwise won when the evidence includes at least one file and lost when it is text
  only. An inquiry "won" closes (``warning_closed``); "lost", it becomes a chargeback.
* Nobody answering: a chargeback is lost ``decision_days`` after its ``due_by``; an inquiry becomes a
  chargeback then.
* The merchant may accept instead (``accept``): a chargeback is lost, an inquiry closes.
* The issuer may withdraw it (``withdraw``): a chargeback is won (its amount reinstated), an inquiry closes.
* Refunding an inquiry's payment in full closes the inquiry (``close_inquiries_refunded``); a payment whose
  funds a chargeback withdrew cannot be refunded (``blocks_refunds``).

Won disputes give the disputed amount back (``reinstated_at``); the fee stays with the acquirer. Every change
sends ``dispute.created``, ``dispute.updated`` or ``dispute.closed`` with the dispute object.
"""
import json

from . import callbacks
from .operations import SandboxError, _load_authorization, new_id

DAY = 86400
# A dispute opens this long (sandbox clock) after a dispute card is captured.
DISPUTE_DELAY_SECONDS = DAY
# Card networks give merchants at least about a week to answer; Stripe shows the issuer's deadline.
EVIDENCE_DAYS = 7
# How long the issuer takes to decide after evidence arrives, unless --dispute-decision-days says otherwise.
DEFAULT_DECISION_DAYS = 2
# The acquirer keeps this flat fee per chargeback, won or lost (the 15.00 of ARCHITECTURE.md); the same number
# of minor units in every currency keeps the sandbox simple.
DISPUTE_FEE = 1500
# Stripe's limit on the text of one evidence submission.
EVIDENCE_TEXT_MAX = 150_000
WINNING = "winning_evidence"
LOSING = "losing_evidence"
# Card outcomes that open a dispute after capture: (reason, inquiry).
DISPUTE_CARDS = {
    "dispute": ("fraudulent", False),
    "dispute_product_not_received": ("product_not_received", False),
    "inquiry": ("general", True),
}
REASONS = ("fraudulent", "product_not_received", "duplicate", "credit_not_processed", "subscription_canceled",
           "product_unacceptable", "unrecognized", "general")
AWAITING = ("needs_response", "warning_needs_response")
UNDER_REVIEW = ("under_review", "warning_under_review")
INQUIRY_OPEN = ("warning_needs_response", "warning_under_review")
CHARGEBACK_OPEN = ("needs_response", "under_review")


def dispute_object(row) -> dict:
    """The dispute object of API.md (Stripe's shape, the sandbox's fields)."""
    evidence = json.loads(row["evidence"]) if row["evidence"] else {}
    movements = []
    if row["withdrawn_at"] is not None:
        movements.append({"type": "dispute", "amount": -row["amount"], "fee": row["fee"], "currency": row["currency"],
                          "created": row["withdrawn_at"]})
    if row["reinstated_at"] is not None:
        movements.append({"type": "dispute_reversal", "amount": row["amount"], "fee": 0, "currency": row["currency"],
                          "created": row["reinstated_at"]})
    return {
        "id": row["id"],
        "acquirer": row["acquirer"],
        "authorization": row["authorization_id"],
        "amount": row["amount"],
        "currency": row["currency"],
        "reason": row["reason"],
        "status": row["status"],
        "created": row["created"],
        "evidence": evidence,
        "evidence_details": {
            "due_by": row["due_by"],
            "has_evidence": bool(evidence),
            "past_due": bool(row["evidence_submitted_at"] and row["due_by"] and row["evidence_submitted_at"] > row["due_by"]),
            "submission_count": row["submission_count"],
        },
        "is_charge_refundable": row["status"] in INQUIRY_OPEN,
        "balance_transactions": movements,
        "closed_at": row["closed_at"],
    }


def _row(conn, dispute_id: str, acquirer: str | None = None):
    row = conn.execute("SELECT * FROM disputes WHERE id = ?", (dispute_id,)).fetchone()
    if row is None or (acquirer is not None and row["acquirer"] != acquirer):
        raise SandboxError(404, "not_found", "No such dispute.", "id")
    return row


def _announce(conn, type_: str, dispute_id: str, now: int) -> dict:
    dispute = dispute_object(_row(conn, dispute_id))
    callbacks.enqueue(conn, type_, dispute, now)
    return dispute


def get_dispute(conn, acquirer: str, dispute_id: str) -> dict:
    """A dispute object of this acquirer; 404 if unknown."""
    return dispute_object(_row(conn, dispute_id, acquirer))


def list_disputes(conn, acquirer: str, authorization_id: str | None = None) -> list[dict]:
    """Disputes of this acquirer, oldest first, optionally for one authorization."""
    sql = "SELECT * FROM disputes WHERE acquirer = ?"
    args: list = [acquirer]
    if authorization_id:
        sql += " AND authorization_id = ?"
        args.append(authorization_id)
    return [dispute_object(row) for row in conn.execute(sql + " ORDER BY created, id", args).fetchall()]


# ---------------------------------------------------------------- opening


def _open(conn, auth, reason: str, inquiry: bool, created: int, now: int, amount: int | None = None,
          announce: bool = True) -> dict:
    if conn.execute("SELECT 1 FROM disputes WHERE authorization_id = ?", (auth["id"],)).fetchone():
        raise SandboxError(400, "invalid_state", "This authorization is already disputed.")
    left = auth["captured_amount"] - auth["refunded_amount"]
    amount = left if amount is None else amount
    if amount <= 0 or amount > left:
        raise SandboxError(400, "amount_too_large", f"Only {left} minor units can be disputed.", "amount")
    dispute_id = new_id("dp")
    conn.execute(
        "INSERT INTO disputes (id, acquirer, authorization_id, amount, currency, reason, status, created, due_by, "
        "withdrawn_at, fee, submission_count) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)",
        (dispute_id, auth["acquirer"], auth["id"], amount, auth["currency"], reason,
         "warning_needs_response" if inquiry else "needs_response", created, created + EVIDENCE_DAYS * DAY,
         None if inquiry else created, 0 if inquiry else DISPUTE_FEE))
    if not announce:
        return dispute_object(_row(conn, dispute_id))
    return _announce(conn, "dispute.created", dispute_id, now)


def open_due_disputes(conn, now: int) -> list[dict]:
    """Open the disputes of dispute cards that fell due by ``now``; ``dispute.created`` for each.

    A dispute card's dispute is for what is captured and not refunded, dated one sandbox day after the
    capture (not "now"), so that a clock jumped several days still files it on the right settlement day.
    """
    outcomes = tuple(DISPUTE_CARDS)
    rows = conn.execute(
        f"SELECT * FROM authorizations a WHERE a.outcome IN ({', '.join('?' * len(outcomes))}) "
        "AND a.captured_at IS NOT NULL AND a.captured_at + ? <= ? AND a.captured_amount > a.refunded_amount "
        "AND NOT EXISTS (SELECT 1 FROM disputes d WHERE d.authorization_id = a.id) ORDER BY a.captured_at",
        (*outcomes, DISPUTE_DELAY_SECONDS, now),
    ).fetchall()
    opened = []
    for auth in rows:
        reason, inquiry = DISPUTE_CARDS[auth["outcome"]]
        opened.append(_open(conn, auth, reason, inquiry, auth["captured_at"] + DISPUTE_DELAY_SECONDS, now))
    return opened


def open_on_request(conn, params: dict, now: int) -> dict:
    """Open a dispute now on a captured authorization (admin): ``{"authorization", "reason"?, "inquiry"?,
    "amount"?}``; the amount defaults to what is captured and not refunded."""
    auth = _load_authorization(conn, None, params.get("authorization") or "")
    if auth["captured_at"] is None:
        raise SandboxError(400, "invalid_state", "Only a captured authorization can be disputed.")
    reason = params.get("reason", "fraudulent")
    if reason not in REASONS:
        raise SandboxError(400, "invalid_request", f"reason must be one of {', '.join(REASONS)}", "reason")
    inquiry = params.get("inquiry", False)
    amount = params.get("amount")
    if not isinstance(inquiry, bool) or (amount is not None and (isinstance(amount, bool) or not isinstance(amount, int))):
        raise SandboxError(400, "invalid_request", "inquiry must be a boolean and amount an integer")
    return _open(conn, auth, reason, inquiry, now, now, amount)


def open_unannounced(conn, authorization_id: str, created: int) -> dict:
    """The ``missed_dispute`` settlement fault: a chargeback on a captured authorization whose notice is never
    sent (no callback), so that only the settlement report of its day tells; the authorization's dispute if it has
    one already (nothing changes then)."""
    row = conn.execute("SELECT * FROM disputes WHERE authorization_id = ?", (authorization_id,)).fetchone()
    if row is not None:
        return dispute_object(row)
    auth = _load_authorization(conn, None, authorization_id)
    if auth["captured_at"] is None:
        raise SandboxError(400, "invalid_state", "Only a captured authorization can be disputed.")
    return _open(conn, auth, "fraudulent", False, created, created, announce=False)


# ---------------------------------------------------------------- the merchant's answer


def submit_evidence(conn, acquirer: str, dispute_id: str, params: dict, now: int, decision_days: int) -> dict:
    """Take the evidence once (``{"evidence": {field: text or {"file", "type", "size", "sha256"}}}``): the
    dispute goes under review and is decided ``decision_days`` later. Refused after ``due_by``."""
    row = _row(conn, dispute_id, acquirer)
    if row["status"] not in AWAITING:
        raise SandboxError(400, "invalid_state", f"The dispute is {row['status']}; it takes no evidence.",
                           current_status=row["status"])
    if row["due_by"] is not None and now > row["due_by"]:
        raise SandboxError(400, "past_due", "The deadline to respond to this dispute has passed.", "evidence")
    evidence = params.get("evidence")
    if not isinstance(evidence, dict) or not evidence:
        raise SandboxError(400, "invalid_request", "evidence must be a non-empty object", "evidence")
    text = 0
    for name, value in evidence.items():
        if isinstance(value, str):
            text += len(value)
        elif not (isinstance(value, dict) and isinstance(value.get("file"), str)):
            raise SandboxError(400, "invalid_request", f"evidence[{name}] must be text or a file", f"evidence[{name}]")
    if text > EVIDENCE_TEXT_MAX:
        raise SandboxError(400, "evidence_too_long", f"The evidence has {text} characters; the most is "
                           f"{EVIDENCE_TEXT_MAX}.", "evidence")
    status = "warning_under_review" if row["status"] == "warning_needs_response" else "under_review"
    conn.execute("UPDATE disputes SET status = ?, evidence = ?, evidence_submitted_at = ?, decision_at = ?, "
                 "submission_count = submission_count + 1 WHERE id = ?",
                 (status, json.dumps(evidence), now, now + decision_days * DAY, dispute_id))
    return _announce(conn, "dispute.updated", dispute_id, now)


def accept(conn, acquirer: str, dispute_id: str, now: int) -> dict:
    """The merchant accepts (Stripe's close): a chargeback is lost, an inquiry closes."""
    row = _row(conn, dispute_id, acquirer)
    if row["status"] not in AWAITING:
        raise SandboxError(400, "invalid_state", f"The dispute is {row['status']}; it can no longer be accepted.",
                           current_status=row["status"])
    return _close(conn, row, "warning_closed" if row["status"] == "warning_needs_response" else "lost", now)


# ---------------------------------------------------------------- the issuer


def _close(conn, row, status: str, now: int) -> dict:
    reinstated = now if status == "won" and row["withdrawn_at"] is not None else None
    conn.execute("UPDATE disputes SET status = ?, closed_at = ?, reinstated_at = ?, decision_at = NULL WHERE id = ?",
                 (status, now, reinstated, row["id"]))
    return _announce(conn, "dispute.closed", row["id"], now)


def _escalate(conn, row, now: int) -> dict:
    conn.execute("UPDATE disputes SET status = 'needs_response', withdrawn_at = ?, fee = ?, due_by = ?, "
                 "evidence_submitted_at = NULL, decision_at = NULL WHERE id = ?",
                 (now, DISPUTE_FEE, now + EVIDENCE_DAYS * DAY, row["id"]))
    return _announce(conn, "dispute.updated", row["id"], now)


def decision(evidence: dict) -> bool:
    """Whether evidence wins: the test words first, then "at least one file" (API.md)."""
    text = evidence.get("uncategorized_text") or ""
    if WINNING in text:
        return True
    if LOSING in text:
        return False
    return any(isinstance(value, dict) for value in evidence.values())


def decide_due(conn, now: int, decision_days: int) -> list[dict]:
    """Decide what fell due by ``now``: reviews whose decision day came, and disputes nobody answered."""
    changed = []
    for row in conn.execute(f"SELECT * FROM disputes WHERE status IN ({_marks(UNDER_REVIEW)}) AND decision_at <= ? "
                            "ORDER BY decision_at, id", (*UNDER_REVIEW, now)).fetchall():
        won = decision(json.loads(row["evidence"] or "{}"))
        if row["status"] == "warning_under_review":
            changed.append(_close(conn, row, "warning_closed", now) if won else _escalate(conn, row, now))
        else:
            changed.append(_close(conn, row, "won" if won else "lost", now))
    for row in conn.execute(f"SELECT * FROM disputes WHERE status IN ({_marks(AWAITING)}) AND due_by + ? <= ? "
                            "ORDER BY due_by, id", (*AWAITING, decision_days * DAY, now)).fetchall():
        if row["status"] == "warning_needs_response":
            changed.append(_escalate(conn, row, now))
        else:
            changed.append(_close(conn, row, "lost", now))
    return changed


def _marks(values) -> str:
    return ", ".join("?" * len(values))


def close_on_request(conn, dispute_id: str, status: str, now: int) -> dict:
    """Decide a dispute at once (admin): ``won`` or ``lost`` for a chargeback, ``warning_closed`` for an inquiry."""
    row = _row(conn, dispute_id)
    allowed = {"won": CHARGEBACK_OPEN, "lost": CHARGEBACK_OPEN, "warning_closed": INQUIRY_OPEN}
    if status not in allowed:
        raise SandboxError(400, "invalid_request", "status must be won, lost or warning_closed", "status")
    if row["status"] not in allowed[status]:
        raise SandboxError(400, "invalid_state", f"The dispute is {row['status']}; it cannot become {status}.",
                           current_status=row["status"])
    return _close(conn, row, status, now)


def escalate(conn, dispute_id: str, now: int) -> dict:
    """An inquiry becomes a chargeback (admin): funds and fee withdrawn, a new deadline."""
    row = _row(conn, dispute_id)
    if row["status"] not in INQUIRY_OPEN:
        raise SandboxError(400, "invalid_state", f"The dispute is {row['status']}; only open inquiries escalate.",
                           current_status=row["status"])
    return _escalate(conn, row, now)


def withdraw(conn, dispute_id: str, now: int) -> dict:
    """The issuer withdraws the dispute (admin): a chargeback is won, an inquiry closes."""
    row = _row(conn, dispute_id)
    if row["status"] in CHARGEBACK_OPEN:
        return _close(conn, row, "won", now)
    if row["status"] in INQUIRY_OPEN:
        return _close(conn, row, "warning_closed", now)
    raise SandboxError(400, "invalid_state", f"The dispute is already {row['status']}.", current_status=row["status"])


# ---------------------------------------------------------------- refunds


def blocks_refunds(conn, authorization_id: str) -> bool:
    """Whether a chargeback holds this authorization's funds (withdrawn and not given back)."""
    return conn.execute("SELECT 1 FROM disputes WHERE authorization_id = ? AND withdrawn_at IS NOT NULL "
                        "AND reinstated_at IS NULL", (authorization_id,)).fetchone() is not None


def close_inquiries_refunded(conn, authorization_id: str, now: int) -> None:
    """An open inquiry of an authorization refunded in full closes (refunding is the usual way to end one)."""
    auth = conn.execute("SELECT captured_amount, refunded_amount FROM authorizations WHERE id = ?",
                        (authorization_id,)).fetchone()
    if auth is None or auth["refunded_amount"] < auth["captured_amount"]:
        return
    for row in conn.execute(f"SELECT * FROM disputes WHERE authorization_id = ? AND status IN ({_marks(INQUIRY_OPEN)})",
                            (authorization_id, *INQUIRY_OPEN)).fetchall():
        _close(conn, row, "warning_closed", now)
