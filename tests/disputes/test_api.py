"""/v1/disputes and /v1/files in-process: listing and filters, evidence drafts with Stripe's limits, submission and
acceptance carried by the worker's job, submission after due_by refused, files checked by content and served only
as downloads, one merchant never reaching another's disputes or files."""
import io
import time
from dataclasses import dataclass, field

import pytest
from pypdf import PdfWriter

from app.disputes.models import Dispute, File
from app.jobs.disputes import run_action
from app.psp.interfaces import Lookup, Outcome, PspResult
from app.psp.sandbox import dispute_data as normalized
from tests import factories
from tests.disputes.helpers import DAY, captured, deliver, deps, dispute_data
from tests.payments.conftest import mint_key


def pdf_bytes(pages: int = 1) -> bytes:
    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(width=200, height=200)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 17


def upload(client, auth, content: bytes, name: str = "receipt.pdf", purpose: str = "dispute_evidence"):
    return client.post("/v1/files", headers=auth, content_type="multipart/form-data",
                       data={"purpose": purpose, "file": (io.BytesIO(content), name)})


@dataclass
class ScriptedDisputes:
    """A router standing in for the PSP's dispute calls; records them."""

    answers: list = field(default_factory=list)
    calls: list = field(default_factory=list)

    def _answer(self, reference: str, status: str, count: int) -> PspResult:
        if self.answers:
            return self.answers.pop(0)
        sandbox = {"id": reference, "amount": 4000, "currency": "USD", "reason": "fraudulent", "status": status,
                   "created": int(time.time()), "evidence_details": {"due_by": None, "submission_count": count},
                   "balance_transactions": [{"type": "dispute", "amount": -4000, "fee": 1500}]}
        return PspResult(Outcome.SUCCEEDED, "sandbox", reference, status=status, raw=normalized(sandbox))

    def submit_dispute_evidence(self, connector, reference, evidence, files, key, **owner):
        self.calls.append(("submit", reference, evidence, [(f.field, f.file_id, f.content[:5]) for f in files], key))
        return self._answer(reference, "under_review", 1)

    def close_dispute(self, connector, reference, key, **owner):
        self.calls.append(("close", reference, key))
        return self._answer(reference, "lost", 0)

    def retrieve_dispute(self, connector, reference, **owner):
        self.calls.append(("retrieve", reference))
        return Lookup.unknown(connector, "server_error", "down")


@pytest.fixture
def disputed(db_session, shop):
    """A captured payment of the shop with a dispute awaiting a response; (payment, dispute id)."""
    payment = captured(db_session, shop["scope"], amount=4000)
    deliver(db_session, payment, f"cb_{payment['id']}", "dispute.created",
            dispute_data(f"dp_{payment['id']}", "needs_response", 4000))
    dispute = db_session.scalars(shop["scope"].select(Dispute, Dispute.payment_id == payment["id"])).one()
    db_session.commit()
    return payment, dispute.id


def test_list_retrieve_and_filter(client, auth, db_session, shop, disputed):
    payment, dispute_id = disputed
    listed = client.get("/v1/disputes", headers=auth).json
    assert [d["id"] for d in listed["data"]] == [dispute_id]
    body = client.get(f"/v1/disputes/{dispute_id}", headers=auth).json
    assert (body["status"], body["amount"], body["payment"], body["funds_withdrawn"], body["fee"]) == (
        "needs_response", 4000, payment["id"], True, {"amount": 1500, "currency": "USD"})
    assert body["evidence_details"]["due_by"] > time.time() + 6 * DAY
    assert client.get("/v1/disputes", headers=auth, query_string={"status": "won"}).json["data"] == []
    assert len(client.get("/v1/disputes", headers=auth, query_string={"payment": payment["id"]}).json["data"]) == 1
    assert client.get("/v1/disputes", headers=auth, query_string={"created[gt]": int(time.time()) + 60}).json[
        "data"] == []
    shown = client.get(f"/v1/payments/{payment['id']}", headers=auth).json
    assert shown["disputed"] is True and shown["dispute"]["id"] == dispute_id
    # The seller's balance already shows the withdrawal, and the dispute fee: a merchant without sellers of its own
    # has its default seller bear fees (issue 22, app/payouts/fees.py).
    balance = client.get("/v1/balance", headers=auth).json
    assert [s["amount"] for s in balance["sellers"]] == [-1500]


