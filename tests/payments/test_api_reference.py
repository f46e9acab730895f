"""The dashboard's API reference page renders the OpenAPI document the API serves, as a reference: code
formatting, every accepted value, examples, and curl commands the API accepts as they are."""
import io
import shlex
from html import unescape

from werkzeug.datastructures import MultiDict

from app.accounts.sessions import start_session
from app.api.openapi import build_document
from app.dashboard.api_reference import KEY_PLACEHOLDER, reference
from app.money import CURRENCY_EXPONENTS
from tests import factories
from tests.disputes.test_api import pdf_bytes


def _page(client, db_session, merchant) -> str:
    user = factories.member(db_session, merchant, role="analyst")
    _row, token = start_session(db_session, user, second_factor_passed=True)
    db_session.commit()
    with client.session_transaction() as cookie:
        cookie["sid"] = token
    response = client.get(f"/dashboard/{merchant.id}/test/developers/api-reference")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def test_api_reference_page_lists_every_operation(client, db_session, merchant):
    page = _page(client, db_session, merchant)
    for path, item in build_document()["paths"].items():
        for method in item:
            assert f"{method.upper()} {path}" in page
    assert "Idempotency-Key" in page


def test_the_reference_reads_as_a_reference(client, db_session, merchant):
    page = _page(client, db_session, merchant)
    assert "`" not in page  # Markdown-style backticks become code
    assert "answers <code>processing</code>" in page
    for currency in CURRENCY_EXPONENTS:  # every currency the API takes, not the first eight
        assert f"<code>{currency}</code>" in page
    assert "(upper or lower case)" in page
    for operation in reference("http://localhost/")["operations"]:
        assert operation["response_example"] and unescape(page).count(operation["response_example"]) >= 1
        assert operation["curl"] in unescape(page)
        if operation["method"] == "POST" and operation["body"] and operation["body_format"] != "multipart/form-data":
            assert operation["request_example"] in unescape(page), operation["id"]
    assert f"-u {KEY_PLACEHOLDER}:" in page
    # The upload's form and the download's answer (a file, not JSON) are shown as what they are.
    assert "Body (multipart/form-data)" in page and "-F file=@receipt-1001.pdf" in unescape(page)
    assert "Content-Disposition: attachment; filename=" in unescape(page)


def _run_curl(client, command: str, key: str):
    """Send the request a copied curl command describes, through the test client, with the key filled in."""
    words = shlex.split(command.replace("\\\n", " ").replace(KEY_PLACEHOLDER, key))
    assert words[0] == "curl"
    method, url, headers, fields, files = "POST", None, {}, [], []
    words = iter(words[1:])
    for word in words:
        if word == "-G":
            method = "GET"
        elif word == "-X":
            method = next(words)
        elif word == "-u":
            headers["Authorization"] = f"Bearer {next(words).rstrip(':')}"
        elif word == "-H":
            name, _, value = next(words).partition(": ")
            headers[name] = value
        elif word == "-d":
            fields.append(tuple(next(words).split("=", 1)))
        elif word == "-F":  # multipart; name=@file sends that file (a real PDF here)
            name, value = next(words).split("=", 1)
            files.append((name, (io.BytesIO(pdf_bytes()), value[1:])) if value.startswith("@") else (name, value))
        elif word != "-OJ":  # -OJ: save the answer under the name the server gives it
            url = word
    if not fields and not files and method == "POST" and "-X" not in command:
        method = "GET"
    path = url.removeprefix("http://localhost")
    if method == "GET":
        return client.get(path, headers=headers, query_string=MultiDict(fields))
    if files:
        return client.open(path, method=method, headers=headers, content_type="multipart/form-data",
                           data=MultiDict(files))
    return client.open(path, method=method, headers=headers, data=MultiDict(fields))


def test_the_curl_commands_are_requests_the_api_takes(client, db_session, merchant):
    """Operations on collections run as copied (form-encoded, with the key); those on one object reach the API
    and find no such object (the example ids are the reference's own)."""
    from app.accounts.api_keys import SECRET, create_key
    from app.api.auth import hmac_key
    from app.scoping import Scope

    key = create_key(db_session, Scope(merchant.id, False), SECRET, hmac_key=hmac_key()).plaintext
    db_session.commit()
    for operation in reference("http://localhost/")["operations"]:
        response = _run_curl(client, operation["curl"], key)
        # createRefund, createPayout (a seller) and the value list items' collection name an object by the
        # reference's own example id.
        named = ("createRefund", "createPayout", "createValueListItem", "listValueListItems")
        if "{" in operation["path"] or operation["id"] in named:
            assert response.status_code == 404, (operation["id"], response.json)
        else:
            assert response.status_code == 200, (operation["id"], response.json)


def test_api_reference_needs_membership(client, merchant):
    response = client.get(f"/dashboard/{merchant.id}/test/developers/api-reference")
    assert response.status_code in (302, 303, 401, 404)
