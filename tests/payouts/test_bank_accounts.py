"""Bank accounts (app/payouts/bank_accounts.py): validation with a clear message, sealed at rest, masked in the
audit log, events and mail, one active account per seller, the cooling period, the flag after a failed payout,
and tenancy."""
import logging
from datetime import timedelta

import pytest
from sqlalchemy import select, text

from app.accounts.audit import AuditEntry
from app.accounts.mail import MailMessage
from app.events import Event
from app.models_base import utcnow
from app.payments.service import create_seller
from app.payouts.bank_account_models import BankAccount
from app.payouts.bank_accounts import (
    Actor, BankAccountError, active_bank_account, bank_account_history, flag_after_failed_payout,
    payout_destination, set_bank_account,
)
from app.scoping import Scope
from tests import factories

IBAN = "DE89370400440532013000"
IBAN_2 = "FR1420041010050500013M02606"
ACTOR = Actor(user_id=None, label="owner@example.com")


@pytest.fixture
def shop(db_session):
    merchant = factories.merchant(db_session, name="Banked Shop")
    owner = factories.member(db_session, merchant, "owner", email=f"owner-{merchant.id.lower()}@example.com")
    factories.member(db_session, merchant, "analyst")
    scope = Scope(merchant.id, False)
    seller = create_seller(db_session, scope, name="Alice's Pottery")
    db_session.commit()
    return {"merchant": merchant, "owner": owner, "scope": scope, "seller": seller}


def _set(db_session, shop, **values):
    fields = {"seller_id": shop["seller"].id, "holder_name": "Alice Potter", "country": "DE",
              "currency": "EUR", "iban": IBAN, "actor": ACTOR}
    fields.update(values)
    row = set_bank_account(db_session, shop["scope"], **fields)
    db_session.commit()
    return row


def _count(db_session, scope) -> int:
    return len(db_session.scalars(scope.select(BankAccount)).all())


@pytest.mark.parametrize("iban, message", [
    ("DE89370400440532013001", "check digits do not match"),
    ("DE8937040044053201300", "wrong number of characters"),
    ("XX89370400440532013000", "country code"),
])
def test_an_invalid_iban_is_refused_with_a_clear_message(db_session, shop, iban, message):
    with pytest.raises(BankAccountError) as refused:
        _set(db_session, shop, iban=iban)
    assert message in refused.value.message and refused.value.field == "iban"
    db_session.rollback()
    assert _count(db_session, shop["scope"]) == 0


@pytest.mark.parametrize("values, field", [
    ({"bic": "NOTABIC!"}, "bic"),
    ({"holder_name": "  "}, "holder_name"),
    ({"currency": "XYZ"}, "currency"),
    ({"country": "FR"}, "country"),  # a German IBAN said to be French
    ({"iban": "", "account_number": "000123456789", "routing_code": "123456789", "country": "US"}, "routing_code"),
    ({"iban": "", "account_number": "12", "routing_code": "011000015", "country": "US"}, "account_number"),
])
def test_other_bad_input_names_its_field(db_session, shop, values, field):
    with pytest.raises(BankAccountError) as refused:
        _set(db_session, shop, **values)
    assert refused.value.field == field and refused.value.message


def test_an_iban_account_is_sealed_at_rest_and_paid_to_after_the_cooling_period(db_session, shop):
    before = utcnow()
    row = _set(db_session, shop, iban="de89 3704 0044 0532 0130 00")
    assert (row.kind, row.last4, row.country, row.bic) == ("iban", "3000", "DE", "COBADEFFXXX")
    stored = db_session.execute(text("SELECT number_encrypted FROM bank_accounts WHERE id = :id"),
                                {"id": row.id}).scalar_one()
    assert IBAN not in stored and "0532013000" not in stored
    destination = payout_destination(db_session, shop["scope"], shop["seller"].id)
    assert destination.iban == IBAN and destination.account_number is None
    assert destination.holder_name == "Alice Potter" and not destination.flagged
    # The default cooling period: three days from the change.
    assert before + timedelta(days=3) <= destination.cooling_until <= utcnow() + timedelta(days=3)
    assert IBAN not in repr(destination) and "3000" in repr(destination)
    # The merchant's own account is another one: there is none yet.
    assert payout_destination(db_session, shop["scope"], None) is None


def test_a_local_account_with_a_routing_number(db_session, shop):
    row = _set(db_session, shop, seller_id=None, iban=None, country="US", currency="USD",
               account_number="000123456789", routing_code="011000015", cooling=timedelta(0))
    destination = payout_destination(db_session, shop["scope"], None)
    assert (row.kind, row.last4, destination.account_number, destination.routing_code) == \
        ("local", "6789", "000123456789", "011000015")
    assert destination.iban is None and destination.cooling_until is None


