"""The merchant-facing verification example in docs/webhooks.md works against a real delivery."""
import re
from pathlib import Path

from app.jobs.webhooks import run_due
from app.webhooks.ssrf import split_url
from tests.webhooks.conftest import emit, make_endpoint

DOC = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"


def verification_example() -> str:
    section = DOC.read_text().split("## Verifying webhook signatures", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_documented_verification_accepts_a_delivery_and_rejects_a_tampered_one(db_session, book, settings,
                                                                                    receiver):
    _endpoint, secret = make_endpoint(db_session, book, settings, receiver.url(), receiver=receiver)
    emit(db_session, book)
    run_due(db_session, settings)
    [delivery] = receiver.requests

    seen, queued = set(), []
    namespace = {"already_processed": lambda webhook_id: webhook_id in seen or seen.add(webhook_id),
                 "queue_for_processing": queued.append}
    exec(verification_example().replace('"whsec_..."', repr(secret)), namespace)  # noqa: S102 - our own docs
    handle = namespace["handle"]

    assert handle(delivery.body, delivery.headers) == 200
    assert queued and queued[0]["id"] == delivery.webhook_id
    assert handle(delivery.body, delivery.headers) == 200 and len(queued) == 1  # a duplicate is skipped
    assert handle(delivery.body.replace(b"payment.succeeded", b"payment.refunded"), delivery.headers) == 400


def test_internationalized_host_names_are_sent_in_punycode():
    assert split_url("https://bücher.example/hook")[1] == "xn--bcher-kva.example"
