"""A session that has passed only the password reaches nothing but the second-factor page.

Every route of the app (app.url_map), GET and POST with a valid CSRF token, is asked once by that session and
once by a visitor who never signed in: the session must get exactly what the visitor gets, except that where
the visitor is sent to the login page, the session is sent to the second-factor page. So it never gets a page,
a change or a resource the visitor would not. The URLs carry a real merchant the user owns.
"""
import pytest
from werkzeug.routing import BuildError

from tests import factories
from tests.accounts.conftest import PASSWORD, csrf, csrf_from

SECOND_FACTOR_PAGE = "/login/second-factor"
SETUP_PAGE = "/dashboard/account/second-factor/setup"
# Routes the half-signed-in session may use: its own pages. Logging out is asked last (it ends the session).
OWN_PAGES = {"dashboard.second_factor": SECOND_FACTOR_PAGE, "dashboard.second_factor_setup": SETUP_PAGE}
SKIPPED = {"dashboard.logout"}


def _url(app, rule, merchant_id: str) -> str | None:
    values = {}
    for name in rule.arguments:
        converter = rule._converters.get(name)
        choices = sorted(getattr(converter, "items", None) or [])
        values[name] = {"merchant_id": merchant_id, "mode": "test", "filename": "kassa.css"}.get(
            name, choices[0] if choices else "x_1")
    try:
        with app.test_request_context():
            return app.url_map.bind("localhost").build(rule.endpoint, values, method=None)
    except BuildError:  # pragma: no cover - a converter this walk cannot fill
        return None


def _final(client, method: str, url: str, token: str):
    data = {"csrf_token": token} if method == "POST" else None
    response = client.open(url, method=method, data=data, follow_redirects=True)
    response.close()  # static files and streamed exports hold a file or a cursor until closed
    return response.status_code, response.request.path


def _signed_in_with_password_only(app, email: str):
    client = app.test_client()
    response = client.post("/login", data={"email": email, "password": PASSWORD, "csrf_token": csrf(client, "/login")})
    return client, response


@pytest.mark.parametrize("must_enrol", [False, True], ids=["has-second-factor", "must-set-one-up"])
def test_a_password_only_session_reaches_nothing_else(app, db_session, team_of, must_enrol):
    merchant, users = team_of("owner")
    owner = users["owner"]
    if must_enrol:
        merchant.require_second_factor = True
    else:
        factories.second_factor(db_session, owner)
    db_session.commit()
    own_page = SETUP_PAGE if must_enrol else SECOND_FACTOR_PAGE

    halfway, response = _signed_in_with_password_only(app, owner.email)
    assert response.status_code == 303 and response.headers["Location"].startswith(own_page)
    halfway_token = csrf_from(halfway.get(own_page).get_data(as_text=True))
    visitor = app.test_client()
    visitor_token = csrf(visitor, "/login")

    walked, routes = 0, 0
    for rule in app.url_map.iter_rules():
        routes += 1
        if rule.endpoint in SKIPPED:
            continue
        url = _url(app, rule, merchant.id)
        assert url is not None, rule.rule
        for method in sorted(rule.methods & {"GET", "POST"}):
            status, path = _final(halfway, method, url, halfway_token)
            visitor_status, visitor_path = _final(visitor, method, url, visitor_token)
            where = f"{method} {rule.rule}"
            if rule.endpoint in OWN_PAGES:
                # Its own second-factor page; the other one sends it to its own.
                assert path == own_page, where
                continue
            if visitor_path == "/login" and path != "/login":
                assert path == own_page and status == 200, (where, status, path)
            else:
                assert (status, path) == (visitor_status, visitor_path), (where, status, path, visitor_status)
            walked += 1
    assert routes > 100 and walked > routes  # the whole app (GET and POST), not a handful of routes

    # Still halfway after all that: nothing above completed the sign-in.
    status, path = _final(halfway, "GET", f"/dashboard/{merchant.id}/test/", halfway_token)
    assert path == own_page
    status, path = _final(halfway, "POST", "/logout", halfway_token)
    assert path == "/login" and status == 200