def test_a_change_replaces_the_account_restarts_the_cooling_and_is_audited_and_mailed(db_session, shop):
    first = _set(db_session, shop, cooling=timedelta(0))
    now = utcnow()
    second = _set(db_session, shop, iban=IBAN_2, country="FR", now=now, cooling=timedelta(days=5))
    assert active_bank_account(db_session, shop["scope"], shop["seller"].id).id == second.id
    db_session.refresh(first)
    assert first.replaced_at == now
    assert [r.id for r in bank_account_history(db_session, shop["scope"], shop["seller"].id)] == [second.id, first.id]
    assert payout_destination(db_session, shop["scope"], shop["seller"].id).cooling_until == now + timedelta(days=5)
    audits = db_session.scalars(select(AuditEntry).where(AuditEntry.merchant_id == shop["merchant"].id,
                                                         AuditEntry.action.like("bank_account.%"))
                                .order_by(AuditEntry.created_at)).all()
    assert [a.action for a in audits] == ["bank_account.created", "bank_account.replaced"]
    assert audits[1].details["previous_last4"] == "3000" and audits[1].details["last4"] == "2606"
    mails = db_session.scalars(select(MailMessage).where(MailMessage.merchant_id == shop["merchant"].id,
                                                         MailMessage.kind == "bank_account_changed")
                               .order_by(MailMessage.created_at)).all()
    # Owners only (the analyst gets none), once per change.
    assert [m.to_address for m in mails] == [shop["owner"].email] * 2
    assert "changed from •••• 3000 to •••• 2606" in mails[1].body_text and "waits until" in mails[1].body_text


def test_account_numbers_never_appear_unmasked_in_logs_events_audit_or_mail(db_session, shop, caplog):
    caplog.set_level(logging.DEBUG)
    row = _set(db_session, shop)
    flag_after_failed_payout(db_session, shop["scope"], row.id, "account_closed")
    db_session.commit()
    events = db_session.scalars(shop["scope"].select(Event, Event.object_id == row.id)).all()
    assert {e.type for e in events} == {"bank_account.created", "bank_account.updated"}
    audits = db_session.scalars(select(AuditEntry).where(AuditEntry.target == row.id)).all()
    mails = db_session.scalars(select(MailMessage).where(MailMessage.merchant_id == shop["merchant"].id)).all()
    texts = [caplog.text, *(str(e.data) for e in events), *(str(a.details) for a in audits),
             *(m.subject + m.body_text for m in mails)]
    assert len(mails) == 2 and all("3000" in m.body_text for m in mails)
    for needle in (IBAN, "0532013000", "370400440532013000"):
        assert not any(needle in t for t in texts)


def test_a_failed_payout_flags_the_account_once_until_it_is_changed(db_session, shop):
    row = _set(db_session, shop)
    flag_after_failed_payout(db_session, shop["scope"], row.id, "account_closed")
    flag_after_failed_payout(db_session, shop["scope"], row.id, "account_closed")  # applied twice
    db_session.commit()
    destination = payout_destination(db_session, shop["scope"], shop["seller"].id)
    assert destination.flagged
    flagged = db_session.scalars(select(MailMessage).where(MailMessage.merchant_id == shop["merchant"].id,
                                                           MailMessage.kind == "bank_account_flagged")).all()
    assert len(flagged) == 1 and "account closed" in flagged[0].body_text
    _set(db_session, shop, iban=IBAN_2, country="FR")
    assert not payout_destination(db_session, shop["scope"], shop["seller"].id).flagged


def test_merchant_b_can_neither_see_nor_change_a_merchants_accounts(db_session, shop):
    row = _set(db_session, shop)
    other = factories.merchant(db_session, name="Other Shop")
    db_session.commit()
    scope_b = Scope(other.id, False)
    assert payout_destination(db_session, scope_b, shop["seller"].id) is None
    assert bank_account_history(db_session, scope_b, shop["seller"].id) == []
    with pytest.raises(BankAccountError) as refused:
        set_bank_account(db_session, scope_b, seller_id=shop["seller"].id, holder_name="Mallory", country="FR",
                         currency="EUR", iban=IBAN_2, actor=ACTOR)
    assert refused.value.field == "seller"
    db_session.rollback()
    flag_after_failed_payout(db_session, scope_b, row.id, "no_account")
    db_session.commit()
    assert not payout_destination(db_session, shop["scope"], shop["seller"].id).flagged
    # Live mode is another book too.
    assert payout_destination(db_session, Scope(shop["merchant"].id, True), shop["seller"].id) is None
