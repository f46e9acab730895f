"""The dashboard's API reference page renders the same OpenAPI document the API serves."""
from app.accounts.sessions import start_session
from app.api.openapi import build_document
from tests import factories


def test_api_reference_page_lists_every_operation(client, db_session, merchant):
    user = factories.member(db_session, merchant, role="analyst")
    _row, token = start_session(db_session, user, second_factor_passed=True)
    db_session.commit()
    with client.session_transaction() as cookie:
        cookie["sid"] = token
    response = client.get(f"/dashboard/{merchant.id}/test/developers/api-reference")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    for path, item in build_document()["paths"].items():
        for method in item:
            assert f"{method.upper()} {path}" in page
    assert "Idempotency-Key" in page


def test_api_reference_needs_membership(client, merchant):
    response = client.get(f"/dashboard/{merchant.id}/test/developers/api-reference")
    assert response.status_code in (302, 303, 401, 404)
