"""The payments service: sellers, create / confirm / capture / cancel, refunds (no Flask).

Every write is an idempotent ``Operation`` (app/payments/idempotency.py) made of atomic phases: the
API, the checkout page and dashboard forms call ``idempotency.execute(..., "payment.confirm", params,
key=...)`` and get the same semantics. The first phase validates, takes the payment's row lock and does
all database work in one transaction (state move + Event + attempt row + job staged after commit);
the PSP call itself happens in a worker (app/jobs/payments.py), never under a row lock. The last
phase waits (outside any transaction) up to ``confirm_wait_seconds`` for the worker's outcome and
answers with the payment as it is then.

Parameters arrive as plain dicts of already type-checked values (the API checks types with
app.api.params; checkout and dashboard build them directly); this module checks the domain rules.

Lock order, everywhere in payments: payment row -> its attempts, orders and refunds -> ledger accounts
(the ledger locks those in sorted order itself) -> idempotency key row (a phase locks it last, with
the UPDATE that records its recovery point; claims and takeovers lock it alone). Holding the payment row
``FOR UPDATE`` makes each check-then-act (status, capturable and refundable amounts) atomic under
READ COMMITTED without needing SERIALIZABLE retries.
"""
import json
import ipaddress
import logging
import re
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from app import pan
from app.events import record_event
from app.ids import new_id
from app.merchants.lifecycle import refuse_if_suspended
from app.money import MoneyError, allocate, normalize_currency
from app.payments import idempotency, state
from app.payments.deps import PaymentsDeps
from app.payments.errors import AmountTooLarge, InvalidRequest, InvalidTransition, NotFound
from app.payments.idempotency import STARTED, Next, Operation, Phase, PhaseContext, Response
from app.payments.models import (
    AttemptOperation,
    AttemptStatus,
    CaptureMethod,
    Payment,
    PaymentAttempt,
    PaymentOrder,
    PaymentStatus,
    PaymentTokenBinding,
    Refund,
    RefundStatus,
    Seller,
)
from app.payments.serializers import payment_object, refund_object, seller_object
from app.psp.wire import WireError
from app.redis_health import log_level_for
from app.scoping import Scope

log = logging.getLogger(__name__)
T = TypeVar("T")

# Stripe's ceiling for one payment (eight digits of minor units); it also keeps sums far from bigint limits.
MAX_AMOUNT = 99_999_999
# A split names at most this many sellers: a marketplace basket, not a payroll.
MAX_SPLIT_SELLERS = 50
METADATA_MAX_KEYS = 50
METADATA_KEY_MAX = 40
METADATA_VALUE_MAX = 500
CANCELLATION_REASONS = ("duplicate", "fraudulent", "requested_by_customer", "abandoned")
# Reasons only Kassa itself gives (the expiry sweep), never accepted from a client.
SYSTEM_CANCELLATION_REASONS = ("expired",)
REFUND_REASONS = ("duplicate", "fraudulent", "requested_by_customer")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_URL = re.compile(r"^https?://[^\s]+$")
OUTCOME_KEY = "kassa:payments:outcome:{}"
# Outcome notifications outlive any waiter (at most a few seconds) and then vanish by themselves.
OUTCOME_TTL_SECONDS = 60
# BLPOP must return before the blocking Redis client's 5 s socket timeout (app/extensions.py).
MAX_WAIT_SECONDS = 4.0


# -- waiting for the worker ------------------------------------------------------------------------------

def outcome_key(object_id: str) -> str:
    """Redis list a job pushes to once the outcome of an attempt or refund is committed."""
    return OUTCOME_KEY.format(object_id)


def notify_outcome(redis, object_ids: list[str], snapshot: dict[str, Any] | None = None) -> None:
    """Wake whoever waits for these attempts or refunds; call only after the commit (best effort).

    ``snapshot``: the object as the committed outcome left it, handed to the waiter (see wait_for_outcome).
    """
    if redis is None or not object_ids:
        return
    message = json.dumps(snapshot) if snapshot is not None else "1"
    try:
        pipe = redis.pipeline(transaction=False)
        for object_id in object_ids:
            pipe.rpush(outcome_key(object_id), message)
            pipe.expire(outcome_key(object_id), OUTCOME_TTL_SECONDS)
        pipe.execute()
    except Exception as error:  # noqa: BLE001 - a lost wake-up only means the waiter answers `processing`
        log.log(log_level_for(error), "could not publish payment outcome", exc_info=True)


def wait_for_outcome(deps: PaymentsDeps, object_id: str) -> dict[str, Any] | None:
    """Block (no database connection, no lock held) until the job signals or the wait times out.

    Returns the object's snapshot when the job sent one with its wake-up, else None (then read it).
    """
    seconds = min(deps.confirm_wait_seconds, MAX_WAIT_SECONDS)
    redis = deps.redis_blocking or deps.redis
    if redis is None or seconds <= 0:
        return None
    try:
        popped = redis.blpop([outcome_key(object_id)], timeout=seconds)
    except Exception as error:  # noqa: BLE001 - Redis trouble must not fail a payment that is already under way
        log.log(log_level_for(error), "could not wait for payment outcome", exc_info=True)
        return None
    if popped is None:
        return None
    try:
        snapshot = json.loads(popped[1])
    except ValueError:
        log.warning("unreadable payment outcome for %s", object_id)
        return None
    return snapshot if isinstance(snapshot, dict) else None  # "1": a wake-up without a snapshot


