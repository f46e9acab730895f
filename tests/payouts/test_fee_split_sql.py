"""The set-based fee split (app/payouts/fees.py ``fee_parts_sql``, what the settlement import posts with) gives
exactly what ``payment_fee_shares`` gives payment by payment: largest remainder, ties to the earlier position,
zero and missing captures, rebates, payments without orders, other merchants."""
import itertools

from app.ids import new_id
from app.payments.models import Payment, PaymentOrder, Seller
from app.payouts.fees import fee_parts_sql, payment_fee_shares, seller_fee_totals
from app.scoping import Scope
from tests import factories

# (fee, [(seller index, amount, amount_captured)] in position order)
CASES = [
    (100, [(0, 1, 1), (1, 1, 1), (2, 1, 1)]),            # 34, 33, 33: the remainder to the earliest
    (-100, [(0, 1, 1), (1, 1, 1), (2, 1, 1)]),           # a rebate: the same parts, negative
    (7, [(0, 500, 0), (1, 300, 0), (2, 200, 0)]),        # nothing captured: weights are the amounts
    (7, [(0, 500, 500), (1, 300, 0), (2, 200, 200)]),    # partly captured: a zero capture weighs its amount
    (1, [(0, 333, 333), (1, 333, 333), (2, 334, 334)]),  # one unit to the largest remainder, not the first
    (2, [(2, 10, 10), (0, 10, 10), (1, 10, 10)]),        # positions decide ties, not seller ids
    (13, [(3, 2, 2), (0, 3, 3), (1, 5, 5)]),             # uneven thirds: 2.6, 3.9, 6.5
    (99, [(1, 7919, 7919)]),                             # one order takes it all
    (0, [(0, 10, 10), (1, 10, 10)]),                     # no fee: no parts
    (5, []),                                             # no orders: no parts
    (1_000_003, [(0, 999_999_999_999, 999_999_999_999), (1, 3, 3), (2, 17, 17)]),  # big products stay exact
    (-41, [(0, 17, 17), (1, 23, 0), (2, 1, 1), (3, 59, 59)]),
]


def _setup(session, merchant_id: str, cases) -> tuple[list[str], list[tuple[str, int]]]:
    sellers = []
    for n in range(4):
        sellers.append(new_id("sel"))
        session.add(Seller(id=sellers[-1], merchant_id=merchant_id, livemode=False, name=f"S{n}"))
    session.flush()
    fees = []
    for fee, orders in cases:
        payment = Payment(id=new_id("pay"), merchant_id=merchant_id, livemode=False, currency="USD",
                          amount=sum(o[1] for o in orders) or 100, status="succeeded", capture_method="automatic")
        session.add(payment)
        session.flush()
        for position, (seller, amount, captured) in enumerate(orders):
            session.add(PaymentOrder(id=new_id("ord"), merchant_id=merchant_id, livemode=False,
                                     payment_id=payment.id, seller_id=sellers[seller], position=position,
                                     amount=amount, amount_captured=captured))
        fees.append((payment.id, fee))
    session.flush()
    return sellers, fees


def _values(merchant_id: str, fees, grp=lambda i: 1) -> tuple[str, dict]:
    rows = ", ".join(f"(CAST(:g{i} AS int), CAST(:m{i} AS text), CAST(:p{i} AS text), CAST(:f{i} AS bigint))"
                     for i in range(len(fees)))
    params = {}
    for i, (payment_id, fee) in enumerate(fees):
        params.update({f"g{i}": grp(i), f"m{i}": merchant_id, f"p{i}": payment_id, f"f{i}": fee})
    return f"SELECT * FROM (VALUES {rows}) AS v(grp, merchant_id, payment_id, fee)", params


def test_sql_split_equals_payment_fee_shares_payment_by_payment(db_session):
    from sqlalchemy import text

    merchant = factories.merchant(db_session)
    other = factories.merchant(db_session, name="Other")
    db_session.flush()
    scope = Scope(merchant.id, False)
    _, fees = _setup(db_session, merchant.id, CASES)
    _, foreign = _setup(db_session, other.id, CASES)
    query, params = _values(merchant.id, fees)
    got: dict[str, dict[str, int]] = {}
    for row in db_session.execute(text(f"SELECT payment_id, seller_id, sum(part)::bigint AS part "
                                       f"FROM ({fee_parts_sql(query)}) p GROUP BY 1, 2"), params):
        if row.part:
            got.setdefault(row.payment_id, {})[row.seller_id] = row.part
    expected = {payment_id: shares for payment_id, fee in fees
                if (shares := payment_fee_shares(db_session, scope, payment_id, fee))}
    assert got == expected
    assert {p for p, _ in fees} >= set(expected) and len(expected) == len(CASES) - 2
    # Another merchant's orders are not this book's: its payments named under this merchant split nothing.
    query, params = _values(merchant.id, foreign)
    assert db_session.execute(text(f"SELECT count(*) FROM ({fee_parts_sql(query)}) p"), params).scalar() == 0


def test_seller_fee_totals_sum_per_group_and_seller(db_session):
    merchant = factories.merchant(db_session)
    db_session.flush()
    scope = Scope(merchant.id, False)
    sellers, fees = _setup(db_session, merchant.id, CASES)
    # Three groups (e.g. batches), payments dealt round-robin; a payment may appear in two groups.
    dealt = [(i % 3 + 1, payment_id, fee) for i, (payment_id, fee) in enumerate(fees)] + [(3, fees[0][0], 11)]
    query, params = _values(merchant.id, [(p, f) for _, p, f in dealt], grp=lambda i: dealt[i][0])
    totals = seller_fee_totals(db_session, query, params)
    expected: dict[int, dict[str, int]] = {}
    for grp, group in itertools.groupby(sorted(dealt), key=lambda d: d[0]):
        sums: dict[str, int] = {}
        for _, payment_id, fee in group:
            for seller, part in payment_fee_shares(db_session, scope, payment_id, fee).items():
                sums[seller] = sums.get(seller, 0) + part
        expected[grp] = {seller: part for seller, part in sums.items() if part}
    assert totals == {grp: shares for grp, shares in expected.items() if shares}
    assert set(totals[1]) | set(totals[2]) | set(totals[3]) == set(sellers)
