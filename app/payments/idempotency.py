"""Idempotent requests with Stripe's semantics, as atomic phases with recovery points (no Flask).

Modelled on brandur/rocket-rides-atomic. A request with an idempotency key runs as a chain of
*phases*. Each phase is one committed database transaction that does its work *and* moves the key's
``recovery_point`` forward, so a crash between phases leaves a key that says exactly where to resume;
the scheduled completer (``complete_stuck``) drives such keys to ``finished``, never repeating a phase
that committed. A phase may also wait first, outside any transaction (``Phase.wait``: confirm waiting
for the worker's outcome), holding neither a database connection nor a row lock. A new key is inserted
in the first phase's own transaction (before its work: a concurrent request with the same key waits at
the INSERT until that commits), so it exists exactly when the first phase committed.

Semantics (docs: API "Idempotency"):

* keys are scoped to merchant and mode and kept ``RETENTION`` (24 h), then reaped (``reap``);
* a retry with the same key and the same request replays the stored status and body exactly, the
  response as first returned (``processing`` included);
* the same key with a different request is 400 ``idempotency_error``;
* a retry while the first request still runs gets 409 (the key is locked);
* a request refused before any work (validation, or a state the machine forbids, raised in the first
  phase whose transaction then rolls back) is not stored: the key goes with the rollback (a key that
  was resumed is released) and may be used again;
* an unexpected error unlocks the key at its last recovery point, so a retry (or the completer)
  resumes from there.

The same entry point serves the API (``Idempotency-Key``), the checkout page (keys derived from the
session and its attempt number) and dashboard forms (one-time tokens). Without a key, the phases run
just the same, only nothing is stored.
"""
import hashlib
import json
import logging
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable

from sqlalchemy import bindparam, delete, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from app.ids import new_id
from app.models_base import utcnow
from app.payments.errors import IdempotencyInFlight, IdempotencyMismatch, PaymentError
from app.payments.models import IdempotencyKey
from app.scoping import Scope

log = logging.getLogger(__name__)

STARTED = "started"
FINISHED = "finished"

# Stripe keeps keys for 24 hours; after that the same key starts a new request.
RETENTION = timedelta(hours=24)
# A key locked longer than this belongs to a request that died (a crashed web process): requests take
# about 2 s (the confirm wait) plus a few short transactions, so a minute is far beyond a live one,
# yet short enough that the client's retry or the completer finishes the work soon.
LOCK_TIMEOUT = timedelta(seconds=60)
MAX_KEY_LENGTH = 255
# Completer and reaper batch sizes: small transactions that never hold many row locks at once.
COMPLETER_BATCH = 50
REAPER_BATCH = 1000


@dataclass(frozen=True)
class Response:
    """A request's answer: HTTP status and JSON body; ``replayed`` when it comes from the stored key."""

    status: int
    body: dict[str, Any]
    replayed: bool = False


@dataclass(frozen=True)
class Next:
    """A phase's result when more phases follow: the recovery point reached and state to carry on."""

    recovery_point: str
    state: dict[str, Any] = field(default_factory=dict)


@dataclass
class PhaseContext:
    """What a phase sees: its transaction's session, the book, the request and what earlier phases left."""

    session: Session
    scope: Scope
    params: dict[str, Any]
    state: dict[str, Any]
    deps: Any
    may_wait: bool = True          # False for the completer: never wait for a worker there
    key: str | None = None
    request_id: str | None = None
    waited: Any = None             # what the phase's wait returned (the worker's snapshot of the object)


@dataclass(frozen=True)
class Phase:
    """One atomic phase: ``run`` inside a transaction; ``wait`` (optional) before it, outside any.

    ``durable=False`` for a phase that only reads and stores the response: its commit may skip the
    WAL flush (synchronous_commit off), because a crash that loses it leaves the key at the previous,
    durable recovery point and the completer recomputes the same response from the database.
    """

    run: Callable[[PhaseContext], "Next | Response"]
    wait: Callable[[PhaseContext], Any] | None = None
    durable: bool = True