def test_evidence_is_a_draft_checked_on_every_save(client, auth, db_session, disputed):
    _payment, dispute_id = disputed
    saved = client.post(f"/v1/disputes/{dispute_id}", headers=auth, json={
        "evidence": {"customer_name": "Ann Example", "product_description": "A lamp"}, "metadata": {"case": "7"}})
    assert saved.status_code == 200, saved.json
    assert saved.json["evidence"]["customer_name"] == "Ann Example" and saved.json["status"] == "needs_response"
    assert saved.json["evidence_details"]["has_evidence"] is True and saved.json["metadata"] == {"case": "7"}
    cleared = client.post(f"/v1/disputes/{dispute_id}", headers=auth, json={"evidence": {"customer_name": ""}}).json
    assert cleared["evidence"]["customer_name"] is None and cleared["evidence"]["product_description"] == "A lamp"

    long = client.post(f"/v1/disputes/{dispute_id}", headers=auth,
                       json={"evidence": {"uncategorized_text": "x" * 20_001}})
    assert long.status_code == 400 and long.json["error"]["param"] == "evidence[uncategorized_text]"
    fields = ["uncategorized_text", "product_description", "access_activity_log", "refund_refusal_explanation",
              "cancellation_rebuttal", "duplicate_charge_explanation", "customer_name", "billing_address"]
    too_much = client.post(f"/v1/disputes/{dispute_id}", headers=auth,
                           json={"evidence": {name: "y" * 19_000 for name in fields}})
    assert too_much.status_code == 400 and too_much.json["error"]["code"] == "evidence_too_long"
    unknown = client.post(f"/v1/disputes/{dispute_id}", headers=auth, json={"evidence": {"favourite_colour": "red"}})
    assert unknown.status_code == 400 and unknown.json["error"]["code"] == "parameter_unknown"
    missing = client.post(f"/v1/disputes/{dispute_id}", headers=auth, json={"evidence": {"receipt": "file_nope"}})
    assert missing.status_code == 400 and missing.json["error"]["code"] == "resource_missing"
    card = client.post(f"/v1/disputes/{dispute_id}", headers=auth,
                       json={"evidence": {"uncategorized_text": "card 4242 4242 4242 4242"}})
    assert card.status_code == 400 and card.json["error"]["code"] == "card_number_in_field"
    # Refused saves changed nothing.
    assert client.get(f"/v1/disputes/{dispute_id}", headers=auth).json["evidence"]["product_description"] == "A lamp"


def test_submission_goes_to_the_psp_once_and_is_final(app, client, auth, db_session, shop, disputed):
    _payment, dispute_id = disputed
    pdf = upload(client, auth, pdf_bytes(2)).json
    assert (pdf["type"], pdf["pages"], pdf["filename"]) == ("pdf", 2, "receipt.pdf")
    submitted = client.post(f"/v1/disputes/{dispute_id}", headers=auth, json={
        "evidence": {"uncategorized_text": "winning_evidence", "receipt": pdf["id"]}, "submit": True})
    assert submitted.status_code == 200, submitted.json
    assert submitted.json["pending_action"] == "submit"
    again = client.post(f"/v1/disputes/{dispute_id}", headers=auth, json={"evidence": {"customer_name": "B"}})
    assert again.status_code == 400 and again.json["error"]["code"] == "dispute_action_in_progress"

    router = ScriptedDisputes()
    assert run_action(shop["scope"], dispute_id, deps(), router) == "succeeded"
    [(kind, _reference, evidence, sent_files, key)] = router.calls
    assert kind == "submit" and evidence == {"uncategorized_text": "winning_evidence"}
    assert sent_files == [("receipt", pdf["id"], b"%PDF-")] and key == f"kassa-{dispute_id}-submit-1"
    body = client.get(f"/v1/disputes/{dispute_id}", headers=auth).json
    assert (body["status"], body["pending_action"], body["evidence_details"]["submission_count"]) == (
        "under_review", None, 1)
    # The job again changes nothing: the action is done.
    assert run_action(shop["scope"], dispute_id, deps(), router) == "skipped"
    final = client.post(f"/v1/disputes/{dispute_id}", headers=auth, json={"submit": True})
    assert final.status_code == 400 and final.json["error"]["code"] == "dispute_not_awaiting_response"


