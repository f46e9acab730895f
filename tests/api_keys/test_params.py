"""app/api/params.py: typed parameter access with errors that name the parameter."""
import pytest
from sqlalchemy import func, select
from werkzeug.datastructures import MultiDict

from app.api.errors import ApiError
from app.api.params import METADATA_KEY_MAX, METADATA_MAX_KEYS, METADATA_VALUE_MAX, Params, parse_form
from app.payments.models import Payment
from tests.api_keys.conftest import bearer


def _error(call):
    with pytest.raises(ApiError) as caught:
        call()
    assert caught.value.status == 400
    return caught.value.param, caught.value.code


def test_strings():
    p = Params({"name": "Ada", "empty": "", "long": "x" * 11, "number": 5})
    assert p.string("name", required=True) == "Ada"
    assert p.string("absent") is None and p.string("absent2", default="d") == "d"
    assert p.string("empty", allow_empty=True) == ""
    assert _error(lambda: p.string("empty")) == ("empty", "parameter_invalid")
    assert _error(lambda: p.string("long", max_length=10)) == ("long", "parameter_invalid")
    assert _error(lambda: p.string("number")) == ("number", "parameter_invalid")
    assert _error(lambda: p.string("missing", required=True)) == ("missing", "parameter_missing")


@pytest.mark.parametrize("value", [True, False, 1.0, 1.5, "12", None and 0, [1], {"a": 1}, 2**63])
def test_json_integers_reject_everything_but_integers(value):
    p = Params({"amount": value})
    assert _error(lambda: p.integer("amount", required=True))[0] == "amount"


def test_integers_and_bounds():
    p = Params({"amount": 100, "neg": -1, "null": None})
    assert p.integer("amount", required=True, min_value=1, max_value=100) == 100
    assert _error(lambda: p.integer("neg", min_value=0)) == ("neg", "parameter_invalid")
    assert _error(lambda: p.integer("amount", max_value=99)) == ("amount", "parameter_invalid")
    assert p.integer("null") is None  # JSON null means "not given"
    assert _error(lambda: p.integer("null", required=True)) == ("null", "parameter_missing")


def test_form_values_are_strings():
    p = Params({"amount": "100", "neg": "-5", "float": "1.5", "plus": "+1", "flag": "true", "huge": "9" * 30},
               strings=True)
    assert p.integer("amount") == 100
    assert p.integer("neg") == -5
    assert p.boolean("flag") is True
    for name in ("float", "plus", "huge"):
        assert _error(lambda: p.integer(name))[0] == name


def test_booleans():
    p = Params({"yes": True, "one": 1, "text": "true"})
    assert p.boolean("yes") is True
    assert _error(lambda: p.boolean("one"))[0] == "one"
    assert _error(lambda: p.boolean("text"))[0] == "text"  # JSON must use a real boolean


def test_enum_currency_email():
    p = Params({"mode": "manual", "bad": "sometimes", "currency": "usd", "cur2": "XXX", "cur3": 840,
                "email": " Ada@Example.com", "email2": "not-an-email"})
    assert p.enum("mode", ("automatic", "manual")) == "manual"
    assert p.enum("absent", ("a", "b"), default="a") == "a"
    assert _error(lambda: p.enum("bad", ("automatic", "manual")))[0] == "bad"
    assert p.currency("currency") == "USD"
    assert _error(lambda: p.currency("cur2"))[0] == "cur2"
    assert _error(lambda: p.currency("cur3"))[0] == "cur3"
    assert _error(lambda: p.email("email"))[0] == "email"  # surrounding space is not an address
    assert _error(lambda: p.email("email2"))[0] == "email2"
    assert Params({"e": "ada@example.com"}).email("e") == "ada@example.com"


def test_metadata_limits():
    assert Params({}).metadata() == {}
    assert Params({"metadata": {"a": "1", "n": 5}}).metadata() == {"a": "1", "n": "5"}
    too_many = {f"k{i}": "v" for i in range(METADATA_MAX_KEYS + 1)}
    assert _error(lambda: Params({"metadata": too_many}).metadata()) == ("metadata", "parameter_invalid")
    assert Params({"metadata": dict(list(too_many.items())[:METADATA_MAX_KEYS])}).metadata()
    long_key = "k" * (METADATA_KEY_MAX + 1)
    assert _error(lambda: Params({"metadata": {long_key: "v"}}).metadata())[0] == f"metadata[{long_key}]"
    assert _error(lambda: Params({"metadata": {"k": "v" * (METADATA_VALUE_MAX + 1)}}).metadata())[0] == "metadata[k]"
    assert Params({"metadata": {"k": "v" * METADATA_VALUE_MAX}}).metadata()
    assert _error(lambda: Params({"metadata": {"k": {"nested": 1}}}).metadata())[0] == "metadata[k]"
    assert _error(lambda: Params({"metadata": {"k": True}}).metadata())[0] == "metadata[k]"
    assert _error(lambda: Params({"metadata": ["a"]}).metadata())[0] == "metadata"


def test_unknown_parameters_are_named():
    p = Params({"amount": 1, "amuont": 2})
    p.integer("amount")
    assert _error(p.done) == ("amuont", "parameter_unknown")
    assert _error(lambda: Params({"x": 1}, allowed={"amount"})) == ("x", "parameter_unknown")
    Params({"amount": 1}, allowed={"amount", "currency"}).done()  # allowed alone counts as known


