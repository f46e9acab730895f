"""The dashboard's pages on a 1366 px wide laptop screen, in headless Chromium: nothing is clipped or
pushes the page sideways, sellers are named, no console errors, and axe finds no serious violation.

Every page is filled with long, realistic values (long emails, names, descriptions, ids), since a table
fits an empty screen easily.
"""
import pytest

from app.accounts.api_keys import create_key
from app.accounts.audit import audit
from app.payments import idempotency
from app.payments.service import create_seller, default_seller_id
from tests.browser import DEFAULT_TIMEOUT_MS, axe_violations
from tests.dashboard.conftest import browser_login, paid
from tests.dashboard.test_browser import shot

LAPTOP = {"width": 1366, "height": 768}

# Every element wider than the window, or whose content is cut off by a parent that hides overflow.
OVERFLOWS = """() => {
  const width = document.documentElement.clientWidth;
  const found = [];
  for (const el of document.querySelectorAll('main *')) {
    const box = el.getBoundingClientRect();
    if (box.width === 0 || getComputedStyle(el).visibility === 'hidden') continue;
    if (el.closest('.visually-hidden, details:not([open])')) continue;
    if (box.right > width + 1) found.push(`${el.tagName.toLowerCase()}.${el.className} right=${Math.round(box.right)}`);
    const style = getComputedStyle(el);
    if (['hidden', 'clip'].includes(style.overflowX) && el.scrollWidth > el.clientWidth + 1
        && !['SUMMARY', 'INPUT', 'TEXTAREA', 'SELECT'].includes(el.tagName))
      found.push(`clipped ${el.tagName.toLowerCase()}.${el.className} ${el.scrollWidth}>${el.clientWidth}`);
  }
  if (document.documentElement.scrollWidth > width + 1) found.push(`page ${document.documentElement.scrollWidth}>${width}`);
  return found;
}"""


@pytest.fixture
def laptop(browser):
    context = browser.new_context(viewport=LAPTOP)
    # Three times the suite's browser timeout: full-page screenshots of long pages on a loaded 2-CPU machine.
    context.set_default_timeout(3 * DEFAULT_TIMEOUT_MS)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.on("response", lambda response: errors.append(f"{response.status} {response.url}")
           if response.status >= 400 else None)
    tab.console_errors = errors
    yield tab
    context.close()


def test_every_page_fits_a_laptop_screen(app, laptop, live_server, db_session, shop, jobs):
    s = shop(name="Marketplace With A Rather Long Company Name GmbH & Co. KG")
    seller = create_seller(db_session, s.scope, name="Kunsthandwerk Müller-Lüdenscheidt und Söhne")
    own = default_seller_id(db_session, s.scope)
    db_session.commit()
    long_email = "a.very.long.customer.address.for.testing@subdomain.example-shop.co.uk"
    payment_id = paid(db_session, s.scope, jobs, amount=123456, currency="EUR", customer_email=long_email,
                      description="Order 2026-000123 — handmade oak dining table with six matching chairs",
                      split=[{"seller": seller.id, "amount": 100000, "fee": 3000},
                             {"seller": own, "amount": 23456, "fee": 0}])
    for amount in (1000, 2345):
        idempotency.execute(db_session, s.scope, "refund.create",
                            {"payment": payment_id, "amount": amount, "reason": "requested_by_customer",
                             "metadata": {}}, key=None, deps=jobs.deps)
        jobs.run()
    for name in ("Production server in eu-central-1 (primary)", "Reporting cron on the analytics box"):
        create_key(db_session, s.scope, "secret", hmac_key=app.config["API_KEY_HMAC_KEY"].encode(), name=name)
    for n in range(3):
        audit(db_session, "dashboard.mode_switched", merchant_id=s.merchant.id, livemode=False,
              actor_user_id=s.users["owner"].id, actor_label=s.users["owner"].email,
              user_agent="Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0",
              ip="2001:0db8:85a3:0000:0000:8a2e:0370:7334", details={"from": "test", "to": "live", "n": n})
    db_session.commit()

    browser_login(app, laptop.context, db_session, s.users["owner"], live_server.url("/"))
    pages = ["", "payments", f"payments/{payment_id}", "refunds", "balances", "developers/api-keys",
             "developers/webhooks", "developers/logs", "developers/api-reference", "settings/audit-log",
             "settings/team", "settings/branding"]
    problems = {}
    for path in pages:
        response = laptop.goto(live_server.url(s.url(path)))
        assert response.status == 200, path
        found = laptop.evaluate(OVERFLOWS) + [f"axe {v['id']}: {[n['target'] for n in v['nodes']][:3]}"
                                               for v in axe_violations(laptop)]
        if found:
            problems[path] = found[:6]
        label = "payment-detail" if path.startswith("payments/") else (path.replace("/", "-") or "home")
        shot(laptop, f"laptop-{label}")
    assert not problems, "\n".join(f"{path}: {found}" for path, found in problems.items())
    assert laptop.console_errors == []

    laptop.goto(live_server.url(s.url(f"payments/{payment_id}")))
    assert laptop.get_by_role("link", name=seller.name).is_visible()
    laptop.goto(live_server.url(s.url("balances")))
    assert laptop.get_by_role("rowheader", name=seller.name).is_visible()