def test_a_refusal_by_the_psp_hands_the_dispute_back(client, auth, db_session, shop, disputed):
    _payment, dispute_id = disputed
    client.post(f"/v1/disputes/{dispute_id}", headers=auth,
                json={"evidence": {"uncategorized_text": "late"}, "submit": True})
    router = ScriptedDisputes(answers=[PspResult(Outcome.DECLINED, "sandbox", decline_code="past_due",
                                                 message="The deadline to respond to this dispute has passed.")])
    run_action(shop["scope"], dispute_id, deps(), router)
    body = client.get(f"/v1/disputes/{dispute_id}", headers=auth).json
    assert body["pending_action"] is None and "deadline" in body["last_action_error"]
    assert body["status"] == "needs_response" and body["evidence_details"]["submission_count"] == 0


def test_an_unanswered_retry_looks_up_first_and_never_sends_on_a_guess(client, auth, db_session, shop, disputed):
    _payment, dispute_id = disputed
    client.post(f"/v1/disputes/{dispute_id}", headers=auth,
                json={"evidence": {"uncategorized_text": "text"}, "submit": True})
    router = ScriptedDisputes(answers=[PspResult(Outcome.UNKNOWN, "sandbox", error="read_timeout")])
    run_action(shop["scope"], dispute_id, deps(), router)
    row = shop["scope"].get(db_session, Dispute, dispute_id)
    row.action_next_attempt_at = row.action_lease_until = None  # due now
    db_session.commit()
    run_action(shop["scope"], dispute_id, deps(), router)
    assert [call[0] for call in router.calls] == ["submit", "retrieve"]  # the lookup could not tell: nothing sent
    assert client.get(f"/v1/disputes/{dispute_id}", headers=auth).json["pending_action"] == "submit"


def test_a_notice_of_the_submission_arriving_first_counts_it_once(client, auth, db_session, shop, disputed):
    """The PSP's dispute.updated for this very submission is processed before the job applies the PSP's answer."""
    payment, dispute_id = disputed
    client.post(f"/v1/disputes/{dispute_id}", headers=auth,
                json={"evidence": {"uncategorized_text": "text"}, "submit": True})

    class NoticeFirst(ScriptedDisputes):
        def submit_dispute_evidence(self, connector, reference, evidence, files, key, **owner):
            deliver(db_session, payment, f"cb_first_{payment['id']}", "dispute.updated",
                    dispute_data(reference, "under_review", 4000, submission_count=1))
            return super().submit_dispute_evidence(connector, reference, evidence, files, key, **owner)

    assert run_action(shop["scope"], dispute_id, deps(), NoticeFirst()) == "succeeded"
    assert client.get(f"/v1/disputes/{dispute_id}", headers=auth).json["evidence_details"]["submission_count"] == 1