def test_nested_objects_name_their_parameters():
    p = Params({"splits": [{"seller": "sel_1", "amount": 10}, {"seller": "sel_2", "amount": "x"}],
                "billing": {"city": "Oslo", "zip": 1}})
    first, second = p.objects("splits", required=True)
    assert first.string("seller") == "sel_1" and first.integer("amount") == 10
    assert _error(lambda: second.integer("amount")) == ("splits[1][amount]", "parameter_invalid")
    billing = p.object("billing")
    assert billing.string("city") == "Oslo"
    assert _error(billing.done) == ("billing[zip]", "parameter_unknown")
    assert _error(lambda: Params({"splits": [1]}).objects("splits"))[0] == "splits[0]"
    assert _error(lambda: Params({"splits": []}).objects("splits", required=True))[0] == "splits"


def test_form_brackets():
    form = MultiDict([("amount", "100"), ("metadata[order]", "42"), ("splits[0][amount]", "60"),
                      ("splits[1][amount]", "40"), ("tags[]", "a"), ("tags[]", "b")])
    assert parse_form(form) == {"amount": "100", "metadata": {"order": "42"},
                                "splits": [{"amount": "60"}, {"amount": "40"}], "tags": ["a", "b"]}
    assert _error(lambda: parse_form(MultiDict([("a", "1"), ("a", "2")]))) == ("a", "parameter_invalid")
    assert _error(lambda: parse_form(MultiDict([("a", "1"), ("a[b]", "2")])))[0] == "a"
    assert _error(lambda: parse_form(MultiDict([("a[b]", "2"), ("a", "1")])))[0] == "a"
    assert _error(lambda: parse_form(MultiDict([("a[b", "1")])))[0] == "a[b"
    assert _error(lambda: parse_form(MultiDict([("s[0][x]", "1"), ("s[2][x]", "1")])))[0] == "s"
    assert parse_form(MultiDict([("0", "x")])) == {"0": "x"}  # top level stays an object


def _message(call) -> str:
    with pytest.raises(ApiError) as caught:
        call()
    return caught.value.message


@pytest.mark.parametrize("value", [100_000_000, 10**19, 10**30, 10**5000, 1e30, float("inf")],
                         ids=["1e8", "1e19", "1e30", "1e5000", "float-1e30", "infinity"])
def test_a_json_number_out_of_range_names_the_range_whatever_its_size(value):
    p = Params({"amount": value})
    assert _message(lambda: p.integer("amount", min_value=1, max_value=99_999_999)) == \
        "amount must be at most 99999999."
    assert _message(lambda: Params({"n": -value}).integer("n", min_value=1)) == "n must be at least 1."


@pytest.mark.parametrize("digits", [9, 19, 20, 25, 5000])
def test_a_form_number_out_of_range_names_the_range_whatever_its_length(digits):
    p = Params({"amount": "9" * digits}, strings=True)
    assert _message(lambda: p.integer("amount", max_value=99_999_999)) == "amount must be at most 99999999."
    assert _message(lambda: Params({"n": "9" * 25}, strings=True).integer("n")) == \
        "n must be at most 9223372036854775807."


def _payments(db_session) -> int:
    db_session.rollback()
    return db_session.scalar(select(func.count()).select_from(Payment))


def test_over_http_a_huge_amount_is_refused_with_the_range(client, db_session, secret_key):
    before = _payments(db_session)
    headers = {**bearer(secret_key.plaintext), "Content-Type": "application/json"}
    for digits in ("1" + "0" * 30, "9" * 5000):
        raw = '{"amount": ' + digits + ', "currency": "usd"}'
        response = client.post("/v1/payments", headers=headers, data=raw)
        assert response.status_code == 400
        assert (response.json["error"]["param"], response.json["error"]["message"]) == \
            ("amount", "amount must be at most 99999999.")
    form = client.post("/v1/payments", headers=bearer(secret_key.plaintext),
                       data={"amount": "9" * 40, "currency": "usd"})
    assert form.json["error"]["message"] == "amount must be at most 99999999."
    assert _payments(db_session) == before


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "text/plain", None])
def test_a_json_body_without_a_json_content_type_is_refused_saying_so(client, db_session, secret_key, content_type):
    before = _payments(db_session)
    headers = bearer(secret_key.plaintext) | ({"Content-Type": content_type} if content_type else {})
    response = client.post("/v1/payments", headers=headers, data=' {"amount": 2000, "currency": "usd"}')
    assert response.status_code == 400
    error = response.json["error"]
    assert error["code"] == "json_content_type_missing" and "Content-Type: application/json" in error["message"]
    assert _payments(db_session) == before


def test_post_parameters_in_the_query_string_are_refused_saying_so(client, db_session, secret_key):
    before = _payments(db_session)
    response = client.post("/v1/payments?amount=2000&currency=usd", headers=bearer(secret_key.plaintext))
    assert response.status_code == 400
    error = response.json["error"]
    assert (error["code"], error["param"]) == ("parameter_in_query", "amount")
    assert "request body, not in the query string" in error["message"]
    with_body = client.post("/v1/payments?currency=usd", headers=bearer(secret_key.plaintext), data={"amount": "1"})
    assert with_body.json["error"]["param"] == "currency"
    assert _payments(db_session) == before


def test_a_json_body_nested_too_deeply_to_parse_is_invalid_json(client, db_session, secret_key):
    """Nesting beyond any request Kassa takes is refused as invalid JSON, also where Python's parser would
    follow it (and later code recurse too deep) or give up with a RecursionError: a 400, never a 500."""
    before = _payments(db_session)
    headers = {**bearer(secret_key.plaintext), "Content-Type": "application/json"}
    for depth in (65, 900, 100_000):  # beyond the bound; where the parser still follows; where it gives up
        raw = '{"amount": 2000, "currency": "usd", "metadata": ' + "[" * depth + "]" * depth + "}"
        response = client.post("/v1/payments", headers=headers, data=raw)
        assert response.status_code == 400
        error = response.json["error"]
        assert error["code"] == "invalid_json" and "nested too deeply" in error["message"]
    assert _payments(db_session) == before
