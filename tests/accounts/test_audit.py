"""Audit rows for sign-ins, failed sign-ins, team changes and mode switches; the page; append-only."""
import psycopg
import pytest
from sqlalchemy import select

from app.accounts.audit import AuditEntry
from app.accounts.models import Membership
from tests.accounts.conftest import PASSWORD, audit_rows, csrf, dash, login_as
from tests.conftest import app_connect, owner_connect


def _login(client, email, password=PASSWORD):
    return client.post("/login", data={"email": email, "password": password, "csrf_token": csrf(client, "/signup")},
                       headers={"User-Agent": "AuditTest/1.0"})


def test_sign_ins_are_audited_in_every_merchant_of_the_user(client, db_session, team_of):
    shop_a, users = team_of("owner", name="A")
    shop_b, _ = team_of("owner", name="B")
    db_session.add(Membership(id="mem_audit_b", user_id=users["owner"].id, merchant_id=shop_b.id, role="analyst"))
    db_session.commit()
    email = users["owner"].email

    assert _login(client, email, "wrong password").status_code == 422
    assert _login(client, "nobody@example.com", "wrong password").status_code == 422
    assert _login(client, email).status_code == 303
    client.post("/logout", data={"csrf_token": csrf(client, "/signup")})

    for shop in (shop_a, shop_b):
        actions = [(row.action, row.details.get("reason")) for row in audit_rows(db_session, shop.id)]
        assert actions == [("user.sign_in_failed", "wrong_password"), ("user.signed_in", None),
                           ("user.signed_out", None)]
        signed_in = audit_rows(db_session, shop.id, "user.signed_in")[0]
        assert signed_in.actor_user_id == users["owner"].id and signed_in.actor_label == email
        assert signed_in.ip == "127.0.0.1" and signed_in.user_agent == "AuditTest/1.0"
        assert signed_in.request_id and signed_in.request_id.startswith("req_")
    unknown = [row for row in audit_rows(db_session, action="user.sign_in_failed") if row.merchant_id is None]
    assert [(row.actor_label, row.details["reason"]) for row in unknown] == [("nobody@example.com", "unknown_email")]


def test_team_changes_and_mode_switches_are_audited(client, db_session, team_of):
    merchant, users = team_of("owner", "analyst", "developer")
    analyst = db_session.scalars(select(Membership).where(Membership.user_id == users["analyst"].id)).one()
    developer = db_session.scalars(select(Membership).where(Membership.user_id == users["developer"].id)).one()
    login_as(client, db_session, users["owner"])
    token = csrf(client, dash(merchant.id, "settings/team"))
    client.post(dash(merchant.id, "settings/team/invite"), data={"csrf_token": token, "email": "New@Example.com",
                                                                 "role": "admin"})
    client.post(dash(merchant.id, f"settings/team/members/{analyst.id}/role"),
                data={"csrf_token": token, f"{analyst.id}-role": "developer"})
    client.post(dash(merchant.id, f"settings/team/members/{developer.id}/remove"), data={"csrf_token": token})
    client.post(dash(merchant.id, "switch-mode"), data={"csrf_token": token, "next_endpoint": "dashboard.team"})
    client.post(dash(merchant.id, "settings/branding"), data={"csrf_token": token, "display_name": "Shiny",
                                                              "accent_color": "#123456", "logo_url": ""})

    rows = {row.action: row for row in audit_rows(db_session, merchant.id)}
    assert rows["team.member_invited"].details == {"email": "new@example.com", "role": "admin"}
    assert rows["team.role_changed"].details == {"user": users["analyst"].email, "from": "analyst", "to": "developer"}
    assert rows["team.role_changed"].target == analyst.id
    assert rows["team.member_removed"].details == {"user": users["developer"].email, "role": "developer"}
    assert rows["dashboard.mode_switched"].details == {"from": "test", "to": "live"}
    assert rows["dashboard.mode_switched"].livemode is True
    assert rows["merchant.branding_updated"].details["display_name"]["to"] == "Shiny"
    for row in rows.values():
        assert row.actor_user_id == users["owner"].id


@pytest.mark.parametrize("connect", [app_connect, owner_connect], ids=["app role", "owner role"])
def test_audit_rows_cannot_be_changed_or_deleted(database, db_session, team_of, connect):
    from app.accounts.audit import audit

    merchant, users = team_of("owner")
    entry_id = audit(db_session, "user.signed_in", merchant_id=merchant.id, actor_user_id=users["owner"].id).id
    db_session.commit()
    db_session.close()  # hold no lock on audit_log while TRUNCATE is tried
    with connect(database) as conn:
        # A lock wait would mean a test bug (a session left open), not a pass: fail fast instead of hanging.
        conn.execute("SET lock_timeout = '10s'")
        conn.commit()
        for statement in (f"UPDATE audit_log SET action = 'nothing' WHERE id = '{entry_id}'",
                          f"DELETE FROM audit_log WHERE id = '{entry_id}'",
                          "TRUNCATE audit_log"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
            conn.rollback()
    assert db_session.get(AuditEntry, entry_id).action == "user.signed_in"


def test_audit_log_page_lists_entries_newest_first_with_htmx_paging(client, db_session, team_of, monkeypatch):
    from app.accounts.audit import audit
    from app.dashboard import settings_views

    merchant, users = team_of("owner")
    for n in range(5):
        audit(db_session, f"test.action_{n}", merchant_id=merchant.id, actor_label=f"actor{n}@example.com")
        db_session.commit()  # one transaction each: distinct created_at
    monkeypatch.setattr(settings_views, "AUDIT_PAGE_SIZE", 3)
    login_as(client, db_session, users["owner"])
    html = client.get(dash(merchant.id, "settings/audit-log")).get_data(as_text=True)
    assert html.index("test.action_4") < html.index("test.action_3") < html.index("test.action_2")
    assert "test.action_1" not in html and "Show older entries" in html
    older = html.split('hx-get="')[1].split('"')[0].replace("&amp;", "&")
    fragment = client.get(older, headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "<html" not in fragment and "test.action_1" in fragment and "test.action_0" in fragment
    assert "test.action_4" not in fragment and "Show older entries" not in fragment
    # A malformed cursor is ignored rather than an error.
    assert client.get(dash(merchant.id, "settings/audit-log?before=nonsense")).status_code == 200
