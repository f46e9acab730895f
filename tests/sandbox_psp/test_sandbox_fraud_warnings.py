"""Early fraud warnings raised by the sandbox's admin control and announced by signed callbacks, like disputes."""
from sbx_helpers import verify_signature


def test_a_warning_is_raised_changed_and_announced(sandbox):
    auth = sandbox.captured(amount=2500)
    raised = sandbox.admin("/_admin/early_fraud_warnings", {"authorization": auth["id"]})
    assert raised["id"].startswith("efw_")
    assert (raised["authorization"], raised["acquirer"], raised["fraud_type"], raised["actionable"],
            raised["livemode"]) == (auth["id"], auth["acquirer"], "made_with_stolen_card", True, False)
    headers, event, raw = sandbox.receiver.wait_for("early_fraud_warning.created")[0]
    assert verify_signature(headers["Sandbox-Signature"], raw) and event["data"] == raised

    changed = sandbox.admin(f"/_admin/early_fraud_warnings/{raised['id']}",
                            {"actionable": False, "fraud_type": "card_never_received"})
    assert (changed["actionable"], changed["fraud_type"]) == (False, "card_never_received")
    _, updated, _ = sandbox.receiver.wait_for("early_fraud_warning.updated")[0]
    assert updated["data"] == changed and len(sandbox.receiver.events("early_fraud_warning.created")) == 1


def test_what_cannot_be_warned_about_is_refused(sandbox):
    url = sandbox.public_url + "/_admin/early_fraud_warnings"
    declined = sandbox.a.authorize(sandbox.tokenize("4000000000009995")["id"]).json()
    assert declined["status"] == "declined"
    answers = [sandbox.public.post(url, json={"authorization": "auth_unknown"}),
               sandbox.public.post(url, json={"authorization": declined["id"]}),
               sandbox.public.post(url, json={"authorization": sandbox.captured()["id"], "fraud_type": "nonsense"}),
               sandbox.public.post(url, json={"authorization": sandbox.captured()["id"], "actionable": "yes"}),
               sandbox.public.post(url + "/efw_unknown", json={"actionable": False})]
    assert [answer.status_code for answer in answers] == [404, 400, 400, 400, 404]
    assert sandbox.receiver.events("early_fraud_warning.created") == []
