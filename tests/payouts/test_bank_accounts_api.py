"""The API reads a seller's bank account masked and cannot change it: bank accounts change only in the dashboard
after re-authentication. Another merchant's key finds nothing."""
from app.payments.service import create_seller
from app.payouts.bank_account_models import BankAccount
from app.payouts.bank_accounts import Actor, set_bank_account
from app.scoping import Scope
from tests import factories
from tests.payments.conftest import mint_key

IBAN = "DE89370400440532013000"


def test_the_api_reads_the_account_masked_and_cannot_change_it(client, db_session):
    merchant = factories.merchant(db_session, name="API Shop")
    scope = Scope(merchant.id, False)
    seller = create_seller(db_session, scope, name="Ann")
    db_session.commit()
    headers = {"Authorization": f"Bearer {mint_key(db_session, merchant.id)}"}
    path = f"/v1/sellers/{seller.id}/bank_account"
    none = client.get(path, headers=headers)
    assert none.status_code == 404 and none.json["error"]["code"] == "resource_missing"
    set_bank_account(db_session, scope, seller_id=seller.id, holder_name="Ann Potter", country="DE",
                     currency="EUR", iban=IBAN, actor=Actor(None, None))
    db_session.commit()
    response = client.get(path, headers=headers)
    assert response.status_code == 200
    assert (response.json["last4"], response.json["seller"], response.json["flagged"]) == ("3000", seller.id, False)
    assert IBAN not in response.get_data(as_text=True) and "0532013000" not in response.get_data(as_text=True)
    # No API route writes a bank account, whatever the method.
    for method in ("post", "put", "patch", "delete"):
        refused = getattr(client, method)(path, headers=headers, json={"iban": "FR1420041010050500013M02606"})
        assert refused.status_code in (404, 405)
    assert client.post(f"/v1/sellers/{seller.id}", headers=headers,
                       data={"bank_account[iban]": "FR1420041010050500013M02606"}).status_code in (400, 404, 405)
    db_session.rollback()
    assert [row.last4 for row in db_session.scalars(scope.select(BankAccount))] == ["3000"]
    # Another merchant's key: the seller does not exist for it.
    other = factories.merchant(db_session, name="Other")
    db_session.commit()
    foreign = client.get(path, headers={"Authorization": f"Bearer {mint_key(db_session, other.id)}"})
    assert foreign.status_code == 404 and "3000" not in foreign.get_data(as_text=True)