# -- validation helpers ----------------------------------------------------------------------------------

def _amount(value: Any, param: str, *, required: bool = True) -> int | None:
    if value is None:
        if required:
            raise InvalidRequest(f"Missing required parameter: {param}.", param=param, code="parameter_missing")
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"{param} must be an integer number of minor units.", param=param)
    if value < 1:
        raise InvalidRequest(f"{param} must be at least 1.", param=param)
    if value > MAX_AMOUNT:
        raise InvalidRequest(f"{param} must be at most {MAX_AMOUNT}.", param=param)
    return value


def _currency(value: Any) -> str:
    try:
        return normalize_currency(value)
    except MoneyError:
        raise InvalidRequest("currency must be a supported ISO 4217 currency code.", param="currency",
                             code="currency_unsupported") from None


def check_wire_amount(deps: PaymentsDeps, vault: str | None, amount: int, currency: str, *,
                      param: str = "amount") -> None:
    """Refuse (400, nothing changed) an amount or currency the PSP behind ``vault`` cannot take exactly.

    Asked wherever Kassa knows which PSP an amount goes to: at confirmation (the payment method's vault),
    and for each capture and refund. The connector would refuse it too, but only once it was staged.
    """
    if vault is None:
        return
    for rules in deps.wire_rules(vault):
        try:
            rules.check(amount, currency)
        except WireError as error:
            raise InvalidRequest(str(error), param=param if error.param == "amount" else error.param,
                                 code=error.code) from None


