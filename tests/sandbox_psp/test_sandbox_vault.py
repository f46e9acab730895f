"""The token vault on the public listener: validation, CORS, no card data at rest."""
from sbx_helpers import ALLOWED_ORIGIN, FUTURE_YEAR


def post_token(sandbox, headers=None, **fields):
    body = {"number": "4242424242424242", "exp_month": 12, "exp_year": FUTURE_YEAR, "cvc": "123", **fields}
    return sandbox.public.post(sandbox.public_url + "/v1/tokens", json=body, headers=headers or {})


def test_tokenize_returns_card_details_and_stable_fingerprint(sandbox):
    first = sandbox.tokenize("4242424242424242")
    again = sandbox.tokenize("4242424242424242")
    other = sandbox.tokenize("5555555555554444")
    assert first["id"].startswith("tok_") and first["id"] != again["id"]
    assert first["card"] == {"brand": "visa", "last4": "4242", "exp_month": 12, "exp_year": FUTURE_YEAR,
                             "fingerprint": first["card"]["fingerprint"], "risk_hint": None,
                             "bin": "424242", "funding": "credit", "country": "US"}
    assert first["card"]["fingerprint"] == again["card"]["fingerprint"] != other["card"]["fingerprint"]
    assert other["card"]["brand"] == "mastercard"


def test_tokenize_accepts_form_posts(sandbox):
    response = sandbox.public.post(sandbox.public_url + "/v1/tokens", data={
        "number": "4000000000000259", "exp_month": "12", "exp_year": str(FUTURE_YEAR), "cvc": "123"})
    assert response.status_code == 201
    assert response.json()["card"]["last4"] == "0259"


def test_tokenize_rejects_invalid_input(sandbox):
    cases = [({"number": "4242424242424241"}, "invalid_number", "number"),
             ({"exp_year": 2001}, "invalid_expiry", "exp_year"),
             ({"exp_month": 0}, "invalid_expiry", "exp_month"),
             ({"cvc": "12a"}, "invalid_cvc", "cvc")]
    for fields, code, param in cases:
        response = post_token(sandbox, **fields)
        assert response.status_code == 400
        assert response.json()["error"]["code"] == code
        assert response.json()["error"]["param"] == param


def test_no_card_number_at_rest_or_in_logs(sandbox):
    token = post_token(sandbox, number="4000000000009995").json()
    post_token(sandbox, number="4000000000009995", cvc="73")  # a rejected card is not logged either
    sandbox.a.authorize(token["id"])
    for path in [*sandbox.data_dir.iterdir(), sandbox.log_path]:
        try:
            content = path.read_bytes()
        except FileNotFoundError:  # SQLite's -wal/-shm files come and go
            continue
        assert b"4000000000009995" not in content, path


def test_cors_only_for_the_configured_origin(sandbox):
    url = sandbox.public_url + "/v1/tokens"
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "Content-Type"}
    allowed = sandbox.public.options(url, headers={"Origin": ALLOWED_ORIGIN, **preflight})
    assert allowed.status_code == 204
    assert allowed.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
    assert "POST" in allowed.headers["Access-Control-Allow-Methods"]
    assert "Content-Type" in allowed.headers["Access-Control-Allow-Headers"]

    other = sandbox.public.options(url, headers={"Origin": "http://evil.example", **preflight})
    assert "Access-Control-Allow-Origin" not in other.headers

    ok = post_token(sandbox, headers={"Origin": ALLOWED_ORIGIN})
    assert ok.status_code == 201
    assert ok.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
    refused = post_token(sandbox, headers={"Origin": "http://evil.example"})
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "origin_not_allowed"
    assert "Access-Control-Allow-Origin" not in refused.headers
    # Errors reach the allowed browser origin too, so the page can show them.
    invalid = post_token(sandbox, headers={"Origin": ALLOWED_ORIGIN}, cvc="1")
    assert invalid.status_code == 400
    assert invalid.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN


def test_acquirers_share_the_vault(sandbox):
    token = sandbox.tokenize("4100000000000019")
    for acquirer in (sandbox.a, sandbox.b):
        response = acquirer.get(f"/v1/tokens/{token['id']}")
        assert response.status_code == 200
        assert response.json()["card"] == token["card"]
        assert response.json()["card"]["risk_hint"] == "fraudulent"


def test_tokens_carry_what_risk_rules_read(sandbox):
    """BIN, funding and issuing country (the country and prepaid test cards), and the fraud card's hint."""
    assert sandbox.tokenize("4000008260000000")["card"]["country"] == "GB"
    assert sandbox.tokenize("5105105105105100")["card"]["funding"] == "prepaid"
    fraud = sandbox.tokenize("4100000000000019")
    assert fraud["card"]["risk_hint"] == "fraudulent" and fraud["card"]["bin"] == "410000"
    looked_up = sandbox.a.get(f"/v1/tokens/{fraud['id']}")  # the acquirer API Kassa reads before authorizing
    assert looked_up.status_code == 200 and looked_up.json()["card"] == fraud["card"]
