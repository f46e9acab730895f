"""The demo data: the inbox holds an item of each of this issue's kinds after `kassa.py run` seeds it, once."""
from app.inbox import InboxFilters, collect
from app.seed import seed_demo


def test_the_demo_inbox_has_an_item_of_each_kind_and_seeding_again_adds_none(db_session):
    merchant, _lines = seed_demo(db_session)
    db_session.commit()
    _items, counts = collect(db_session, InboxFilters(merchant_id=merchant.id))
    # Reconciliation (app/reconciliation/seed.py): the demo book's amount, fee and currency mismatches and the
    # line the PSP never reported, the dispute whose notice was missed; the platform book holds the duplicate, the
    # unknown line and both deposit breaks.
    assert counts == {"payment_outcome": 1, "psp_callback": 0, "dispute": 1, "webhook_endpoint": 1,
                      "reconciliation_break": 5, "reconciliation_fetch": 0, "review": 1,  # no fetch failing
                      "payout_failed": 1, "payout_held": 0}  # app/payouts/seed.py: one failed payout
    items, _counts = collect(db_session, InboxFilters())
    assert {item.kind for item in items} == {"payment_outcome", "psp_callback", "dispute", "webhook_endpoint",
                                             "reconciliation_break", "review", "payout_failed"}
    from app.reconciliation.models import Break
    from sqlalchemy import select

    kinds = {row.type for row in db_session.scalars(select(Break).where(Break.status == "open"))}
    assert kinds == {"missing_in_kassa", "missing_at_psp", "amount_mismatch", "currency_mismatch", "duplicate",
                     "fee_mismatch", "deposit_mismatch", "deposit_without_batch", "dispute_notice_missed"}
    closed = db_session.scalars(select(Break).where(Break.status == "closed")).all()
    assert [b.type for b in closed] == ["missing_at_psp"]  # the late line closed its break
    seed_demo(db_session)
    db_session.commit()
    again, _counts = collect(db_session, InboxFilters())
    assert sorted(i.id for i in again) == sorted(i.id for i in items)