def _text(value: Any, param: str, max_length: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > max_length:
        raise InvalidRequest(f"{param} must be a string of at most {max_length} characters.", param=param)
    return value


def _metadata(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > METADATA_MAX_KEYS:
        raise InvalidRequest(f"metadata must be an object with at most {METADATA_MAX_KEYS} keys.", param="metadata")
    for key, item in value.items():
        if not isinstance(key, str) or not 0 < len(key) <= METADATA_KEY_MAX:
            raise InvalidRequest(f"metadata keys are 1 to {METADATA_KEY_MAX} characters.", param="metadata")
        if not isinstance(item, str) or len(item) > METADATA_VALUE_MAX:
            raise InvalidRequest(f"metadata values are strings of at most {METADATA_VALUE_MAX} characters.",
                                 param=f"metadata[{key}]")
    return dict(value)


def _email(value: Any) -> str | None:
    value = _text(value, "customer_email", 320)
    if value is not None and not _EMAIL.match(value):
        raise InvalidRequest("customer_email must be a valid email address.", param="customer_email")
    return value


def _customer_ip(value: Any) -> str | None:
    """The shopper's IP address (risk signals), canonical, or InvalidRequest."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > 45:
        raise InvalidRequest("customer_ip must be an IPv4 or IPv6 address.", param="customer_ip")
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        raise InvalidRequest("customer_ip must be an IPv4 or IPv6 address.", param="customer_ip") from None


def _url(value: Any, param: str) -> str | None:
    value = _text(value, param, 2000)
    if value is not None and not _URL.match(value):
        raise InvalidRequest(f"{param} must be an http(s) URL.", param=param)
    return value


def check_payment_method(deps: PaymentsDeps, livemode: bool, value: Any) -> str | None:
    """``value`` when it is a token of the vault this mode's payments go to (or None); else InvalidRequest
    ``invalid_payment_method``, which says so when it is a card number (refused like Stripe refuses raw
    card numbers sent to its API). The API calls it before anything is stored or logged, as the checkout
    checks the same vault format (``PaymentsDeps.is_token``) before it confirms."""
    value = _text(value, "payment_method", 255)
    if value is None:
        return None
    if not value:
        raise InvalidRequest("payment_method must not be empty.", param="payment_method")
    if pan.find_card_number(value) is not None:
        raise InvalidRequest(
            "payment_method looks like a card number. Card numbers must never be sent to Kassa: tokenize the "
            "card at the PSP's vault (the checkout page, Stripe.js, or the sandbox's POST /v1/tokens in test "
            "mode) and send the token.", param="payment_method", code="invalid_payment_method")
    if not deps.is_token(livemode, value):
        vault = deps.vault_for(livemode)
        raise InvalidRequest(f"payment_method must be a token of the {vault} vault, where "
                             f"{'live' if livemode else 'test'} mode payments go.",
                             param="payment_method", code="invalid_payment_method")
    return value


def bind_token(session: Session, payment: Payment) -> None:
    """Bind the payment's token to it, or InvalidRequest ``payment_method_token_used`` when another payment
    used the token first. The same payment may use it again (a retry, a new confirmation, failover).

    INSERT ... ON CONFLICT DO NOTHING: a concurrent first use by another payment waits for that one's
    commit, then finds its row. Without autoflush: the payment's own rows go with the caller's flush, as
    they would without the binding (no foreign key orders them).
    """
    key = dict(merchant_id=payment.merchant_id, livemode=payment.livemode, vault=payment.payment_method_vault,
               token=payment.payment_method_token)
    with session.no_autoflush:
        bound = session.scalar(insert(PaymentTokenBinding).values(**key, payment_id=payment.id)
                               .on_conflict_do_nothing().returning(PaymentTokenBinding.payment_id))
        if bound is None:
            bound = session.scalar(select(PaymentTokenBinding.payment_id).filter_by(**key))
    if bound != payment.id:
        raise InvalidRequest("This payment_method was already used for another payment; a token pays for one "
                             "payment only. Tokenize the card again for this one.",
                             param="payment_method", code="payment_method_token_used")


def _get_or_not_found(session: Session, scope: Scope, model: type[T], row_id: Any, *, name: str, param: str,
                      for_update: bool = False) -> T:
    """The scope's row by id, or NotFound (also for another merchant's or mode's row, or an id that is no string)."""
    row = scope.get(session, model, row_id, for_update=for_update) if isinstance(row_id, str) else None
    if row is None:
        raise NotFound(f"No such {name}: '{row_id}'.", param=param)
    return row


# -- sellers ---------------------------------------------------------------------------------------------

def default_seller(session: Session, scope: Scope) -> Seller:
    """The book's default seller, created on first use (concurrent first uses create exactly one)."""
    return _default_seller(session, scope)[0]


def _default_seller(session: Session, scope: Scope) -> tuple[Seller, bool]:
    """default_seller, and whether it was there already (False: this transaction inserted it)."""
    statement = scope.select(Seller, Seller.is_default.is_(True))
    seller = session.scalars(statement).one_or_none()
    if seller is not None:
        return seller, True
    # The partial unique index on (merchant_id, livemode) WHERE is_default makes a concurrent creator
    # wait for our commit and then insert nothing; its next SELECT sees our row.
    session.execute(insert(Seller).values(
        id=new_id("sel"), merchant_id=scope.merchant_id, livemode=scope.livemode, name="Default seller",
        is_default=True, metadata_={},
    ).on_conflict_do_nothing(index_elements=["merchant_id", "livemode"], index_where=Seller.is_default))
    return session.scalars(statement).one(), False


# A book's default seller never changes once it exists (nothing updates is_default or deletes sellers):
# its id is remembered per process, saving a query per payment. Only ids read as already there are
# kept, never one this transaction inserted (a rollback would take the row away again).
_default_seller_ids: dict[Scope, str] = {}
DEFAULT_SELLER_IDS_KEPT = 10_000


def default_seller_id(session: Session, scope: Scope) -> str:
    """The id of the book's default seller (created on first use, as default_seller does)."""
    seller_id = _default_seller_ids.get(scope)
    if seller_id is None:
        seller, already_there = _default_seller(session, scope)
        seller_id = seller.id
        if already_there and len(_default_seller_ids) < DEFAULT_SELLER_IDS_KEPT:
            _default_seller_ids[scope] = seller_id
    return seller_id


def create_seller(session: Session, scope: Scope, *, name: str, email: str | None = None,
                  metadata: dict | None = None) -> Seller:
    """A new (non-default) seller of the book."""
    name = _text(name, "name", 200)
    if not name:
        raise InvalidRequest("Missing required parameter: name.", param="name", code="parameter_missing")
    seller = scope.new(Seller, id=new_id("sel"), name=name, email=_text(email, "email", 320),
                       is_default=False, metadata_=_metadata(metadata))
    session.add(seller)
    session.flush()
    return seller


def update_seller(session: Session, scope: Scope, seller_id: str, *, name: str, email: str | None) -> Seller:
    """Rename a seller or change its email (its id, book and default flag never change)."""
    seller = _get_or_not_found(session, scope, Seller, seller_id, name="seller", param="seller", for_update=True)
    name = _text(name, "name", 200)
    if not name:
        raise InvalidRequest("Missing required parameter: name.", param="name", code="parameter_missing")
    seller.name, seller.email = name, _text(email, "email", 320)
    session.flush()
    return seller


def get_seller(session: Session, scope: Scope, seller_id: str) -> Seller:
    """The scope's seller, or NotFound."""
    return _get_or_not_found(session, scope, Seller, seller_id, name="seller", param="seller")


# -- payments --------------------------------------------------------------------------------------------

def get_payment(session: Session, scope: Scope, payment_id: str, *, for_update: bool = False,
                param: str = "payment") -> Payment:
    """The scope's payment, or NotFound (also when it belongs to another merchant or mode)."""
    return _get_or_not_found(session, scope, Payment, payment_id, name="payment", param=param, for_update=for_update)


def _split(session: Session, scope: Scope, amount: int, split: Any) -> list[tuple[str, int, int]]:
    """[(seller_id, amount, fee)] from the request's split, or everything to the default seller."""
    if split is None:
        return [(default_seller_id(session, scope), amount, 0)]
    if not isinstance(split, list) or not split:
        raise InvalidRequest("split must be a non-empty list of {seller, amount, fee}.", param="split")
    if len(split) > MAX_SPLIT_SELLERS:
        raise InvalidRequest(f"split can name at most {MAX_SPLIT_SELLERS} sellers.", param="split")
    parts, seen = [], set()
    for index, item in enumerate(split):
        name = f"split[{index}]"
        if not isinstance(item, dict):
            raise InvalidRequest(f"{name} must be an object.", param=name)
        seller_id = item.get("seller")
        if seller_id in seen:
            raise InvalidRequest(f"{name}[seller] names a seller twice.", param=f"{name}[seller]")
        seen.add(seller_id)
        get_seller_or_param = scope.get(session, Seller, seller_id) if isinstance(seller_id, str) else None
        if get_seller_or_param is None:
            raise InvalidRequest(f"No such seller: '{seller_id}'.", param=f"{name}[seller]", code="resource_missing")
        part = _amount(item.get("amount"), f"{name}[amount]")
        fee = item.get("fee") or 0
        if isinstance(fee, bool) or not isinstance(fee, int) or fee < 0:
            raise InvalidRequest(f"{name}[fee] must be a non-negative integer.", param=f"{name}[fee]")
        if fee > part:
            raise InvalidRequest(f"{name}[fee] cannot exceed {name}[amount].", param=f"{name}[fee]")
        parts.append((seller_id, part, fee))
    total = sum(p[1] for p in parts)
    if total != amount:
        raise InvalidRequest(f"The split's amounts add up to {total}, not to the payment's amount {amount}.",
                             param="split", code="split_mismatch")
    return parts


def create_payment(session: Session, scope: Scope, params: dict[str, Any], deps: PaymentsDeps, *,
                   request_id: str | None = None) -> Payment:
    """A new payment with its orders (one per seller) and its payment.created event."""
    return _create_payment(session, scope, params, deps, request_id=request_id)[0]


def _create_payment(session: Session, scope: Scope, params: dict[str, Any], deps: PaymentsDeps, *,
                    request_id: str | None = None, flush: bool = True) -> tuple[Payment, list[PaymentOrder]]:
    """create_payment, also returning the new orders (by position).

    ``flush=False``: the rows go with the caller's next flush, together with what it adds (a confirm: its
    attempt and status), one INSERT each. With no relationship() between the models, the unit of work
    orders one flush's rows by class name: Payment before PaymentAttempt and PaymentOrder, as their
    foreign keys need, but not before rows of other areas (a checkout session naming the payment), so
    only a caller that adds nothing else may defer (test_create_and_confirm_write_each_row_once).
    """
    refuse_if_suspended(session, scope.merchant_id)  # every channel creates payments here
    amount = _amount(params.get("amount"), "amount")
    currency = _currency(params.get("currency"))
    capture_method = params.get("capture_method") or CaptureMethod.AUTOMATIC
    if capture_method not in tuple(CaptureMethod):
        raise InvalidRequest("capture_method must be automatic or manual.", param="capture_method")
    token = check_payment_method(deps, scope.livemode, params.get("payment_method"))
    if params.get("confirm") and token is None:
        raise InvalidRequest("confirm=true needs a payment_method.", param="payment_method",
                             code="parameter_missing")
    parts = _split(session, scope, amount, params.get("split"))
    now = deps.now()
    payment = scope.new(
        Payment, id=new_id("pay"), amount=amount, currency=currency,
        status=PaymentStatus.REQUIRES_CONFIRMATION if token else PaymentStatus.REQUIRES_PAYMENT_METHOD,
        capture_method=capture_method, amount_capturable=0, amount_received=0, amount_refunded=0,
        customer_email=_email(params.get("customer_email")),
        description=_text(params.get("description"), "description", 1000),
        metadata_=_metadata(params.get("metadata")),
        payment_method_token=token, payment_method_vault=deps.vault_for(scope.livemode) if token else None,
        return_url=_url(params.get("return_url"), "return_url"), capture_count=0,
        customer_ip=_customer_ip(params.get("customer_ip")),
        created_at=now, updated_at=now,
    )
    orders = [scope.new(PaymentOrder, id=new_id("po"), payment_id=payment.id, seller_id=seller_id,
                        position=position, amount=part, fee=fee, amount_captured=0, fee_captured=0,
                        amount_refunded=0, fee_refunded=0)
              for position, (seller_id, part, fee) in enumerate(parts)]
    session.add(payment)
    session.add_all(orders)
    if token:
        bind_token(session, payment)
    if flush:
        session.flush()
    # A payment created in this transaction has exactly these orders and no attempts yet: the event
    # shows them as they are in memory.
    record_event(session, scope, "payment.created", "payment", payment.id,
                 payment_object(session, payment, orders=orders, attempts=[]), request_id=request_id)
    return payment, orders


def new_attempt(session: Session, payment: Payment, operation: str, amount: int, deps: PaymentsDeps, *,
                stage: bool = True, leased: bool = False,
                done: tuple[datetime, str] | None = None) -> PaymentAttempt:
    """An attempt row in ``processing`` with its PSP idempotency key, due at once: a worker's PSP dispatcher
    claims it from the database (woken after commit, app/jobs/dispatcher.py). ``stage=False`` when the caller
    runs the attempt itself (a run continuing with the automatic capture); ``leased`` then inserts it
    already leased to the caller for its first try (in the INSERT, rather than an UPDATE right after it),
    due again only if that lease runs out.
    ``done=(when, psp_status)``: an attempt another call already carried out (the capture of a sale),
    inserted as succeeded.
    """
    now = deps.now()
    lease = now + deps.attempt_stuck_after
    attempt_id = new_id("att")
    if done is not None:
        finished_at, psp_status = done
        status, tries, lease, started_at = AttemptStatus.SUCCEEDED, 1, None, finished_at
    else:
        finished_at = psp_status = None
        status, tries, started_at = AttemptStatus.PROCESSING, (1 if leased else 0), (now if leased else None)
    attempt = PaymentAttempt(
        id=attempt_id, merchant_id=payment.merchant_id, livemode=payment.livemode, payment_id=payment.id,
        operation=operation, status=status, amount=amount, currency=payment.currency,
        vault=payment.payment_method_vault,
        payment_method_token=payment.payment_method_token if operation == AttemptOperation.AUTHORIZE else None,
        connector=None if operation == AttemptOperation.AUTHORIZE else payment.connector,
        psp_reference=None if operation == AttemptOperation.AUTHORIZE else payment.psp_reference,
        credential=None if operation == AttemptOperation.AUTHORIZE else payment.credential,
        # Derived from the attempt id: every try of this attempt, at any connector, carries it.
        idempotency_key=f"kassa-{attempt_id}", tries=tries,
        lease_until=lease if leased else None, started_at=started_at, finished_at=finished_at,
        psp_status=psp_status, next_attempt_at=lease if leased or done else now, created_at=now, updated_at=now,
    )
    session.add(attempt)  # inserted by the next flush (the job is staged until the commit)
    if stage and deps.enqueue is not None:
        deps.enqueue(session, "app.jobs.payments.run_attempt", attempt.id)
    return attempt


def confirm_payment(session: Session, scope: Scope, payment_id: str, deps: PaymentsDeps, *,
                    payment_method: str | None = None, return_url: str | None = None,
                    request_id: str | None = None, payment: Payment | None = None,
                    new_orders: list[PaymentOrder] | None = None, customer_ip: Any = None) -> PaymentAttempt:
    """Attach the card token and start an authorization attempt (payment -> processing).

    ``payment``: the row, when the caller holds it locked already (created in this transaction).
    ``new_orders``: its orders, when it was created in this transaction: then they and the attempt made
    here are all it has, and its event need not read them back.
    """
    if payment is None:
        refuse_if_suspended(session, scope.merchant_id)  # a payment created here was checked already
        payment = get_payment(session, scope, payment_id, for_update=True)
    token = check_payment_method(deps, scope.livemode, payment_method)
    return_url = _url(return_url, "return_url")
    shopper_ip = _customer_ip(customer_ip)
    if payment.status not in (PaymentStatus.REQUIRES_PAYMENT_METHOD, PaymentStatus.REQUIRES_CONFIRMATION):
        raise InvalidTransition(f"This payment's status is {payment.status}; only a payment that requires a "
                                "payment method or confirmation can be confirmed.")
    if token is None and (payment.status == PaymentStatus.REQUIRES_PAYMENT_METHOD or not payment.payment_method_token):
        raise InvalidRequest("Missing required parameter: payment_method.", param="payment_method",
                             code="parameter_missing")
    new_method = token is not None and token != payment.payment_method_token
    check_wire_amount(deps, deps.vault_for(scope.livemode) if new_method else payment.payment_method_vault,
                      payment.amount, payment.currency)
    if new_method:
        payment.payment_method_token = token
        payment.payment_method_vault = deps.vault_for(scope.livemode)
        bind_token(session, payment)
        # The card facts come with the authorization answer (the PSP resolves the token).
        payment.card_brand = payment.card_last4 = payment.card_fingerprint = None
        payment.card_exp_month = payment.card_exp_year = None
    if return_url:
        payment.return_url = return_url
    if shopper_ip and shopper_ip != payment.customer_ip:
        payment.customer_ip = shopper_ip
    # A new confirmation is screened anew (app/payments/risk.py): the last one's outcome and 3-D Secure request go.
    if payment.risk_outcome is not None:
        payment.risk_outcome = None
    if payment.request_three_d_secure:
        payment.request_three_d_secure = False
    # Clear only what is set: assigning None to a payment created in this transaction would cost an
    # UPDATE of its own (new_attempt flushes before the status UPDATE below).
    if payment.last_error is not None:
        payment.last_error = None
    if payment.next_action_url is not None:
        payment.next_action_url = None
    attempt = new_attempt(session, payment, AttemptOperation.AUTHORIZE, payment.amount, deps)
    payment.latest_attempt_id = attempt.id
    state.transition(session, payment, PaymentStatus.PROCESSING, request_id=request_id, orders=new_orders,
                     attempts=[attempt] if new_orders is not None else None)
    return attempt


def start_capture(session: Session, scope: Scope, payment_id: str, deps: PaymentsDeps, *,
                  amount: int | None = None, request_id: str | None = None, reviewed: bool = False) -> PaymentAttempt:
    """Stage a (full or partial) capture of an authorized payment; the worker books it on success.

    A payment held for a platform-owned risk review is refused (409 ``payment_in_review``) unless the review's
    approval captures it (``reviewed``); the merchant's capture during its own open review approves it.
    """
    payment = get_payment(session, scope, payment_id, for_update=True)
    amount = _amount(amount, "amount", required=False)
    if payment.status != PaymentStatus.REQUIRES_CAPTURE:
        raise InvalidTransition(f"This payment's status is {payment.status}; only a payment that requires "
                                "capture can be captured.")
    if not reviewed:
        from app.risk.reviews import check_capture  # here: app.risk builds on payments

        check_capture(session, payment)
    if state.has_open_attempt(session, payment.id):
        raise InvalidTransition("A capture of this payment is already in progress.",
                                code="payment_capture_in_progress")
    amount = amount if amount is not None else payment.amount_capturable
    if amount > payment.amount_capturable:
        raise AmountTooLarge(f"amount {amount} exceeds the capturable amount {payment.amount_capturable}.",
                             param="amount")
    check_wire_amount(deps, payment.payment_method_vault, amount, payment.currency)
    return new_attempt(session, payment, AttemptOperation.CAPTURE, amount, deps)


def cancel_payment(session: Session, scope: Scope, payment_id: str, deps: PaymentsDeps, *,
                   reason: str | None = None, request_id: str | None = None,
                   payment: Payment | None = None, closing_review: bool = True, by_merchant: bool = True) -> Payment:
    """Cancel; an authorization (or a pending 3-D Secure one) is voided at the PSP by a staged job.

    The merchant's cancel (``by_merchant``, the default: the API's and the dashboard's) of a payment held for a
    platform-owned risk review is refused (409 ``payment_in_review``), as its capture is; its own open review
    closes ``canceled``. The platform's sweeps pass ``by_merchant=False``; a review decision that voids has
    closed the review already (``closing_review=False``).
    """
    if payment is None:
        payment = get_payment(session, scope, payment_id, for_update=True)
    if reason is not None and reason not in CANCELLATION_REASONS + SYSTEM_CANCELLATION_REASONS:
        raise InvalidRequest(f"cancellation_reason must be one of: {', '.join(CANCELLATION_REASONS)}.",
                             param="cancellation_reason")
    if payment.status == PaymentStatus.CANCELED:
        return payment  # already applied: keep the first cancellation's reason, write no event
    needs_void = payment.status in (PaymentStatus.REQUIRES_CAPTURE, PaymentStatus.REQUIRES_ACTION)
    if needs_void and payment.status == PaymentStatus.REQUIRES_ACTION and not payment.psp_reference:
        latest = session.get(PaymentAttempt, payment.latest_attempt_id) if payment.latest_attempt_id else None
        if latest is not None and latest.psp_reference:
            payment.connector, payment.psp_reference = latest.connector, latest.psp_reference
        else:
            needs_void = False
    if closing_review and payment.review_id:
        from app.risk.reviews import check_cancel, close_for_payment  # here: app.risk builds on payments

        if by_merchant:
            check_cancel(session, payment)
        else:
            close_for_payment(session, payment, "canceled")
    payment.cancellation_reason = reason
    payment.next_action_url = None
    # Nothing is capturable from here on, whether or not the void has reached the PSP yet: the response, the
    # event and every later read agree.
    payment.amount_capturable = 0
    state.transition(session, payment, PaymentStatus.CANCELED, request_id=request_id)
    if needs_void:
        new_attempt(session, payment, AttemptOperation.VOID, payment.amount, deps)
    return payment


# -- refunds ---------------------------------------------------------------------------------------------

def get_refund(session: Session, scope: Scope, refund_id: str) -> Refund:
    """The scope's refund, or NotFound."""
    return _get_or_not_found(session, scope, Refund, refund_id, name="refund", param="refund")


def pending_refunds_by_order(session: Session, payment_id: str) -> dict[str, int]:
    """Per order id: the amount of this payment's refunds still waiting for the PSP."""
    pending: dict[str, int] = {}
    for allocations in session.scalars(select(Refund.allocations).where(
            Refund.payment_id == payment_id, Refund.status == RefundStatus.PENDING)):
        for part in allocations:
            pending[part["order"]] = pending.get(part["order"], 0) + part["amount"]
    return pending


def create_refund(session: Session, scope: Scope, params: dict[str, Any], deps: PaymentsDeps, *,
                  request_id: str | None = None) -> Refund:
    """A pending refund of a captured payment, allocated per seller (given, or pro rata by what is left)."""
    payment = get_payment(session, scope, params.get("payment"), for_update=True)
    amount = _amount(params.get("amount"), "amount", required=False)
    reason = params.get("reason")
    if reason is not None and reason not in REFUND_REASONS:
        raise InvalidRequest(f"reason must be one of: {', '.join(REFUND_REASONS)}.", param="reason")
    if payment.status != PaymentStatus.SUCCEEDED or payment.amount_received <= 0:
        raise InvalidTransition(f"This payment's status is {payment.status}; only captured payments can be refunded.",
                                param="payment")
    orders = session.scalars(select(PaymentOrder).where(PaymentOrder.payment_id == payment.id)
                             .order_by(PaymentOrder.position)).all()
    from app.disputes.queries import withdrawn_by_order  # here: app.disputes builds on this module

    pending = pending_refunds_by_order(session, payment.id)
    disputed = withdrawn_by_order(session, scope, payment.id)
    left = {o.id: o.amount_captured - o.amount_refunded - pending.get(o.id, 0) - disputed.get(o.id, (0, 0))[0]
            for o in orders}
    refundable = sum(left.values())
    withdrawn = sum(amount for amount, _fee in disputed.values())
    if refundable <= 0:
        if withdrawn:
            raise AmountTooLarge(_disputed_refusal(payment, withdrawn, refundable), param="payment",
                                 code="charge_disputed")
        raise AmountTooLarge("This payment has already been refunded in full.", param="payment",
                             code="charge_already_refunded")
    by_seller = {o.seller_id: o for o in orders}
    requested = params.get("sellers")
    if requested:
        if not isinstance(requested, list):
            raise InvalidRequest("sellers must be a list of {seller, amount}.", param="sellers")
        parts: dict[str, int] = {}
        for index, item in enumerate(requested):
            name = f"sellers[{index}]"
            seller_id = item.get("seller") if isinstance(item, dict) else None
            order = by_seller.get(seller_id)
            if order is None:
                raise InvalidRequest(f"{name}[seller] is not part of this payment's split.", param=f"{name}[seller]")
            if order.id in parts:
                raise InvalidRequest(f"{name}[seller] names a seller twice.", param=f"{name}[seller]")
            part = _amount(item.get("amount"), f"{name}[amount]")
            if part > left[order.id]:
                held = disputed.get(order.id, (0, 0))[0]
                raise AmountTooLarge(f"{name}[amount] {part} exceeds what is refundable for this seller "
                                     f"({max(left[order.id], 0)})" + (f": {held} of it was withdrawn by a dispute."
                                                                       if held else "."),
                                     param=f"{name}[amount]", code="charge_disputed" if held else None)
            parts[order.id] = part
        total = sum(parts.values())
        if amount is not None and amount != total:
            raise InvalidRequest(f"The sellers' amounts add up to {total}, not to amount {amount}.",
                                 param="sellers", code="split_mismatch")
        amount = total
    else:
        amount = amount if amount is not None else refundable
        if amount > refundable:
            if withdrawn:
                raise AmountTooLarge(_disputed_refusal(payment, withdrawn, refundable), param="amount",
                                     code="charge_disputed")
            raise AmountTooLarge(f"amount {amount} exceeds the refundable amount {refundable}.", param="amount")
        weights = [max(left[o.id], 0) for o in orders]
        parts = {o.id: share for o, share in zip(orders, allocate(amount, weights), strict=True) if share}
    check_wire_amount(deps, payment.payment_method_vault, amount, payment.currency,
                      param="sellers" if requested and params.get("amount") is None else "amount")
    if payment.review_id:
        from app.risk.reviews import close_for_payment  # here: app.risk builds on payments

        close_for_payment(session, payment, "refunded")  # a review still open on a refunded payment, as Radar's
    now = deps.now()
    refund_id = new_id("re")
    refund = scope.new(
        Refund, id=refund_id, payment_id=payment.id, amount=amount, currency=payment.currency,
        status=RefundStatus.PENDING, reason=reason, metadata_=_metadata(params.get("metadata")),
        allocations=[{"order": o.id, "seller": o.seller_id, "amount": parts[o.id], "fee": None}
                     for o in orders if parts.get(o.id)],
        connector=payment.connector, credential=payment.credential, psp_reference=None,
        idempotency_key=f"kassa-{refund_id}", tries=0,
        next_attempt_at=now, created_at=now, updated_at=now,
    )
    session.add(refund)
    session.flush()
    record_event(session, scope, "refund.created", "refund", refund.id, refund_object(refund), request_id=request_id)
    if deps.enqueue is not None:
        deps.enqueue(session, "app.jobs.payments.run_refund", refund.id)
    return refund


def _disputed_refusal(payment: Payment, withdrawn: int, refundable: int) -> str:
    return (f"{withdrawn} of this payment is disputed and was withdrawn by the payment processor: the disputed "
            f"amount cannot be refunded (the card's bank returns it to the customer if the dispute is lost). "
            f"{max(refundable, 0)} can still be refunded.")


# -- listing ---------------------------------------------------------------------------------------------

def payments_query(scope: Scope, *, status: str | None = None, customer_email: str | None = None,
                   seller: str | None = None, created_gte: datetime | None = None,
                   created_lte: datetime | None = None, risk_level: str | None = None,
                   outcome: str | None = None):
    """The scope's payments filtered as the list endpoint allows (``risk_level`` and ``outcome``, the risk
    outcome's type, for the dashboard's list)."""
    statement = scope.select(Payment)
    if risk_level:
        statement = statement.where(Payment.risk_level == risk_level)
    if outcome:
        statement = statement.where(Payment.risk_outcome["type"].astext == outcome)
    if status:
        statement = statement.where(Payment.status == status)
    if customer_email:
        statement = statement.where(func.lower(Payment.customer_email) == customer_email.lower())
    if seller:
        statement = statement.where(Payment.id.in_(
            select(PaymentOrder.payment_id).where(PaymentOrder.merchant_id == scope.merchant_id,
                                                  PaymentOrder.livemode == scope.livemode,
                                                  PaymentOrder.seller_id == seller)))
    if created_gte:
        statement = statement.where(Payment.created_at >= created_gte)
    if created_lte:
        statement = statement.where(Payment.created_at <= created_lte)
    return statement


# -- idempotent operations (phases) ----------------------------------------------------------------------

def _payment_response(ctx: PhaseContext, status: int = 200) -> Response:
    snapshot = ctx.waited
    if snapshot is not None and snapshot.get("id") == ctx.state["payment_id"]:
        return Response(status, snapshot)  # the payment as the worker's commit left it
    payment = get_payment(ctx.session, ctx.scope, ctx.state["payment_id"])
    return Response(status, payment_object(ctx.session, payment))


def _wait_attempt(ctx: PhaseContext) -> dict[str, Any] | None:
    return wait_for_outcome(ctx.deps, ctx.state["attempt_id"])


def _create_started(ctx: PhaseContext):
    payment, orders = _create_payment(ctx.session, ctx.scope, ctx.params, ctx.deps, request_id=ctx.request_id,
                                      flush=False)
    if not ctx.params.get("confirm"):
        return Response(200, payment_object(ctx.session, payment, orders=orders, attempts=[]))
    attempt = confirm_payment(ctx.session, ctx.scope, payment.id, ctx.deps, request_id=ctx.request_id,
                              payment=payment, new_orders=orders)  # inserted in this transaction: no other can see or lock it
    return Next("attempt_created", {"payment_id": payment.id, "attempt_id": attempt.id})


def _confirm_started(ctx: PhaseContext):
    attempt = confirm_payment(ctx.session, ctx.scope, ctx.params.get("payment"), ctx.deps,
                              payment_method=ctx.params.get("payment_method"),
                              return_url=ctx.params.get("return_url"), request_id=ctx.request_id,
                              customer_ip=ctx.params.get("customer_ip"))
    return Next("attempt_created", {"payment_id": attempt.payment_id, "attempt_id": attempt.id})


def _capture_started(ctx: PhaseContext):
    attempt = start_capture(ctx.session, ctx.scope, ctx.params.get("payment"), ctx.deps,
                            amount=ctx.params.get("amount"), request_id=ctx.request_id)
    return Next("attempt_created", {"payment_id": attempt.payment_id, "attempt_id": attempt.id})


def _cancel_started(ctx: PhaseContext):
    payment = cancel_payment(ctx.session, ctx.scope, ctx.params.get("payment"), ctx.deps,
                             reason=ctx.params.get("cancellation_reason"), request_id=ctx.request_id)
    return Response(200, payment_object(ctx.session, payment))


def _refund_started(ctx: PhaseContext):
    refund = create_refund(ctx.session, ctx.scope, ctx.params, ctx.deps, request_id=ctx.request_id)
    return Next("refund_created", {"refund_id": refund.id})


def _wait_refund(ctx: PhaseContext) -> None:
    wait_for_outcome(ctx.deps, ctx.state["refund_id"])


def _refund_response(ctx: PhaseContext) -> Response:
    return Response(200, refund_object(get_refund(ctx.session, ctx.scope, ctx.state["refund_id"])))


def _seller_started(ctx: PhaseContext):
    seller = create_seller(ctx.session, ctx.scope, name=ctx.params.get("name"), email=ctx.params.get("email"),
                           metadata=ctx.params.get("metadata"))
    return Response(200, seller_object(seller))


# The last phases only read the outcome and store the response: recomputable, so not flushed to disk.
_AFTER_ATTEMPT = Phase(run=_payment_response, wait=_wait_attempt, durable=False)

CREATE_PAYMENT = idempotency.register(Operation("payment.create", {
    STARTED: Phase(run=_create_started), "attempt_created": _AFTER_ATTEMPT}))
CONFIRM_PAYMENT = idempotency.register(Operation("payment.confirm", {
    STARTED: Phase(run=_confirm_started), "attempt_created": _AFTER_ATTEMPT}))
CAPTURE_PAYMENT = idempotency.register(Operation("payment.capture", {
    STARTED: Phase(run=_capture_started), "attempt_created": _AFTER_ATTEMPT}))
CANCEL_PAYMENT = idempotency.register(Operation("payment.cancel", {STARTED: Phase(run=_cancel_started)}))
CREATE_REFUND = idempotency.register(Operation("refund.create", {
    STARTED: Phase(run=_refund_started), "refund_created": Phase(run=_refund_response, wait=_wait_refund, durable=False)}))
CREATE_SELLER = idempotency.register(Operation("seller.create", {STARTED: Phase(run=_seller_started)}))
