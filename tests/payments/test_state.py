"""The payment state machine: every move the table allows, every move it forbids, and re-application."""
import itertools

import pytest

from app.events import Event
from app.ids import new_id
from app.payments import state
from app.payments.errors import InvalidTransition
from app.payments.models import AttemptStatus, Payment, PaymentAttempt, PaymentStatus
from app.payments.service import default_seller
from tests.payments.helpers import event_types

STATUSES = list(PaymentStatus)
ALL_PAIRS = [(a, b) for a, b in itertools.product(STATUSES, STATUSES) if a != b]
ALLOWED = [pair for pair in ALL_PAIRS if pair in state.TRANSITIONS]
FORBIDDEN = [pair for pair in ALL_PAIRS if pair not in state.TRANSITIONS]


def _payment(session, scope, status) -> Payment:
    default_seller(session, scope)
    payment = scope.new(Payment, id=new_id("pay"), amount=1000, currency="USD", status=status,
                        capture_method="automatic", amount_capturable=0, amount_received=0, amount_refunded=0,
                        capture_count=0, metadata_={})
    session.add(payment)
    session.flush()
    return payment


def test_the_table_matches_the_architecture():
    expected = {
        ("requires_payment_method", "requires_confirmation"), ("requires_payment_method", "processing"),
        ("requires_confirmation", "processing"), ("processing", "requires_action"),
        ("processing", "requires_capture"), ("processing", "succeeded"), ("processing", "requires_payment_method"),
        ("requires_action", "processing"), ("requires_action", "requires_capture"),
        ("requires_action", "requires_payment_method"), ("requires_capture", "succeeded"),
        ("requires_payment_method", "canceled"), ("requires_confirmation", "canceled"),
        ("requires_action", "canceled"), ("requires_capture", "canceled"),
    }
    assert {(a.value, b.value) for a, b in state.TRANSITIONS} == expected
    # Nothing leaves a terminal state; processing is never canceled.
    assert not [pair for pair in state.TRANSITIONS if pair[0] in state.TERMINAL]
    assert (PaymentStatus.PROCESSING, PaymentStatus.CANCELED) not in state.TRANSITIONS


@pytest.mark.parametrize("from_status,to_status", ALLOWED, ids=[f"{a}->{b}" for a, b in ALLOWED])
def test_allowed_move_writes_its_event(db_session, scope, from_status, to_status):
    payment = _payment(db_session, scope, from_status)
    event = state.transition(db_session, payment, to_status)
    assert payment.status == to_status
    assert event is not None and event.type == state.TRANSITIONS[(from_status, to_status)]
    assert event.data["status"] == to_status  # the object as it was after the move
    assert event_types(db_session, scope, payment.id) == [event.type]
    # Applying the same outcome again changes nothing and writes no event.
    assert state.transition(db_session, payment, to_status) is None
    assert event_types(db_session, scope, payment.id) == [event.type]


@pytest.mark.parametrize("from_status,to_status", FORBIDDEN, ids=[f"{a}->{b}" for a, b in FORBIDDEN])
def test_forbidden_move_is_an_error_and_changes_nothing(db_session, scope, from_status, to_status):
    payment = _payment(db_session, scope, from_status)
    with pytest.raises(InvalidTransition):
        state.transition(db_session, payment, to_status)
    assert payment.status == from_status
    assert event_types(db_session, scope, payment.id) == []


@pytest.mark.parametrize("open_status", [AttemptStatus.PROCESSING, AttemptStatus.UNKNOWN])
def test_cancel_is_refused_while_an_attempt_is_open(db_session, scope, open_status):
    payment = _payment(db_session, scope, PaymentStatus.REQUIRES_CAPTURE)
    db_session.add(scope.new(PaymentAttempt, id=new_id("att"), payment_id=payment.id, operation="capture",
                             status=open_status, amount=1000, currency="USD", idempotency_key=new_id("k"), tries=0))
    db_session.flush()
    with pytest.raises(InvalidTransition, match="processing"):
        state.transition(db_session, payment, PaymentStatus.CANCELED)
    assert payment.status == PaymentStatus.REQUIRES_CAPTURE
    assert db_session.query(Event).filter_by(object_id=payment.id).count() == 0