def test_a_retry_keeps_its_key_when_a_notice_raised_the_count_meanwhile(client, auth, db_session, shop, disputed):
    """The first try's answer is lost; the PSP's notice of that submission raises the count before the retry. The
    retry asks first, sees the submission made, and never sends a second one under a new key."""
    payment, dispute_id = disputed
    reference = shop["scope"].get(db_session, Dispute, dispute_id).psp_reference
    client.post(f"/v1/disputes/{dispute_id}", headers=auth,
                json={"evidence": {"uncategorized_text": "text"}, "submit": True})
    submitted = normalized({"id": reference, "amount": 4000, "currency": "USD", "reason": "fraudulent",
                            "status": "needs_response", "created": int(time.time()),
                            "evidence_details": {"due_by": None, "submission_count": 1},
                            "balance_transactions": [{"type": "dispute", "amount": -4000, "fee": 1500}]})

    class LostAnswer(ScriptedDisputes):
        def retrieve_dispute(self, connector, reference, **owner):
            self.calls.append(("retrieve", reference))
            return Lookup.of(PspResult(Outcome.SUCCEEDED, "sandbox", reference, status="needs_response",
                                       raw=submitted))

    router = LostAnswer(answers=[PspResult(Outcome.UNKNOWN, "sandbox", error="read_timeout")])
    run_action(shop["scope"], dispute_id, deps(), router)
    deliver(db_session, payment, f"cb_meanwhile_{payment['id']}", "dispute.updated",
            dispute_data(reference, "needs_response", 4000, submission_count=1))
    row = shop["scope"].get(db_session, Dispute, dispute_id)
    assert row.submission_count == 1 and row.pending_action == "submit"
    row.action_next_attempt_at = row.action_lease_until = None  # due now
    db_session.commit()
    assert run_action(shop["scope"], dispute_id, deps(), router) == "succeeded"
    assert [call[0] for call in router.calls] == ["submit", "retrieve"]  # found done: not sent again
    assert router.calls[0][4] == f"kassa-{dispute_id}-submit-1"
    body = client.get(f"/v1/disputes/{dispute_id}", headers=auth).json
    assert (body["pending_action"], body["evidence_details"]["submission_count"]) == (None, 1)


def test_accepting_closes_the_dispute(client, auth, db_session, shop, disputed):
    _payment, dispute_id = disputed
    accepted = client.post(f"/v1/disputes/{dispute_id}/close", headers=auth)
    assert accepted.status_code == 200 and accepted.json["pending_action"] == "close"
    run_action(shop["scope"], dispute_id, deps(), ScriptedDisputes())
    body = client.get(f"/v1/disputes/{dispute_id}", headers=auth).json
    assert (body["status"], body["pending_action"]) == ("lost", None)
    again = client.post(f"/v1/disputes/{dispute_id}/close", headers=auth)
    assert again.status_code == 400 and again.json["error"]["code"] == "dispute_not_awaiting_response"


def test_a_suspended_merchant_still_answers_its_disputes_and_its_notices_are_booked(client, auth, db_session, shop,
                                                                                     disputed):
    """Suspension stops new payments only (app/merchants/lifecycle.py): defending a dispute, and the PSP's later
    notices about money already taken, go on."""
    from app.accounts.service import Meta
    from app.merchants.lifecycle import suspend

    payment, dispute_id = disputed
    suspend(db_session, shop["merchant"].id, operator=factories.user(db_session, is_platform_admin=True),
            reason="Chargeback spike", meta=Meta())
    db_session.commit()
    assert client.post("/v1/payments", headers=auth, json={"amount": 100, "currency": "usd"}).status_code == 403
    pdf = upload(client, auth, pdf_bytes()).json
    submitted = client.post(f"/v1/disputes/{dispute_id}", headers=auth,
                            json={"evidence": {"receipt": pdf["id"]}, "submit": True})
    assert submitted.status_code == 200 and submitted.json["pending_action"] == "submit"
    assert run_action(shop["scope"], dispute_id, deps(), ScriptedDisputes()) == "succeeded"
    deliver(db_session, payment, f"cb_won_{payment['id']}", "dispute.closed",
            dispute_data(f"dp_{payment['id']}", "won", 4000, reinstated=True, created=int(time.time()) + 60))
    body = client.get(f"/v1/disputes/{dispute_id}", headers=auth).json
    assert (body["status"], body["funds_reinstated"]) == ("won", True)