def relaxed_commit(session: Session) -> None:
    """Let this transaction's COMMIT return before its WAL is flushed to disk.

    Only for writes that are recoverable if lost in a crash: the next synchronous commit flushes them
    anyway (WAL is written in order), and on their own they change no money. Saves an fsync (often
    the largest cost of a small transaction) per use.
    """
    session.execute(text("SET LOCAL synchronous_commit = off"))


@dataclass(frozen=True)
class Operation:
    """A named idempotent operation: its phases keyed by the recovery point each starts from."""

    name: str
    phases: dict[str, Phase]


OPERATIONS: dict[str, Operation] = {}


def register(operation: Operation) -> Operation:
    """Make an operation known to the completer (it resumes keys by operation name)."""
    if STARTED not in operation.phases:
        raise ValueError(f"operation {operation.name} has no {STARTED!r} phase")
    OPERATIONS[operation.name] = operation
    return operation


@dataclass(frozen=True)
class _Held:
    """A key this request holds, as ``_drive`` needs it: read from the row while it was locked anyway,
    so that driving it does not take a transaction just to read the row again."""

    key_id: str
    operation: str
    recovery_point: str
    state: dict[str, Any]
    scope: Scope
    params: dict[str, Any]
    key: str
    request_id: str | None
    # Inserted by this request in the transaction still open: the first phase runs in that transaction,
    # so a refusal or a crash before its commit leaves no key behind.
    fresh: bool = False

    @classmethod
    def of(cls, row: IdempotencyKey) -> "_Held":
        return cls(row.id, row.operation, row.recovery_point, dict(row.state), Scope(row.merchant_id, row.livemode),
                   dict(row.request_params), row.key, row.request_id)


_KEYS = IdempotencyKey.__table__


def _bound(*names: str) -> dict:
    return {name: bindparam(name, type_=_KEYS.c[name].type) for name in names}


# The statements of every keyed request, built once as Core statements of the table: building and
# cache-keying them per request, or running them through the ORM, costs more CPU than running them.
_INSERT_KEY = (
    insert(_KEYS)
    .values(_bound("id", "merchant_id", "livemode", "key", "operation", "request_method", "request_path",
                   "request_params", "request_fingerprint", "recovery_point", "state", "locked_at", "locked_by",
                   "request_id", "created_at", "last_run_at"))
    .on_conflict_do_nothing(index_elements=["merchant_id", "livemode", "key"])
    .returning(_KEYS.c.id))
_HELD_BY_US = update(_KEYS).where(
    _KEYS.c.id == bindparam("key_id"), _KEYS.c.locked_by == bindparam("token"),
    _KEYS.c.recovery_point == bindparam("point")).returning(_KEYS.c.id)
_ADVANCE_KEY = _HELD_BY_US.values(_bound("recovery_point", "state", "last_run_at"))
_FINISH_KEY = _HELD_BY_US.values(recovery_point=FINISHED, locked_at=None, locked_by=None,
                                 **_bound("response_status", "response_body", "finished_at", "last_run_at"))


