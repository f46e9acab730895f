"""3-D Secure: the challenge page, approve and fail, redirect and callback."""
import json

from sbx_helpers import verify_signature


def start_challenge(sandbox, return_url=None):
    token = sandbox.tokenize("4000000000003220")["id"]
    extra = {"return_url": return_url} if return_url else {}
    auth = sandbox.a.authorize(token, 1234, **extra).json()
    assert auth["status"] == "requires_action"
    return auth


def test_challenge_page_is_a_plain_form(sandbox):
    auth = start_challenge(sandbox)
    page = sandbox.public.get(auth["action_url"])
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    html = page.text
    assert '<html lang="en">' in html and "<title>" in html
    assert '<form method="post"' in html
    assert 'name="result" value="approve"' in html and 'name="result" value="fail"' in html
    assert "<script" not in html


def test_approve_redirects_and_calls_back(sandbox):
    auth = start_challenge(sandbox, return_url="http://127.0.0.1:5999/c/cs_123/return")
    answer = sandbox.public.post(auth["action_url"], data={"result": "approve"}, allow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["Location"] == "http://127.0.0.1:5999/c/cs_123/return"
    assert sandbox.a.get(f"/v1/authorizations/{auth['id']}").json()["status"] == "authorized"

    headers, event, raw = sandbox.receiver.wait_for("authorization.updated")[0]
    assert verify_signature(headers["Sandbox-Signature"], raw)
    assert event["id"].startswith("cb_")
    assert event["data"]["id"] == auth["id"]
    assert event["data"]["status"] == "authorized"
    assert json.loads(raw) == event

    # A second click changes nothing and sends no second callback.
    again = sandbox.public.post(auth["action_url"], data={"result": "fail"}, allow_redirects=False)
    assert again.status_code == 303
    assert sandbox.a.get(f"/v1/authorizations/{auth['id']}").json()["status"] == "authorized"
    callbacks = sandbox.public.get(sandbox.public_url + "/_admin/callbacks").json()["data"]
    assert [cb["type"] for cb in callbacks] == ["authorization.updated"]


def test_fail_declines_with_authentication_failed(sandbox):
    auth = start_challenge(sandbox)
    answer = sandbox.public.post(auth["action_url"], data={"result": "fail"})
    assert answer.status_code == 200  # no return_url: a result page
    assert "declined" in answer.text
    declined = sandbox.a.get(f"/v1/authorizations/{auth['id']}").json()
    assert (declined["status"], declined["decline_code"]) == ("declined", "authentication_failed")
    _, event, _ = sandbox.receiver.wait_for("authorization.updated")[0]
    assert event["data"]["decline_code"] == "authentication_failed"


def test_pending_challenge_can_be_voided(sandbox):
    auth = start_challenge(sandbox)
    assert sandbox.a.post(f"/v1/authorizations/{auth['id']}/void").json()["status"] == "voided"
    assert "complete" in sandbox.public.get(auth["action_url"]).text


def test_a_challenge_on_request_for_any_card(sandbox):
    """Kassa's risk rules ask for 3-D Secure (``three_d_secure: challenge``): any card is challenged, even as a sale."""
    token = sandbox.tokenize("4242424242424242")["id"]
    auth = sandbox.a.authorize(token, 1500, three_d_secure="challenge", capture=True).json()
    assert auth["status"] == "requires_action" and auth["captured_amount"] == 0
    assert auth["three_d_secure"] == "challenged"
    sandbox.public.post(auth["action_url"], data={"result": "approve"}, allow_redirects=False)
    done = sandbox.a.get(f"/v1/authorizations/{auth['id']}").json()
    assert done["status"] == "authorized" and done["three_d_secure"] == "authenticated"
    plain = sandbox.a.authorize(sandbox.tokenize("4242424242424242")["id"], 1500).json()
    assert plain["status"] == "authorized" and plain["three_d_secure"] is None
    refused = sandbox.a.authorize(sandbox.tokenize("4242424242424242")["id"], 1500, three_d_secure="always")
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "three_d_secure"