def test_submission_after_due_by_is_refused(client, auth, db_session, shop):
    payment = captured(db_session, shop["scope"], amount=2000)
    opened = int(time.time()) - 8 * DAY
    deliver(db_session, payment, "cb_late", "dispute.created",
            dispute_data("dp_late", "needs_response", 2000, created=opened, due_by=opened + 7 * DAY))
    dispute_id = db_session.scalars(shop["scope"].select(Dispute, Dispute.psp_reference == "dp_late")).one().id
    db_session.commit()
    late = client.post(f"/v1/disputes/{dispute_id}", headers=auth,
                       json={"evidence": {"uncategorized_text": "winning_evidence"}, "submit": True})
    assert late.status_code == 400 and late.json["error"]["code"] == "dispute_past_due"
    body = client.get(f"/v1/disputes/{dispute_id}", headers=auth).json
    assert body["pending_action"] is None and body["evidence"]["uncategorized_text"] is None  # nothing changed


def test_files_are_judged_by_their_content(client, auth, db_session, shop):
    fake = upload(client, auth, b"%PDF-1.7\nthis is not a PDF at all\n%%EOF", "statement.pdf")
    assert fake.status_code == 400 and fake.json["error"]["code"] == "file_invalid"
    renamed = upload(client, auth, b"MZ\x90\x00 an executable", "receipt.pdf")
    assert renamed.status_code == 400 and renamed.json["error"]["code"] == "file_type_unsupported"
    empty = upload(client, auth, b"", "empty.png")
    assert empty.status_code == 400
    png = upload(client, auth, PNG, "../../etc/photo.png")
    assert png.status_code == 200 and (png.json["type"], png.json["filename"]) == ("png", "photo.png")
    # Built by hand: the test client would spool a body this large to a file of its own that it never closes.
    big = (b'--B\r\nContent-Disposition: form-data; name="purpose"\r\n\r\ndispute_evidence\r\n--B\r\n'
           b'Content-Disposition: form-data; name="file"; filename="big.pdf"\r\n\r\n'
           + b"%PDF-" + b"0" * (5 * 1024 * 1024) + b"\r\n--B--\r\n")
    too_big = client.post("/v1/files", headers=auth, data=big, content_type="multipart/form-data; boundary=B")
    assert too_big.status_code == 400 and too_big.json["error"]["code"] == "file_too_large"
    far_too_big = client.post("/v1/files", headers=auth, data=big + b"0" * 100_000,
                              content_type="multipart/form-data; boundary=B")
    assert far_too_big.status_code == 413
    wrong_purpose = upload(client, auth, PNG, purpose="identity_document")
    assert wrong_purpose.status_code == 400 and wrong_purpose.json["error"]["param"] == "purpose"
    card = upload(client, auth, PNG, "4242 4242 4242 4242.png")
    assert card.status_code == 400 and card.json["error"]["code"] == "card_number_in_field"
    not_multipart = client.post("/v1/disputes/dsp_x", headers=auth, content_type="multipart/form-data",
                                data={"submit": "true"})
    assert not_multipart.status_code == 415
    assert db_session.scalar(shop["scope"].select(File).with_only_columns(File.id).limit(2)) is not None
    db_session.commit()


def test_files_come_back_only_as_downloads(client, auth, db_session, shop):
    content = pdf_bytes()
    stored = upload(client, auth, content, "<script>alert(1)</script>.pdf").json
    assert client.get(f"/v1/files/{stored['id']}", headers=auth).json == stored
    download = client.get(f"/v1/files/{stored['id']}/contents", headers=auth)
    assert download.status_code == 200 and download.data == content
    assert download.headers["Content-Disposition"] == f'attachment; filename="{stored["id"]}.pdf"'
    assert download.headers["X-Content-Type-Options"] == "nosniff"
    assert download.headers["Content-Security-Policy"] == "sandbox"
    assert download.headers["Content-Type"] == "application/pdf"
    row = shop["scope"].get(db_session, File, stored["id"])
    assert (row.storage, row.filename) == ("database", "script_.pdf")  # a label only, never a path or a name
    db_session.commit()