def fingerprint(operation: str, target: str, params: dict[str, Any]) -> str:
    """SHA-256 of the canonical request: operation, target path and parameters (key order ignored)."""
    canonical = json.dumps({"op": operation, "target": target, "params": params},
                           sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def execute(session: Session, scope: Scope, operation: Operation | str, params: dict[str, Any], *,
            key: str | None, deps: Any, method: str = "POST", path: str = "",
            request_id: str | None = None, may_wait: bool = True, now: datetime | None = None) -> Response:
    """Run ``operation`` for ``params`` at most once per ``key``; returns the (stored or fresh) response.

    Owns its transactions: ``session`` must have none open that the caller still needs (each phase
    commits). PaymentError raised in the first phase propagates and nothing is stored; IdempotencyMismatch
    and IdempotencyInFlight are raised for a reused key with another request or one still in flight.
    """
    op = OPERATIONS[operation] if isinstance(operation, str) else operation
    session.commit()  # start from a clean transaction boundary (reads done so far are not work)
    if key is None:
        return _drive_transient(session, scope, op, params, deps, request_id, may_wait)
    if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY_LENGTH:
        raise PaymentError(f"Idempotency keys are 1 to {MAX_KEY_LENGTH} characters.",
                           param="Idempotency-Key", code="idempotency_key_invalid")
    token = secrets.token_hex(16)
    claimed = _claim(session, scope, op, key, params, method, path, token, request_id, now or utcnow())
    if isinstance(claimed, Response):
        return claimed
    return _drive(session, claimed, token, deps, may_wait)


def _claim(session: Session, scope: Scope, op: Operation, key: str, params: dict[str, Any], method: str,
           path: str, token: str, request_id: str | None, now: datetime) -> "_Held | Response":
    """Phase zero, its own transaction: insert the key locked by us, or judge the existing one.

    INSERT ... ON CONFLICT DO NOTHING makes concurrent first requests safe: the unique index lets one
    insert win; the others wait for its commit, insert nothing and then read the committed row FOR
    UPDATE, which also serialises them against a concurrent lock takeover.
    """
    print_ = fingerprint(op.name, path, params)
    try:
        inserted = session.execute(_INSERT_KEY, dict(
            id=new_id("idk"), merchant_id=scope.merchant_id, livemode=scope.livemode, key=key,
            operation=op.name, request_method=method, request_path=path, request_params=params,
            request_fingerprint=print_, recovery_point=STARTED, state={}, locked_at=now,
            locked_by=token, request_id=request_id, created_at=now, last_run_at=now,
        )).scalar_one_or_none()
        if inserted is not None:
            # Not committed: the first phase goes on in this transaction (a concurrent request with the
            # key waits at its INSERT until then). The params go through JSON as the stored copy did, so
            # the phases see exactly what a resumed request (the completer, a retry) reads back.
            return _Held(inserted, op.name, STARTED, {}, scope, json.loads(json.dumps(params)), key, request_id,
                         fresh=True)
        # What follows changes no money: a crash that loses it leaves the key as it was before.
        relaxed_commit(session)
        row = session.scalars(select(IdempotencyKey).where(
            IdempotencyKey.merchant_id == scope.merchant_id, IdempotencyKey.livemode == scope.livemode,
            IdempotencyKey.key == key).with_for_update()).one_or_none()
        if row is None:
            # The conflicting request was refused before any work and released its key in between:
            # the key is free again, so this request claims it afresh.
            session.rollback()
            return _claim(session, scope, op, key, params, method, path, token, request_id, now)
        if row.created_at < now - RETENTION:
            # Expired but not yet reaped: the key starts afresh, as if it had been reaped.
            session.delete(row)
            session.flush()
            session.commit()
            return _claim(session, scope, op, key, params, method, path, token, request_id, now)
        if row.request_fingerprint != print_:
            raise IdempotencyMismatch(
                "Keys for idempotent requests can only be used with the same parameters they were first "
                "used with. Try a different key if you meant to execute a different request.",
                param="Idempotency-Key")
        if row.recovery_point == FINISHED:
            response = Response(row.response_status, row.response_body, replayed=True)
            session.commit()
            return response
        if row.locked_at is not None and row.locked_at > now - LOCK_TIMEOUT:
            raise IdempotencyInFlight(
                "A request with this idempotency key is still being processed; retry in a moment.",
                param="Idempotency-Key")
        # Unlocked (an earlier try failed unexpectedly) or its lock is stale (that request died):
        # this retry takes over and resumes from the recovery point.
        row.locked_at, row.locked_by, row.last_run_at = now, token, now
        held = _Held.of(row)  # before the commit expires the row's attributes
        session.commit()
        return held
    except BaseException:
        session.rollback()
        raise


def _drive(session: Session, held: "_Held | str", token: str, deps: Any, may_wait: bool) -> Response:
    """Run the key's remaining phases, one committed transaction each, until a response is stored.

    ``held``: the key as _claim saw it, or the id of a key to read first (the completer).
    """
    if isinstance(held, str):
        row = session.get(IdempotencyKey, held)
        if row.recovery_point == FINISHED:
            response = Response(row.response_status, row.response_body)
            session.commit()
            return response
        held = _Held.of(row)
        session.commit()  # end the read above: nothing may be held open while a phase waits
    key_id, op = held.key_id, OPERATIONS[held.operation]
    point, state, scope = held.recovery_point, held.state, held.scope
    request = (held.params, held.key, held.request_id)
    fresh = held.fresh  # the key's INSERT is still uncommitted, in the first phase's transaction
    while True:
        ctx = PhaseContext(session=session, scope=scope, params=dict(request[0]), state=dict(state), deps=deps,
                           may_wait=may_wait, key=request[1], request_id=request[2])
        phase = op.phases[point]
        if phase.wait is not None and may_wait:
            ctx.waited = phase.wait(ctx)
        try:
            if not phase.durable:
                relaxed_commit(session)
            result = phase.run(ctx)
            now = utcnow()
            held = {"key_id": key_id, "token": token, "point": point, "last_run_at": now}
            # The phase commits only if this request still holds the key at the point it started from:
            # a retry or the completer that took the key over meanwhile wins, and this phase's work is
            # rolled back. The key row is locked last (after the payment row), as everywhere else.
            if isinstance(result, Response):
                held_still = session.execute(_FINISH_KEY, {**held, "response_status": result.status,
                                                           "response_body": result.body, "finished_at": now}).first()
            else:
                state = {**state, **result.state}
                held_still = session.execute(_ADVANCE_KEY, {**held, "recovery_point": result.recovery_point,
                                                            "state": state}).first()
            if held_still is None:
                raise _taken_over()
            session.commit()
        except IdempotencyInFlight:
            session.rollback()
            raise
        except PaymentError as error:
            session.rollback()
            # A phase takes the key row only at its end, so a refusal may come from state that a request
            # which took the key over (this one having outlived LOCK_TIMEOUT) has already moved on: then
            # the key's answer is that request's, and this one is told to retry for it.
            if point == STARTED:
                # Refused before any work: nothing is stored (a fresh key went with the rollback).
                if not fresh and not _release(session, key_id, token):
                    raise _taken_over() from error
                raise
            # Work was committed by an earlier phase: the refusal is this request's answer, stored.
            response = _finish_with(session, key_id, token, Response(error.status, error.to_dict()))
            if response is None:
                raise _taken_over() from error
            return response
        except BaseException:
            session.rollback()
            if not fresh:
                _unlock(session, key_id, token)
            raise
        if isinstance(result, Response):
            return result
        point, fresh = result.recovery_point, False


def _drive_transient(session: Session, scope: Scope, op: Operation, params: dict[str, Any], deps: Any,
                     request_id: str | None, may_wait: bool) -> Response:
    """The same phases without a key: each still commits on its own, nothing is stored."""
    point, state = STARTED, {}
    while True:
        ctx = PhaseContext(session=session, scope=scope, params=dict(params), state=dict(state), deps=deps,
                           may_wait=may_wait, request_id=request_id)
        phase = op.phases[point]
        if phase.wait is not None and may_wait:
            ctx.waited = phase.wait(ctx)
        try:
            result = phase.run(ctx)
            session.commit()
        except PaymentError as error:
            session.rollback()
            if point == STARTED:
                raise
            return Response(error.status, error.to_dict())
        except BaseException:
            session.rollback()
            raise
        if isinstance(result, Response):
            return result
        point, state = result.recovery_point, {**state, **result.state}


def _taken_over() -> IdempotencyInFlight:
    return IdempotencyInFlight("Another request took over this idempotency key; retry to get its result.",
                               param="Idempotency-Key")


def _release(session: Session, key_id: str, token: str) -> bool:
    """Delete a key whose request did nothing, so that it is not stored, if we still own it.

    False when another request took the key over (it is there, not ours to delete). A failed delete
    counts as released: the completer deletes stale started keys anyway.
    """
    try:
        deleted = session.execute(delete(IdempotencyKey).where(
            IdempotencyKey.id == key_id, IdempotencyKey.locked_by == token,
            IdempotencyKey.recovery_point == STARTED)).rowcount
        held = deleted > 0 or session.scalar(select(IdempotencyKey.id).where(IdempotencyKey.id == key_id)) is None
        session.commit()
        return held
    except Exception:  # noqa: BLE001 - the completer deletes stale started keys anyway
        session.rollback()
        log.exception("could not release idempotency key %s", key_id)
        return True


def _unlock(session: Session, key_id: str, token: str) -> None:
    """Unlock a key at its recovery point after an unexpected error, so a retry can resume at once."""
    try:
        session.execute(update(IdempotencyKey).where(IdempotencyKey.id == key_id, IdempotencyKey.locked_by == token)
                        .values(locked_at=None, locked_by=None))
        session.commit()
    except Exception:  # noqa: BLE001 - the lock then simply times out (LOCK_TIMEOUT)
        session.rollback()
        log.exception("could not unlock idempotency key %s", key_id)


def _finish_with(session: Session, key_id: str, token: str, response: Response) -> Response | None:
    """Store ``response`` as the key's answer; None when another request took the key over."""
    now = utcnow()
    stored = session.execute(
        update(IdempotencyKey).where(IdempotencyKey.id == key_id, IdempotencyKey.locked_by == token)
        .values(recovery_point=FINISHED, response_status=response.status, response_body=response.body,
                locked_at=None, locked_by=None, finished_at=now, last_run_at=now)).rowcount
    session.commit()
    return response if stored else None


def complete_stuck(session: Session, deps: Any, *, now: datetime | None = None,
                   batch: int = COMPLETER_BATCH) -> list[str]:
    """The completer: finish keys left between phases by a request that died; returns the keys' ids.

    A key still at ``started`` did no work (its first phase never committed): it is deleted, as a
    request refused before work would be. Any other unfinished key whose lock is free or stale is taken
    over and driven to ``finished`` without waiting for workers, so its stored response is whatever the
    state is then. FOR UPDATE SKIP LOCKED lets several completers (or a live retry) run side by side.
    """
    now = now or utcnow()
    stale = now - LOCK_TIMEOUT
    rows = session.scalars(
        select(IdempotencyKey)
        .where(IdempotencyKey.recovery_point != FINISHED, IdempotencyKey.last_run_at < stale,
               (IdempotencyKey.locked_at.is_(None)) | (IdempotencyKey.locked_at < stale))
        .order_by(IdempotencyKey.last_run_at).limit(batch).with_for_update(skip_locked=True)
    ).all()
    claimed: list[tuple[str, str]] = []
    for row in rows:
        if row.recovery_point == STARTED:
            session.delete(row)
            continue
        token = secrets.token_hex(16)
        row.locked_at, row.locked_by, row.last_run_at = now, token, now
        claimed.append((row.id, token))
    session.commit()
    done = []
    for key_id, token in claimed:
        try:
            _drive(session, key_id, token, deps, may_wait=False)
            done.append(key_id)
        except Exception:  # noqa: BLE001 - one broken key must not stop the sweep; it is retried later
            log.exception("completer could not finish idempotency key %s", key_id)
    return done


def reap(session: Session, *, now: datetime | None = None, batch: int = REAPER_BATCH) -> int:
    """The reaper: delete keys older than RETENTION, in small batches; returns how many."""
    cutoff = (now or utcnow()) - RETENTION
    total = 0
    while True:
        ids = select(IdempotencyKey.id).where(IdempotencyKey.created_at < cutoff).limit(batch) \
            .with_for_update(skip_locked=True).scalar_subquery()
        count = session.execute(delete(IdempotencyKey).where(IdempotencyKey.id.in_(ids))).rowcount
        session.commit()
        total += count
        if count < batch:
            return total