def test_files_kept_in_a_directory(app, client, auth, db_session, shop, tmp_path, monkeypatch):
    monkeypatch.setitem(app.config, "FILES_DIRECTORY", str(tmp_path))
    stored = upload(client, auth, PNG, "photo.png").json
    path = tmp_path / shop["merchant"].id / stored["id"]
    assert path.read_bytes() == PNG and list(tmp_path.rglob("photo.png")) == []
    assert client.get(f"/v1/files/{stored['id']}/contents", headers=auth).data == PNG
    path.write_bytes(PNG + b"tampered")  # changed behind Kassa's back: not served
    refused = client.get(f"/v1/files/{stored['id']}/contents", headers=auth)
    assert refused.status_code == 500 and refused.json["error"]["code"] == "file_unavailable"


def test_one_merchant_cannot_reach_another_merchants_disputes_or_files(client, auth, db_session, shop, disputed):
    _payment, dispute_id = disputed
    stored = upload(client, auth, PNG).json
    other = factories.merchant(db_session, name="Other Shop")
    db_session.commit()
    other_auth = {"Authorization": f"Bearer {mint_key(db_session, other.id)}"}
    assert client.get(f"/v1/disputes/{dispute_id}", headers=other_auth).status_code == 404
    assert client.get("/v1/disputes", headers=other_auth).json["data"] == []
    assert client.post(f"/v1/disputes/{dispute_id}", headers=other_auth, json={"submit": True}).status_code == 404
    assert client.post(f"/v1/disputes/{dispute_id}/close", headers=other_auth).status_code == 404
    assert client.get(f"/v1/files/{stored['id']}", headers=other_auth).status_code == 404
    assert client.get(f"/v1/files/{stored['id']}/contents", headers=other_auth).status_code == 404
    # Nor name its file as evidence of a dispute of its own.
    payment = captured(db_session, factories_scope(other), amount=1000)
    deliver(db_session, payment, "cb_other", "dispute.created", dispute_data("dp_other", "needs_response", 1000))
    theirs = db_session.scalars(factories_scope(other).select(Dispute)).one().id
    db_session.commit()
    borrowed = client.post(f"/v1/disputes/{theirs}", headers=other_auth, json={"evidence": {"receipt": stored["id"]}})
    assert borrowed.status_code == 400 and borrowed.json["error"]["code"] == "resource_missing"
    # Test-mode keys never see live-mode disputes either.
    live_auth = {"Authorization": f"Bearer {mint_key(db_session, shop['merchant'].id, livemode=True)}"}
    assert client.get(f"/v1/disputes/{dispute_id}", headers=live_auth).status_code == 404


def factories_scope(merchant):
    from app.scoping import Scope

    return Scope(merchant.id, False)


def test_dispute_actions_go_to_the_account_that_made_the_payment(client, auth, db_session, shop, disputed):
    """Issue 14 review: accepting (or answering) a dispute goes through the credential the disputed payment was
    made with, even when the merchant has replaced its credentials since."""
    from sqlalchemy import update

    from app.payments.models import Payment

    payment, dispute_id = disputed
    db_session.execute(update(Payment).where(Payment.id == payment["id"]).values(credential="pcr_payments_account"))
    db_session.commit()
    assert client.post(f"/v1/disputes/{dispute_id}/close", headers=auth).status_code == 200

    class Recording(ScriptedDisputes):
        owners: list = []

        def close_dispute(self, connector, reference, key, **owner):
            self.owners.append(owner)
            return super().close_dispute(connector, reference, key, **owner)

    router = Recording()
    assert run_action(shop["scope"], dispute_id, deps(), router) == "succeeded"
    assert router.owners == [{"merchant_id": shop["scope"].merchant_id, "livemode": shop["scope"].livemode,
                              "credential": "pcr_payments_account"}]
