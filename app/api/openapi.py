"""The OpenAPI 3.1 document of the /v1 API, served at /v1/openapi.json.

Hand-written next to the routes it describes (every module of app/api) and kept in step with them:
tests/payments/test_openapi.py checks that the document and the app's URL map list the same operations,
that every example matches its schema, and runs schemathesis against the app. Each operation carries
a request example (writes) and a response example, which the dashboard's API reference shows and turns
into a curl command (app/dashboard/api_reference.py).
"""
from flask import jsonify

from app.api import bp
from app.api.pagination import LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX
from app.api.payments import IDEMPOTENCY_KEY_PATTERN
from app.checkout import service as checkout
from app.checkout.models import SessionStatus
from app.events import MERCHANT_EVENT_TYPES
from app.disputes import evidence as evidence_rules
from app.disputes.files import CONTENT_TYPES, FILE_MAX_BYTES
from app.disputes.models import FILE_PURPOSES, FILE_TYPES, STATUSES as DISPUTE_STATUSES
from app.money import CURRENCY_EXPONENTS
from app.payments.models import PaymentStatus
from app.payments.service import CANCELLATION_REASONS, MAX_AMOUNT, MAX_SPLIT_SELLERS, REFUND_REASONS
from app.risk.models import CLOSED_REASONS as REVIEW_CLOSED_REASONS, ITEM_TYPES as RISK_ITEM_TYPES
from app.risk.models import LEVELS, OUTCOME_TYPES
from app.webhooks import service as webhooks
from app.webhooks.models import ALL_EVENTS, DisabledReason, EndpointStatus

VERSION = "2026-11-20"
CURRENCIES = sorted(CURRENCY_EXPONENTS) + sorted(c.lower() for c in CURRENCY_EXPONENTS)


def _nullable(schema: dict) -> dict:
    types = schema.get("type")
    if isinstance(types, str):
        return {**schema, "type": [types, "null"]}
    return {"anyOf": [schema, {"type": "null"}]}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


STRING = {"type": "string"}
INT = {"type": "integer"}
UNIX = {"type": "integer", "description": "Unix time in seconds."}
AMOUNT = {"type": "integer", "minimum": 1, "maximum": MAX_AMOUNT, "description": "Minor units (cents)."}
ID = {"type": "string", "minLength": 1, "maxLength": 100}
METADATA = {
    "type": "object", "maxProperties": 50, "description": "Up to 50 keys of 1-40 characters; string values "
    "of at most 500 characters.",
    "propertyNames": {"minLength": 1, "maxLength": 40, "pattern": r"^[^\[\]]+$"},
    "additionalProperties": {"type": "string", "maxLength": 500},
}

ERROR = {
    "type": "object", "required": ["error"],
    "properties": {"error": {
        "type": "object", "required": ["type", "code", "message", "param"],
        "properties": {"type": STRING, "code": STRING, "message": STRING, "param": _nullable(STRING)},
    }},
}

ATTENTION = _nullable({
    "type": "object", "required": ["reason", "since"],
    "description": "Set while the payment processor has given no definite outcome for longer than Kassa's "
                   "threshold (30 minutes by default): Kassa keeps asking; look at it. Null otherwise.",
    "properties": {"reason": STRING, "since": UNIX},
})

CREDENTIAL = _nullable({"type": "string", "description": "The PSP credential used: `platform` or the merchant's own "
                        "credential id; every follow-up (capture, void, refund, lookups) is bound to it."})

ATTEMPT = {
    "type": "object",
    "required": ["id", "object", "operation", "status", "amount", "currency", "connector", "psp_reference",
                 "decline_code", "error_message", "tries", "created", "started", "finished", "latency_ms",
                 "attention"],
    "properties": {
        "id": STRING, "object": {"const": "payment_attempt"},
        "operation": {"enum": ["authorize", "capture", "void"]},
        "status": {"enum": ["processing", "unknown", "requires_action", "succeeded", "declined", "failed"]},
        "amount": INT, "currency": STRING, "connector": _nullable(STRING), "psp_reference": _nullable(STRING),
        "credential": CREDENTIAL,
        "decline_code": _nullable(STRING), "error_message": _nullable(STRING), "tries": INT,
        "created": UNIX, "started": _nullable(INT), "finished": _nullable(INT), "latency_ms": _nullable(INT),
        "attention": ATTENTION,
    },
}

SPLIT_PART = {
    "type": "object",
    "required": ["seller", "amount", "fee", "amount_captured", "fee_captured", "amount_refunded", "fee_refunded"],
    "properties": {"seller": STRING, "amount": INT, "fee": INT, "amount_captured": INT, "fee_captured": INT,
                   "amount_refunded": INT, "fee_refunded": INT},
}

PAYMENT = {
    "type": "object",
    "required": ["id", "object", "livemode", "created", "amount", "currency", "status", "capture_method",
                 "amount_capturable", "amount_received", "amount_refunded", "customer_email", "description",
                 "metadata", "payment_method", "connector", "next_action", "return_url", "last_payment_error",
                 "cancellation_reason", "canceled_at", "split", "attempts", "disputed", "dispute"],
    "properties": {
        "id": {"type": "string", "pattern": "^pay_"}, "object": {"const": "payment"}, "livemode": {"type": "boolean"},
        "created": UNIX, "amount": INT, "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
        "status": {"enum": [s.value for s in PaymentStatus]}, "capture_method": {"enum": ["automatic", "manual"]},
        "amount_capturable": INT, "amount_received": INT, "amount_refunded": INT,
        "customer_email": _nullable(STRING), "description": _nullable(STRING),
        "metadata": {"type": "object", "additionalProperties": STRING},
        "payment_method": _nullable({
            "type": "object", "required": ["vault", "brand", "last4", "exp_month", "exp_year", "fingerprint"],
            "properties": {"vault": _nullable(STRING), "brand": _nullable(STRING), "last4": _nullable(STRING),
                           "exp_month": _nullable(INT), "exp_year": _nullable(INT),
                           "fingerprint": _nullable(STRING)}}),
        "connector": _nullable(STRING),
        "credential": CREDENTIAL,
        "next_action": _nullable({
            "type": "object", "required": ["type", "redirect_to_url"],
            "properties": {"type": {"const": "redirect_to_url"}, "redirect_to_url": {
                "type": "object", "required": ["url", "return_url"],
                "properties": {"url": STRING, "return_url": _nullable(STRING)}}}}),
        "return_url": _nullable(STRING),
        "last_payment_error": _nullable({
            "type": "object", "required": ["type", "code", "message"],
            "properties": {"type": STRING, "code": STRING, "decline_code": _nullable(STRING), "message": STRING}}),
        "cancellation_reason": _nullable(STRING), "canceled_at": _nullable(INT),
        "split": {"type": "array", "items": _ref("SplitPart")},
        "attempts": {"type": "array", "items": _ref("PaymentAttempt")},
        "outcome": _nullable({
            "type": "object", "description": "The risk screening's outcome, shaped like Stripe's charge `outcome`: "
                                             "`type` is `authorized`, `manual_review` (held for review: authorized, "
                                             "its capture waits for the review), `blocked` (nothing was sent to "
                                             "the payment processor) or `issuer_declined`.",
            "required": ["type", "risk_level", "risk_score", "rule", "seller_message"],
            "properties": {"type": {"enum": list(OUTCOME_TYPES)},
                           "network_status": STRING,
                           "reason": _nullable({**STRING, "description":
                               "Why it was blocked or held: `rule` (the matched `rule`), or "
                               "`card_facts_unavailable` (the card vault could not be asked, so the platform's card "
                               "block lists could not be checked: held for a review the platform owns)."}),
                           "risk_level": {"enum": ["normal", "elevated", "highest"]},
                           "risk_score": {"type": "integer", "minimum": 0, "maximum": 99},
                           "rule": _nullable({"type": "object", "required": ["id", "action", "predicate"],
                                              "properties": {"id": STRING, "action": STRING, "predicate": STRING,
                                                             "owner": STRING}}),
                           "seller_message": STRING}}),
        "review": _nullable({**STRING, "description": "The review holding this payment's capture (`prv_...`)."}),
        "customer_ip": _nullable(STRING),
        "disputed": {"type": "boolean", "description": "Whether a dispute (or an inquiry) was opened."},
        "dispute": _nullable({
            "type": "object", "description": "The latest dispute, in short (GET /v1/disputes/{id} for all of it).",
            "required": ["id", "object", "status", "reason", "amount", "currency", "evidence_details"],
            "properties": {"id": STRING, "object": {"const": "dispute"}, "status": {"enum": list(DISPUTE_STATUSES)},
                           "reason": _nullable(STRING), "amount": INT, "currency": STRING,
                           "evidence_details": {"type": "object", "properties": {"due_by": _nullable(INT)}}}}),
    },
}

REFUND = {
    "type": "object",
    "required": ["id", "object", "livemode", "created", "payment", "amount", "currency", "status", "reason",
                 "metadata", "sellers", "failure_code", "failure_message", "connector", "psp_reference",
                 "attention"],
    "properties": {
        "id": {"type": "string", "pattern": "^re_"}, "object": {"const": "refund"}, "livemode": {"type": "boolean"},
        "created": UNIX, "payment": STRING, "amount": INT, "currency": STRING,
        "status": {"enum": ["pending", "succeeded", "failed"]}, "reason": _nullable(STRING),
        "metadata": {"type": "object", "additionalProperties": STRING},
        "sellers": {"type": "array", "items": {
            "type": "object", "required": ["seller", "amount", "fee"],
            "properties": {"seller": STRING, "amount": INT,
                           "fee": _nullable({"type": "integer", "description": "Platform fee returned; "
                                             "null until the refund is booked."})}}},
        "failure_code": _nullable(STRING), "failure_message": _nullable(STRING),
        "connector": _nullable(STRING), "psp_reference": _nullable(STRING), "attention": ATTENTION,
        "credential": CREDENTIAL,
    },
}

SELLER = {
    "type": "object", "required": ["id", "object", "livemode", "created", "name", "email", "default", "metadata"],
    "properties": {"id": {"type": "string", "pattern": "^sel_"}, "object": {"const": "seller"},
                   "livemode": {"type": "boolean"}, "created": UNIX, "name": STRING, "email": _nullable(STRING),
                   "default": {"type": "boolean"}, "metadata": {"type": "object", "additionalProperties": STRING}},
}

BANK_ACCOUNT = {
    "type": "object", "description": "A payout bank account, masked: only the last four characters of its number.",
    "required": ["id", "object", "seller", "account_holder_name", "country", "currency", "kind", "last4", "bic",
                 "routing_code", "bank_name", "cooling_until", "flagged", "failure_code", "replaced", "created",
                 "livemode"],
    "properties": {"id": {"type": "string", "pattern": "^ba_"}, "object": {"const": "bank_account"},
                   "seller": _nullable(STRING), "account_holder_name": STRING, "country": STRING, "currency": STRING,
                   "kind": {"enum": ["iban", "local"]}, "last4": STRING, "bic": _nullable(STRING),
                   "routing_code": _nullable(STRING), "bank_name": _nullable(STRING),
                   "cooling_until": _nullable(UNIX), "flagged": {"type": "boolean"},
                   "failure_code": _nullable(STRING), "replaced": {"type": "boolean"}, "created": UNIX,
                   "livemode": {"type": "boolean"}},
}

EVENT = {
    "type": "object", "required": ["id", "object", "type", "livemode", "created", "data", "request"],
    "properties": {"id": {"type": "string", "pattern": "^evt_"}, "object": {"const": "event"},
                   "type": {"enum": list(MERCHANT_EVENT_TYPES),
                            "description": "Every type a merchant can receive, here and at webhook endpoints."},
                   "livemode": {"type": "boolean"}, "created": UNIX,
                   "data": {"type": "object", "required": ["object"], "properties": {"object": {"type": "object"}}},
                   "request": {"type": "object", "properties": {"id": _nullable(STRING)}}},
}

WEBHOOK_MISSED_EVENTS = {
    "type": "object", "required": ["object", "webhook_endpoint", "livemode", "since", "scheduled"],
    "properties": {"object": {"const": "webhook_missed_events"},
                   "webhook_endpoint": {"type": "string", "pattern": "^we_"}, "livemode": {"type": "boolean"},
                   "since": {**UNIX, "description": "Events raised from this time on (30 days ago) were included."},
                   "scheduled": {"type": "integer", "minimum": 0,
                                 "description": "Missed events scheduled for delivery by this call."}},
}

BALANCE_PARTS = {"pending": INT, "available": {**INT, "description": "Negative: owed (carried, recovered from "
                                                                                 "later payouts)."},
                 "in_transit": INT, "reserved": INT}
BALANCE = {
    "type": "object", "required": ["object", "livemode", "sellers", "platform_fees", "merchant"],
    "properties": {
        "object": {"const": "balance"}, "livemode": {"type": "boolean"},
        "sellers": {"type": "array", "items": {"type": "object",
                                               "required": ["seller", "currency", "amount", "pending", "available",
                                                            "in_transit", "reserved"],
                                               "properties": {"seller": STRING, "currency": STRING, "amount": INT,
                                                              **BALANCE_PARTS}}},
        "merchant": {"type": "array", "description": "The merchant's own net revenue (platform fees less the fees "
                                                     "it bears), per currency.",
                     "items": {"type": "object", "required": ["currency", *BALANCE_PARTS],
                               "properties": {"currency": STRING, **BALANCE_PARTS}}},
        "platform_fees": {"type": "array", "items": {"type": "object", "required": ["currency", "amount"],
                                                     "properties": {"currency": STRING, "amount": INT}}},
    },
}

PAYOUT = {
    "type": "object",
    "required": ["id", "object", "livemode", "amount", "currency", "status", "type", "seller", "destination",
                 "bank_account_last4", "method", "rail", "period", "description", "arrival_date", "held_until",
                 "hold_reason", "failure_code", "failure_message", "created", "paid_at", "failed_at", "canceled_at"],
    "properties": {
        "id": {"type": "string", "pattern": "^po_"}, "object": {"const": "payout"}, "livemode": {"type": "boolean"},
        "amount": INT, "currency": STRING,
        "status": {"enum": ["pending", "in_transit", "paid", "failed", "canceled"]},
        "type": {"enum": ["scheduled", "manual"]}, "seller": _nullable(STRING), "destination": _nullable(STRING),
        "bank_account_last4": _nullable(STRING), "method": STRING, "rail": STRING, "period": _nullable(STRING),
        "description": _nullable(STRING), "arrival_date": _nullable(STRING), "held_until": _nullable(INT),
        "hold_reason": _nullable(STRING), "failure_code": _nullable(STRING), "failure_message": _nullable(STRING),
        "created": UNIX, "paid_at": _nullable(INT), "failed_at": _nullable(INT), "canceled_at": _nullable(INT),
    },
}
BALANCE_TRANSACTION = {
    "type": "object",
    "required": ["id", "object", "type", "amount", "fee", "net", "currency", "created", "available_on", "status",
                 "source", "description", "payout", "seller"],
    "properties": {
        "id": STRING, "object": {"const": "balance_transaction"},
        "type": {"enum": ["charge", "refund", "dispute", "fee", "payout", "payout_reversal", "adjustment"]},
        "amount": INT, "fee": INT, "net": INT, "currency": STRING, "created": UNIX,
        "available_on": _nullable(STRING), "status": {"enum": ["pending", "available"]},
        "source": _nullable(STRING), "description": STRING, "payout": _nullable(STRING), "seller": _nullable(STRING),
    },
}
PAYOUT_SCHEDULE = {
    "type": "object",
    "required": ["object", "subject", "interval", "weekly_anchor", "monthly_anchor", "minimum_amount", "delay_days",
                 "reserve_percent_bp", "reserve_days", "reserve_minimum"],
    "properties": {
        "object": {"const": "payout_schedule"}, "subject": STRING,
        "interval": {"enum": ["daily", "weekly", "monthly", "manual"]}, "weekly_anchor": STRING,
        "monthly_anchor": INT, "minimum_amount": INT, "delay_days": INT, "reserve_percent_bp": INT,
        "reserve_days": INT, "reserve_minimum": INT, "fee_bearer": {"enum": ["platform", "seller"]},
    },
}
CREATE_PAYOUT = {"type": "object", "required": ["amount", "currency"], "additionalProperties": False, "properties": {
    "amount": AMOUNT, "currency": {"enum": CURRENCIES}, "seller": {**ID, "description": "None: the merchant's own."},
    "description": {"type": "string", "maxLength": 500}}}
UPDATE_PAYOUT_SCHEDULE = {"type": "object", "additionalProperties": False, "properties": {
    "interval": {"enum": ["daily", "weekly", "monthly", "manual"]},
    "weekly_anchor": {"enum": ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]},
    "monthly_anchor": {"type": "integer", "minimum": 1, "maximum": 31},
    "minimum_amount": {"type": "integer", "minimum": 0, "maximum": MAX_AMOUNT},
    "delay_days": {"type": "integer", "minimum": 0, "maximum": 365},
    "reserve_percent_bp": {"type": "integer", "minimum": 0, "maximum": 10000},
    "reserve_days": {"type": "integer", "minimum": 0, "maximum": 365},
    "reserve_minimum": {"type": "integer", "minimum": 0, "maximum": MAX_AMOUNT},
    "fee_bearer": {"enum": ["platform", "seller"], "description": "Only for `merchant`."}}}


CHECKOUT_SESSION = {
    "type": "object",
    "required": ["id", "object", "livemode", "status", "payment_status", "url", "amount_total", "currency",
                 "line_items", "description", "split", "success_url", "cancel_url", "customer_email",
                 "client_reference_id", "metadata", "payment", "attempt_number", "expires_at", "created",
                 "completed_at", "expired_at"],
    "properties": {
        "id": {"type": "string", "pattern": "^cs_"}, "object": {"const": "checkout.session"},
        "livemode": {"type": "boolean"}, "status": {"enum": [s.value for s in SessionStatus]},
        "payment_status": {"enum": ["paid", "unpaid"]},
        "url": _nullable({"type": "string", "description": "The page to send the shopper to; null once the "
                                                          "session is no longer open."}),
        "amount_total": INT, "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
        "line_items": _nullable({"type": "array", "items": {
            "type": "object", "required": ["name", "quantity", "unit_amount", "amount"],
            "properties": {"name": STRING, "quantity": INT, "unit_amount": INT, "amount": INT}}}),
        "description": _nullable(STRING),
        "split": _nullable({"type": "array", "items": {"type": "object", "required": ["seller", "amount"],
                                                       "properties": {"seller": STRING, "amount": INT,
                                                                      "fee": INT}}}),
        "success_url": STRING, "cancel_url": _nullable(STRING), "customer_email": _nullable(STRING),
        "client_reference_id": _nullable(STRING), "metadata": {"type": "object", "additionalProperties": STRING},
        "payment": _nullable({"type": "string", "description": "The payment, once the shopper has paid."}),
        "attempt_number": INT, "expires_at": UNIX, "created": UNIX,
        "completed_at": _nullable(INT), "expired_at": _nullable(INT),
    },
}

WEBHOOK_ENDPOINT = {
    "type": "object",
    "required": ["id", "object", "url", "description", "enabled_events", "status", "disabled_reason",
                 "disabled_detail", "livemode", "created"],
    "properties": {
        "id": {"type": "string", "pattern": "^we_"}, "object": {"const": "webhook_endpoint"}, "url": STRING,
        "description": _nullable(STRING), "enabled_events": {"type": "array", "items": STRING},
        "status": {"enum": [s.value for s in EndpointStatus]},
        "disabled_reason": _nullable({"enum": [r.value for r in DisabledReason]}),
        "disabled_detail": _nullable(STRING), "livemode": {"type": "boolean"}, "created": UNIX,
        "secret": {"type": "string", "pattern": "^whsec_",
                   "description": "The signing secret: in the response to the create call only."},
    },
}
WEBHOOK_ENDPOINT_DELETED = {
    "type": "object", "required": ["id", "object", "deleted"],
    "properties": {"id": STRING, "object": {"const": "webhook_endpoint"}, "deleted": {"const": True}},
}

ACCOUNT = {
    "type": "object", "required": ["object", "id", "name", "livemode", "live_enabled", "suspended", "charges_enabled",
                                   "created", "settings"],
    "properties": {
        "object": {"const": "account"}, "id": {"type": "string", "pattern": "^mer_"}, "name": STRING,
        "livemode": {"type": "boolean", "description": "The mode of the key that asked."},
        "live_enabled": {"type": "boolean"},
        "suspended": {"type": "boolean", "description": "A platform operator suspended the account: new payments "
                                                        "are refused; reads and refunds still work."},
        "charges_enabled": {"type": "boolean", "description": "Whether this key may take new payments now: not "
                                                              "suspended, and live mode enabled for a live key."},
        "created": UNIX,
        "settings": {"type": "object", "required": ["display_name", "accent_color", "logo_url", "timezone"],
                     "properties": {"display_name": STRING, "accent_color": STRING, "logo_url": _nullable(STRING),
                                    "timezone": STRING}},
    },
}

OPENAPI_DOCUMENT = {"type": "object", "required": ["openapi", "info", "paths"],
                    "properties": {"openapi": STRING, "info": {"type": "object"}, "paths": {"type": "object"}}}

FEE = _nullable({"type": "object", "required": ["amount", "currency"], "properties": {"amount": INT, "currency": STRING}})
DISPUTE = {
    "type": "object",
    "description": "A dispute (an inquiry while its status starts with `warning_`), with the merchant's evidence "
                   "(file fields hold file ids) and what Kassa booked. Its changes are the events `dispute.created`, "
                   "`dispute.updated`, `dispute.closed`, `dispute.funds_withdrawn` and `dispute.funds_reinstated`, "
                   "delivered to webhook endpoints like every event.",
    "required": ["id", "object", "livemode", "created", "amount", "currency", "reason", "status", "payment",
                 "is_charge_refundable", "evidence", "evidence_details", "pending_action", "last_action_error",
                 "funds_withdrawn", "funds_reinstated", "fee", "fee_returned", "metadata", "psp", "psp_reference",
                 "connector"],
    "properties": {
        "id": {"type": "string", "pattern": "^dsp_"}, "object": {"const": "dispute"}, "livemode": {"type": "boolean"},
        "created": UNIX, "amount": INT, "currency": STRING, "reason": _nullable(STRING),
        "status": {"enum": list(DISPUTE_STATUSES)}, "payment": _nullable(STRING),
        "is_charge_refundable": {"type": "boolean"},
        "evidence": {"type": "object", "properties": {name: _nullable(STRING) for name in evidence_rules.FIELDS}},
        "evidence_details": {"type": "object", "required": ["due_by", "has_evidence", "past_due", "submission_count"],
                             "properties": {"due_by": _nullable(INT), "has_evidence": {"type": "boolean"},
                                            "past_due": {"type": "boolean"}, "submission_count": INT}},
        "pending_action": _nullable({"enum": ["submit", "close"],
                                     "description": "Asked for and not yet confirmed by the payment processor."}),
        "last_action_error": _nullable(STRING),
        "funds_withdrawn": {"type": "boolean"}, "funds_reinstated": {"type": "boolean"},
        "fee": FEE, "fee_returned": FEE,
        "metadata": {"type": "object", "additionalProperties": STRING},
        "psp": STRING, "psp_reference": STRING, "connector": _nullable(STRING),
    },
}

REVIEW = {
    "type": "object",
    "description": "A payment held for review by a risk rule (Stripe's Reviews API). Unlike Radar, a review holds "
                   "the capture: the payment is authorized and stays `requires_capture` until the review is approved "
                   "(captured) or rejected (voided), so a rejected payment costs no refund and no refund fees. Events "
                   "`review.opened` and `review.closed` (`closed_reason`: approved, refunded, refunded_as_fraud, "
                   "disputed, canceled, timed_out). `owner` `platform`: only the platform decides it, and the "
                   "merchant's capture and cancel are refused (409 `payment_in_review`).",
    "required": ["id", "object", "livemode", "created", "payment", "open", "opened_reason", "closed_reason", "reason",
                 "ip_address", "owner"],
    "properties": {
        "id": {"type": "string", "pattern": "^prv_"}, "object": {"const": "review"}, "livemode": {"type": "boolean"},
        "created": UNIX, "payment": STRING, "payment_intent": STRING, "charge": _nullable(STRING),
        "billing_zip": _nullable(STRING), "open": {"type": "boolean"}, "opened_reason": {"enum": ["rule", "manual", "card_facts_unavailable"]},
        "closed_reason": _nullable({"enum": list(REVIEW_CLOSED_REASONS)}), "reason": STRING,
        "ip_address": _nullable(STRING), "ip_address_location": _nullable({"type": "object"}),
        "session": _nullable({"type": "object"}), "owner": {"enum": ["platform", "merchant"]},
        "rule": _nullable(STRING), "expires_at": _nullable(INT), "closed_at": _nullable(INT),
    },
}
VALUE_LIST_ITEM = {
    "type": "object", "required": ["id", "object", "value", "value_list", "created", "created_by", "livemode"],
    "properties": {"id": {"type": "string", "pattern": "^rsli_"}, "object": {"const": "radar.value_list_item"},
                   "value": STRING, "value_list": STRING, "created": UNIX, "created_by": _nullable(STRING),
                   "livemode": {"type": "boolean"}},
}
EARLY_FRAUD_WARNING = {
    "type": "object",
    "description": "An issuer's early fraud warning on a payment, as the PSP reported it (Stripe's "
                   "`radar.early_fraud_warning`). Kassa has no charge objects: `charge` is null and the payment is "
                   "`payment_intent`. Events `radar.early_fraud_warning.created` and `.updated`.",
    "required": ["id", "object", "actionable", "charge", "created", "fraud_type", "livemode", "payment_intent"],
    "properties": {
        "id": {"type": "string", "pattern": "^issfr_"}, "object": {"const": "radar.early_fraud_warning"},
        "actionable": {"type": "boolean"}, "charge": {"type": "null"}, "created": UNIX, "fraud_type": STRING,
        "livemode": {"type": "boolean"}, "payment_intent": STRING, "payment": STRING, "psp": STRING,
        "psp_reference": STRING, "psp_charge": _nullable(STRING),
    },
}
VALUE_LIST = {
    "type": "object",
    "description": "A value list (Stripe's `radar.value_list`) that rules name as `@alias`: card fingerprints, BINs, "
                   "emails, email domains, IP addresses and ranges (CIDR), countries or strings.",
    "required": ["id", "object", "alias", "name", "item_type", "created", "created_by", "livemode", "metadata",
                 "list_items"],
    "properties": {"id": {"type": "string", "pattern": "^rsl_"}, "object": {"const": "radar.value_list"},
                   "alias": STRING, "name": STRING, "item_type": {"enum": list(RISK_ITEM_TYPES)}, "created": UNIX,
                   "created_by": _nullable(STRING), "livemode": {"type": "boolean"},
                   "metadata": {"type": "object", "additionalProperties": STRING},
                   "list_items": {"type": "object", "required": ["object", "data", "has_more", "url"],
                                  "properties": {"object": {"const": "list"}, "url": STRING,
                                                 "has_more": {"type": "boolean"},
                                                 "data": {"type": "array", "items": _ref("ValueListItem")}}}},
}
VALUE_LIST_DELETED = {"type": "object", "required": ["id", "object", "deleted"],
                      "properties": {"id": STRING, "object": {"const": "radar.value_list"}, "deleted": {"const": True}}}
VALUE_LIST_ITEM_DELETED = {"type": "object", "required": ["id", "object", "deleted"],
                           "properties": {"id": STRING, "object": {"const": "radar.value_list_item"},
                                          "deleted": {"const": True}}}
ALIAS = {"type": "string", "minLength": 1, "maxLength": 100, "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"}
CREATE_VALUE_LIST = {"type": "object", "required": ["alias", "name"], "additionalProperties": False, "properties": {
    "alias": {**ALIAS, "description": "How rules name the list (`@alias`); not starting with `platform_`."},
    "name": {"type": "string", "minLength": 1, "maxLength": 200},
    "item_type": {"enum": list(RISK_ITEM_TYPES), "default": "string"}, "metadata": METADATA}}
UPDATE_VALUE_LIST = {"type": "object", "additionalProperties": False, "properties": {
    "alias": ALIAS, "name": {"type": "string", "minLength": 1, "maxLength": 200}, "metadata": METADATA}}
CREATE_VALUE_LIST_ITEM = {"type": "object", "required": ["value_list", "value"], "additionalProperties": False,
                          "properties": {"value_list": ID, "value": {"type": "string", "minLength": 1, "maxLength": 800}}}
APPROVE_REVIEW = {"type": "object", "additionalProperties": False, "properties": {
    "capture": {"type": "boolean", "default": True,
                "description": "Capture the held payment now (false: leave it for your own capture)."},
    "note": {"type": "string", "minLength": 1, "maxLength": 2000, "description": "Why (kept with the review)."}}}

FILE = {
    "type": "object", "required": ["id", "object", "livemode", "created", "purpose", "type", "size", "filename", "pages"],
    "properties": {"id": {"type": "string", "pattern": "^file_"}, "object": {"const": "file"},
                   "livemode": {"type": "boolean"}, "created": UNIX, "purpose": {"enum": list(FILE_PURPOSES)},
                   "type": {"enum": list(FILE_TYPES)}, "size": INT, "filename": _nullable(STRING), "pages": INT},
}


def _list_of(item: str) -> dict:
    return {"type": "object", "required": ["object", "url", "data", "has_more"],
            "properties": {"object": {"const": "list"}, "url": STRING, "data": {"type": "array", "items": _ref(item)},
                           "has_more": {"type": "boolean"}}}


PAYMENT_METHOD = {"type": "string", "minLength": 1, "maxLength": 255,
                  "description": "A token of the PSP vault this mode pays with (sandbox: `tok_...`, Stripe: `pm_...`), "
                                 "good for this payment only. Never a card number: that is refused (400 "
                                 "`invalid_payment_method`), as is any card number in a text field (400 "
                                 "`card_number_in_field`)."}
CUSTOMER_IP = {"type": "string", "minLength": 1, "maxLength": 45,
               "description": "The shopper's IP address (IPv4 or IPv6), for the risk rules: this request comes "
                              "from your server, so its own address says nothing about the shopper."}
CREATE_PAYMENT = {
    "type": "object", "required": ["amount", "currency"], "additionalProperties": False,
    "properties": {
        "amount": AMOUNT, "currency": {"enum": CURRENCIES},
        "capture_method": {"enum": ["automatic", "manual"], "default": "automatic"},
        "split": {"type": "array", "minItems": 1, "maxItems": MAX_SPLIT_SELLERS, "items": {
            "type": "object", "required": ["seller", "amount"], "additionalProperties": False,
            "properties": {"seller": ID, "amount": AMOUNT, "fee": {"type": "integer", "minimum": 0,
                                                                   "maximum": MAX_AMOUNT}}},
            "description": "Each seller's amount and platform fee; the amounts add up to `amount`."},
        "customer_email": {"type": "string", "format": "email", "maxLength": 320},
        "description": {"type": "string", "minLength": 1, "maxLength": 1000},
        "metadata": METADATA,
        "payment_method": PAYMENT_METHOD,
        "confirm": {"type": "boolean", "default": False},
        "return_url": {"type": "string", "format": "uri", "maxLength": 2000},
        "customer_ip": CUSTOMER_IP,
    },
}

CONFIRM = {"type": "object", "additionalProperties": False, "properties": {
    "payment_method": PAYMENT_METHOD, "customer_ip": CUSTOMER_IP,
    "return_url": {"type": "string", "format": "uri", "maxLength": 2000}}}
CAPTURE = {"type": "object", "additionalProperties": False, "properties": {"amount": AMOUNT}}
CANCEL = {"type": "object", "additionalProperties": False,
          "properties": {"cancellation_reason": {"enum": list(CANCELLATION_REASONS)}}}
CREATE_REFUND = {
    "type": "object", "required": ["payment"], "additionalProperties": False,
    "properties": {
        "payment": ID, "amount": AMOUNT, "reason": {"enum": list(REFUND_REASONS)}, "metadata": METADATA,
        "sellers": {"type": "array", "minItems": 1, "maxItems": MAX_SPLIT_SELLERS, "items": {
            "type": "object", "required": ["seller", "amount"], "additionalProperties": False,
            "properties": {"seller": ID, "amount": AMOUNT}}},
    },
}
CREATE_SELLER = {"type": "object", "required": ["name"], "additionalProperties": False, "properties": {
    "name": {"type": "string", "minLength": 1, "maxLength": 200},
    "email": {"type": "string", "format": "email", "maxLength": 320}, "metadata": METADATA}}


URL = {"type": "string", "format": "uri", "maxLength": 2000}
CREATE_CHECKOUT_SESSION = {
    "type": "object", "required": ["currency", "success_url"], "additionalProperties": False,
    "oneOf": [{"required": ["amount"]}, {"required": ["line_items"]}],
    "description": "Either `amount` or `line_items` (whose amounts make the total), not both.",
    "properties": {
        "currency": {"enum": CURRENCIES},
        "amount": {"type": "integer", "minimum": 1, "maximum": checkout.MAX_AMOUNT},
        "line_items": {"type": "array", "minItems": 1, "maxItems": checkout.MAX_LINE_ITEMS, "items": {
            "type": "object", "required": ["name", "unit_amount"], "additionalProperties": False,
            "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 200},
                           "quantity": {"type": "integer", "minimum": 1, "maximum": checkout.MAX_QUANTITY,
                                        "default": 1},
                           "unit_amount": {"type": "integer", "minimum": 0, "maximum": checkout.MAX_AMOUNT}}}},
        "description": {"type": "string", "maxLength": 500},
        "split": {"type": "array", "minItems": 1, "maxItems": 100, "items": {
            "type": "object", "required": ["seller", "amount"], "additionalProperties": False,
            "properties": {"seller": ID, "amount": {"type": "integer", "minimum": 1, "maximum": checkout.MAX_AMOUNT},
                           "fee": {"type": "integer", "minimum": 0, "maximum": checkout.MAX_AMOUNT}}},
            "description": "Each seller's amount and platform fee; the amounts add up to the total."},
        "success_url": {**URL, "description": "Where the shopper lands after paying (`session_id` is added). "
                                              "https:// in live mode."},
        "cancel_url": URL,
        "customer_email": {"type": "string", "format": "email", "maxLength": 320},
        "client_reference_id": {"type": "string", "maxLength": 200},
        "metadata": METADATA,
        "expires_at": {**UNIX, "minimum": 0, "maximum": checkout.MAX_EXPIRES_AT,
                       "description": "Unix time 30 minutes to 24 hours from now (default: 24 hours)."},
    },
}

EVENT_TYPE_CHOICE = {"anyOf": [{"const": ALL_EVENTS}, {
    "type": "string", "maxLength": 100, "pattern": webhooks.EVENT_TYPE_PATTERN.pattern,
    "description": "One of the event types of the Event object (internal types are refused)."}]}
WEBHOOK_ENDPOINT_FIELDS = {
    "url": {"type": "string", "minLength": 1, "maxLength": webhooks.URL_MAX,
            "description": "https:// (test mode also takes http://), not a private or loopback address."},
    "enabled_events": {"type": "array", "minItems": 1, "maxItems": webhooks.MAX_EVENT_TYPES,
                       "items": EVENT_TYPE_CHOICE, "description": "Event types to send, or `[\"*\"]` for all."},
    "description": {"type": "string", "maxLength": webhooks.DESCRIPTION_MAX},
}
CREATE_WEBHOOK_ENDPOINT = {"type": "object", "required": ["url", "enabled_events"], "additionalProperties": False,
                           "properties": WEBHOOK_ENDPOINT_FIELDS}
UPDATE_WEBHOOK_ENDPOINT = {"type": "object", "additionalProperties": False, "properties": {
    **WEBHOOK_ENDPOINT_FIELDS,
    "disabled": {"type": "boolean", "description": "true switches the endpoint off; false back on."}}}

UPDATE_DISPUTE = {
    "type": "object", "additionalProperties": False,
    "properties": {
        "evidence": {"type": "object", "additionalProperties": False,
                     "description": "Stripe's evidence fields: text, or a file id for the file fields; an empty string "
                                    "clears a field. At most 20,000 characters a field and 150,000 in all.",
                     "properties": {name: {"type": "string", "maxLength": evidence_rules.TEXT_FIELD_MAX}
                                    for name in evidence_rules.FIELDS}},
        "metadata": METADATA,
        "submit": {"type": "boolean", "default": False,
                   "description": "Submit the evidence to the payment processor: final, refused after due_by."},
    },
}
CLOSE_DISPUTE = {"type": "object", "additionalProperties": False, "properties": {}}

ERROR_STATUSES = {
    "400": "Invalid request: a parameter (`param` names it), a state the object cannot leave this way, or an "
           "idempotency key reused with another request.",
    "401": "No valid API key.",
    "403": "A publishable key where a secret key is needed.",
    "404": "No such object for this merchant and mode.",
    "409": "A request with this Idempotency-Key is still in flight, or the object's state conflicts (a review "
           "decided already: `review_closed`; a capture or cancel while the platform reviews the payment: "
           "`payment_in_review`).",
    "413": "Body too large.",
    "415": "Unsupported content type.",
    "429": "Rate limited.",
}
WRITE_ERRORS = ("400", "401", "403", "404", "413", "415", "429")
READ_ERRORS = ("400", "401", "403", "404", "429")


# -- examples: what a request and its answer look like (the dashboard shows them and builds curl from them) --

def _id(prefix: str, ulid: str) -> str:
    return f"{prefix}_{ulid}"


PAYMENT_ID = _id("pay", "01JD3XK2M8Q4V7T9R6N5B2C1ZA")
ATTEMPT_ID = _id("att", "01JD3XK2N1W5Y8S3P7H4D6F9EB")
SELLER_ID = _id("sel", "01JD3XJZ7K2M4P6R8T0V2X4Z6C")
REFUND_ID = _id("re", "01JD3XM5A2C4E6G8J0K2M4P6RD")
EVENT_ID = _id("evt", "01JD3XK3B5D7F9H1K3M5P7R9TE")
ENDPOINT_ID = _id("we", "01JD3XH8C1E3G5J7L9N1Q3S5UF")
SESSION_ID = _id("cs", "01JD3XN6D8F0H2K4M6P8R0T2VG") + "q2Vh8JmT0rXyLp4WnB7sKd1FzC9aEoUi"
DISPUTE_ID = _id("dsp", "01JD3XQ4E6G8J0L2N4Q6S8U0WB")
FILE_ID = _id("file", "01JD3XR2F4H6K8M0P2R4T6V8XC")
CREATED = 1732104000  # 2024-11-20 12:00:00 UTC

REVIEW_ID = _id("prv", "01JD3XS8G2J4L6N8Q0S2U4W6YD")
VALUE_LIST_ID = _id("rsl", "01JD3XT6H0K2M4P6R8T0V2X4ZE")
VALUE_LIST_ITEM_ID = _id("rsli", "01JD3XV4J8M0P2R4T6V8X0Z2BF")
PAYOUT_ID = _id("po", "01JD3XW0H6K8M0P2R4T6V8X0ZA")

EXAMPLE_IDS = {"payment_id": PAYMENT_ID, "refund_id": REFUND_ID, "seller_id": SELLER_ID, "event_id": EVENT_ID,
               "endpoint_id": ENDPOINT_ID, "session_id": SESSION_ID, "dispute_id": DISPUTE_ID, "file_id": FILE_ID,
               "review_id": REVIEW_ID, "value_list_id": VALUE_LIST_ID, "item_id": VALUE_LIST_ITEM_ID,
               "payout_id": PAYOUT_ID, "subject": SELLER_ID, "warning_id": "issfr_01JD3XW9K6N8Q0S2U4W6Y8A0CG"}


def payment_example(**changes) -> dict:
    """A card payment of 20.00 EUR as the API answers it, with ``changes`` applied."""
    payment = {
        "id": PAYMENT_ID, "object": "payment", "livemode": False, "created": CREATED, "amount": 2000,
        "currency": "EUR", "status": "requires_payment_method", "capture_method": "automatic",
        "amount_capturable": 0, "amount_received": 0, "amount_refunded": 0, "customer_email": "ann@example.com",
        "description": None, "metadata": {"order": "1001"}, "payment_method": None, "connector": None,
        "next_action": None, "return_url": None, "last_payment_error": None, "cancellation_reason": None,
        "canceled_at": None, "split": [{"seller": SELLER_ID, "amount": 2000, "fee": 0, "amount_captured": 0,
                                        "fee_captured": 0, "amount_refunded": 0, "fee_refunded": 0}],
        "attempts": [], "disputed": False, "dispute": None,
    }
    payment.update(changes)
    return payment


CARD = {"vault": "sandbox", "brand": "visa", "last4": "4242", "exp_month": 12, "exp_year": 2030,
        "fingerprint": "fp_3kq9Zt2M"}


def _attempt(operation: str, status: str, amount: int = 2000) -> dict:
    return {"id": ATTEMPT_ID, "object": "payment_attempt", "operation": operation, "status": status,
            "amount": amount, "currency": "EUR", "connector": "sandbox", "psp_reference": "auth_7Hc2Lq",
            "decline_code": None, "error_message": None, "tries": 1, "created": CREATED + 60,
            "started": CREATED + 60, "finished": CREATED + 61, "latency_ms": 412, "attention": None}


def _split_part(captured: int) -> list[dict]:
    return [{"seller": SELLER_ID, "amount": 2000, "fee": 0, "amount_captured": captured, "fee_captured": 0,
             "amount_refunded": 0, "fee_refunded": 0}]


PAYMENT_SUCCEEDED = payment_example(
    status="succeeded", amount_received=2000, payment_method=CARD, connector="sandbox", split=_split_part(2000),
    attempts=[_attempt("authorize", "succeeded")])
PAYMENT_AUTHORIZED = payment_example(
    status="requires_capture", capture_method="manual", amount_capturable=2000, payment_method=CARD,
    connector="sandbox", attempts=[_attempt("authorize", "succeeded")])
PAYMENT_CAPTURED = payment_example(
    status="succeeded", capture_method="manual", amount_received=1500, payment_method=CARD, connector="sandbox",
    split=_split_part(1500), attempts=[_attempt("authorize", "succeeded"), _attempt("capture", "succeeded", 1500)])
PAYMENT_CANCELED = payment_example(
    status="canceled", capture_method="manual", payment_method=CARD, connector="sandbox",
    cancellation_reason="requested_by_customer", canceled_at=CREATED + 120,
    attempts=[_attempt("authorize", "succeeded"), {**_attempt("void", "processing"), "finished": None,
                                                   "latency_ms": None, "psp_reference": "auth_7Hc2Lq"}])
REFUND_EXAMPLE = {
    "id": REFUND_ID, "object": "refund", "livemode": False, "created": CREATED + 300, "payment": PAYMENT_ID,
    "amount": 500, "currency": "EUR", "status": "succeeded", "reason": "requested_by_customer", "metadata": {},
    "sellers": [{"seller": SELLER_ID, "amount": 500, "fee": 0}], "failure_code": None, "failure_message": None,
    "connector": "sandbox", "psp_reference": "rf_2Mx8Qa", "attention": None,
}
SELLER_EXAMPLE = {"id": SELLER_ID, "object": "seller", "livemode": False, "created": CREATED - 600,
                  "name": "Ann's Pottery", "email": "ann@example.com", "default": False, "metadata": {}}
BANK_ACCOUNT_EXAMPLE = {
    "id": "ba_01JD3XK2M4N5P6Q7R8S9T0V1W2", "object": "bank_account", "seller": SELLER_ID,
    "account_holder_name": "Ann Potter", "country": "DE", "currency": "EUR", "kind": "iban", "last4": "3000",
    "bic": "COBADEFFXXX", "routing_code": None, "bank_name": "Commerzbank", "cooling_until": CREATED + 3 * 86400,
    "flagged": False, "failure_code": None, "replaced": False, "created": CREATED, "livemode": False}
EVENT_EXAMPLE = {"id": EVENT_ID, "object": "event", "type": "payment.succeeded", "livemode": False,
                 "created": CREATED + 61, "data": {"object": PAYMENT_SUCCEEDED}, "request": {"id": None}}
BALANCE_EXAMPLE = {"object": "balance", "livemode": False,
                   "sellers": [{"seller": SELLER_ID, "currency": "EUR", "amount": 1500, "pending": 500,
                                "available": 1000, "in_transit": 2000, "reserved": 0}],
                   "platform_fees": [{"currency": "EUR", "amount": 0}],
                   "merchant": [{"currency": "EUR", "pending": 0, "available": 0, "in_transit": 0, "reserved": 0}]}
PAYOUT_EXAMPLE = {
    "id": PAYOUT_ID, "object": "payout", "livemode": False, "amount": 2000, "currency": "EUR", "status": "in_transit",
    "type": "scheduled", "seller": SELLER_ID, "destination": "ba_01JD3XW2K6N8Q0S2U4W6Y8A0CG",
    "bank_account_last4": "3000", "method": "standard", "rail": "sandbox", "period": "2024-11-20", "description": None,
    "arrival_date": "2024-11-22", "held_until": None, "hold_reason": None, "failure_code": None,
    "failure_message": None, "created": CREATED, "paid_at": None, "failed_at": None, "canceled_at": None}
BALANCE_TRANSACTION_EXAMPLE = {
    "id": "lent_01JD3XK3B5D7F9H1K3M5P7R9TZ", "object": "balance_transaction", "type": "charge", "amount": 2000,
    "fee": 60, "net": 1940, "currency": "EUR", "created": CREATED, "available_on": "2024-11-21",
    "status": "available", "source": PAYMENT_ID, "description": f"Capture of payment {PAYMENT_ID}",
    "payout": PAYOUT_ID, "seller": SELLER_ID}
PAYOUT_SCHEDULE_EXAMPLE = {"object": "payout_schedule", "subject": SELLER_ID, "interval": "weekly",
                           "weekly_anchor": "friday", "monthly_anchor": 1, "minimum_amount": 1000, "delay_days": 2,
                           "reserve_percent_bp": 0, "reserve_days": 0, "reserve_minimum": 0}
CHECKOUT_SESSION_EXAMPLE = {
    "id": SESSION_ID, "object": "checkout.session", "livemode": False, "status": "open", "payment_status": "unpaid",
    "url": f"https://kassa.example/c/{SESSION_ID}", "amount_total": 3000, "currency": "EUR",
    "line_items": [{"name": "T-shirt", "quantity": 2, "unit_amount": 1500, "amount": 3000}], "description": None,
    "split": None, "success_url": "https://shop.example/thanks", "cancel_url": None, "customer_email": None,
    "client_reference_id": "order-1002", "metadata": {}, "payment": None, "attempt_number": 1,
    "expires_at": CREATED + 86400, "created": CREATED, "completed_at": None, "expired_at": None,
}
ENDPOINT_EXAMPLE = {
    "id": ENDPOINT_ID, "object": "webhook_endpoint", "url": "https://shop.example/hooks/kassa",
    "description": None, "enabled_events": ["payment.succeeded", "refund.succeeded"], "status": "enabled",
    "disabled_reason": None, "disabled_detail": None, "livemode": False, "created": CREATED,
}
ACCOUNT_EXAMPLE = {
    "object": "account", "id": "mer_01JD3XG1A3C5E7G9J1L3N5Q7SA", "name": "Ann's Pottery Market",
    "livemode": False, "live_enabled": False, "suspended": False, "charges_enabled": True, "created": CREATED - 86400,
    "settings": {"display_name": "Ann's Pottery Market", "accent_color": "#4f46e5", "logo_url": None,
                 "timezone": "Europe/Berlin"},
}


DISPUTE_EXAMPLE = {
    "id": DISPUTE_ID, "object": "dispute", "livemode": False, "created": CREATED + 86400, "amount": 2000,
    "currency": "EUR", "reason": "product_not_received", "status": "needs_response", "payment": PAYMENT_ID,
    "is_charge_refundable": False,
    "evidence": {**{name: None for name in evidence_rules.FIELDS},
                 "product_description": "Hand-thrown stoneware mug, glazed blue",
                 "shipping_tracking_number": "1Z999AA10123456784"},
    "evidence_details": {"due_by": CREATED + 8 * 86400, "has_evidence": True, "past_due": False,
                         "submission_count": 0},
    "pending_action": None, "last_action_error": None, "funds_withdrawn": True, "funds_reinstated": False,
    "fee": {"amount": 1500, "currency": "EUR"}, "fee_returned": None, "metadata": {}, "psp": "sandbox",
    "psp_reference": "dp_5Tq2Lw8Nc", "connector": "sandbox",
}
FILE_EXAMPLE = {"id": FILE_ID, "object": "file", "livemode": False, "created": CREATED + 90000,
                "purpose": "dispute_evidence", "type": "pdf", "size": 48213, "filename": "receipt-1001.pdf", "pages": 1}

# What a download of FILE_EXAMPLE answers besides its Content-Type (app/disputes/files.py: download_headers).
DOWNLOAD_HEADERS_EXAMPLE = {"Content-Disposition": f'attachment; filename="{FILE_ID}.pdf"',
                            "X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox"}


REVIEW_EXAMPLE = {
    "id": REVIEW_ID, "object": "review", "livemode": False, "created": CREATED + 61, "payment": PAYMENT_ID,
    "payment_intent": PAYMENT_ID, "charge": None, "billing_zip": None, "open": True, "opened_reason": "rule",
    "closed_reason": None, "reason": "rule", "ip_address": "81.2.69.160",
    "ip_address_location": {"city": None, "country": "GB", "latitude": None, "longitude": None, "region": None},
    "session": {"browser": None, "device": None, "platform": None, "version": None}, "owner": "merchant",
    "rule": "rule_01JD3XW2K6N8Q0S2U4W6Y8A0CG", "expires_at": CREATED + 6 * 86400 + 61, "closed_at": None,
}
VALUE_LIST_ITEM_EXAMPLE = {"id": VALUE_LIST_ITEM_ID, "object": "radar.value_list_item", "value": "203.0.113.0/24",
                           "value_list": VALUE_LIST_ID, "created": CREATED, "created_by": "api", "livemode": False}
EARLY_FRAUD_WARNING_ID = "issfr_01JD3XW9K6N8Q0S2U4W6Y8A0CG"
EARLY_FRAUD_WARNING_EXAMPLE = {
    "id": EARLY_FRAUD_WARNING_ID, "object": "radar.early_fraud_warning", "actionable": True, "charge": None,
    "created": CREATED, "fraud_type": "made_with_stolen_card", "livemode": False, "payment_intent": PAYMENT_ID,
    "payment": PAYMENT_ID, "psp": "stripe", "psp_reference": "issfr_1Pgc79B7WZ01zgkWxwDzEIPX",
    "psp_charge": "ch_1234",
}
VALUE_LIST_EXAMPLE = {
    "id": VALUE_LIST_ID, "object": "radar.value_list", "alias": "custom_ip_blocklist", "name": "Custom IP Blocklist",
    "item_type": "ip_address", "created": CREATED, "created_by": "api", "livemode": False, "metadata": {},
    "list_items": {"object": "list", "data": [VALUE_LIST_ITEM_EXAMPLE], "has_more": False,
                   "url": f"/v1/radar/value_list_items?value_list={VALUE_LIST_ID}"},
}


def _list_example(url: str, item: dict) -> dict:
    return {"object": "list", "url": url, "data": [item], "has_more": False}


# -- operations -------------------------------------------------------------------------------------------

IDEMPOTENCY = {"name": "Idempotency-Key", "in": "header", "required": False,
               "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": IDEMPOTENCY_KEY_PATTERN},
               "description": "Makes a retry safe: the same key and request replay the first response (24 h). "
                              "Visible ASCII without spaces."}
PATH_ID = {"in": "path", "required": True, "schema": {"type": "string", "minLength": 1, "maxLength": 100,
                                                      "pattern": r"^[A-Za-z0-9_-]+$"}}
LIMIT = {"type": "integer", "minimum": 1, "maximum": LIST_LIMIT_MAX, "default": LIST_LIMIT_DEFAULT}
CURSOR = {**ID, "description": "The id of an object of this list (else 400 naming the parameter)."}


def _page(*, backward: bool = True) -> list[dict]:
    """The paging parameters, as one exploded query object (``?limit=3&starting_after=pay_...``), so that the
    schema itself says ``starting_after`` and ``ending_before`` do not go together."""
    properties = {"limit": LIMIT,
                  "starting_after": {**CURSOR, "description": CURSOR["description"] + " The page after it (older)."}}
    schema = {"type": "object", "additionalProperties": False, "properties": properties}
    if backward:
        properties["ending_before"] = {**CURSOR, "description": CURSOR["description"] + " The page before it "
                                                                                       "(newer)."}
        schema["not"] = {"required": ["starting_after", "ending_before"]}
        schema["description"] = "`starting_after` or `ending_before`, not both."
    return [{"name": "page", "in": "query", "style": "form", "explode": True, "schema": schema,
             "example": {"limit": 3}}]


PAGE = _page()


def _json(schema: dict, example=None) -> dict:
    return {"application/json": {"schema": schema, **({"example": example} if example is not None else {})}}


def _operation(operation_id: str, summary: str, result: str, example: dict, *, description: str | None = None,
               path_id: str | None = None, query=(), body: dict | None = None, body_example: dict | None = None,
               idempotency_key: str | None = None, errors=READ_ERRORS) -> dict:
    """One operation: parameters, the JSON body (when it takes one), its 200 and its error answers.

    ``idempotency_key``: the operation honours the Idempotency-Key header (this is the example's key).
    """
    parameters = ([{**IDEMPOTENCY, "example": idempotency_key}] if idempotency_key else []) + list(query)
    if path_id:
        parameters.append({"name": path_id, **PATH_ID, "example": EXAMPLE_IDS[path_id]})
    operation = {"operationId": operation_id, "summary": summary}
    if description:
        operation["description"] = description
    operation["parameters"] = parameters
    if body is not None:
        operation["requestBody"] = {"required": False, "content": _json(body, body_example)}
    statuses = errors + (("409",) if idempotency_key else ())
    operation["responses"] = {
        "200": {"description": "OK", "content": _json(_ref(result), example)},
        **{s: {"description": ERROR_STATUSES[s], "content": _json(_ref("Error"))} for s in sorted(statuses)},
    }
    return operation


def _paths() -> dict:
    payment_filters = PAGE + [
        {"name": "status", "in": "query", "schema": {"enum": [s.value for s in PaymentStatus]}},
        {"name": "customer_email", "in": "query", "schema": {"type": "string", "maxLength": 320}},
        {"name": "seller", "in": "query", "schema": ID},
        {"name": "risk_level", "in": "query", "schema": {"enum": list(LEVELS)},
         "description": "The risk assessment's level."},
        {"name": "outcome", "in": "query", "schema": {"enum": list(OUTCOME_TYPES)},
         "description": "The outcome's `type` (`manual_review`: held for review)."},
        *({"name": f"created[{op}]", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": 2**32}}
          for op in ("gte", "gt", "lte", "lt")),
    ]
    write = {"errors": WRITE_ERRORS}
    return {
        "/v1/payments": {
            "post": _operation(
                "createPayment", "Create a payment (and confirm it with `confirm=true`)", "Payment",
                payment_example(), body=CREATE_PAYMENT, idempotency_key="order-1001", **write,
                body_example={"amount": 2000, "currency": "eur", "customer_email": "ann@example.com",
                              "metadata": {"order": "1001"}}),
            "get": _operation("listPayments", "List payments, newest first", "PaymentList",
                              _list_example("/v1/payments", PAYMENT_SUCCEEDED), query=payment_filters),
        },
        "/v1/payments/{payment_id}": {
            "get": _operation("retrievePayment", "Retrieve a payment", "Payment", PAYMENT_SUCCEEDED,
                              path_id="payment_id")},
        "/v1/payments/{payment_id}/confirm": {
            "post": _operation("confirmPayment", "Confirm with a card token; waits briefly for the outcome, "
                                                 "else answers `processing`", "Payment", PAYMENT_SUCCEEDED,
                               path_id="payment_id", body=CONFIRM, body_example={"payment_method": "tok_4eC39HqLyjWD"},
                               idempotency_key="order-1001-confirm", **write)},
        "/v1/payments/{payment_id}/capture": {
            "post": _operation("capturePayment", "Capture in full or partially (the rest is released)", "Payment",
                               PAYMENT_CAPTURED, path_id="payment_id", body=CAPTURE, body_example={"amount": 1500},
                               idempotency_key="order-1001-capture", **write)},
        "/v1/payments/{payment_id}/cancel": {
            "post": _operation("cancelPayment", "Cancel (voids an authorization)", "Payment", PAYMENT_CANCELED,
                               description="The answer shows the payment canceled, with nothing left to capture "
                                           "(`amount_capturable` 0), while the void reaches the PSP. A payment "
                                           "held for a review the platform owns is refused (409 "
                                           "`payment_in_review`): the platform's rejection voids it.",
                               path_id="payment_id", body=CANCEL,
                               body_example={"cancellation_reason": "requested_by_customer"},
                               idempotency_key="order-1001-cancel", **write)},
        "/v1/refunds": {
            "post": _operation("createRefund", "Refund a captured payment (partially, per seller or pro rata)",
                               "Refund", REFUND_EXAMPLE, body=CREATE_REFUND,
                               body_example={"payment": PAYMENT_ID, "amount": 500, "reason": "requested_by_customer"},
                               idempotency_key="order-1001-refund", **write),
            "get": _operation("listRefunds", "List refunds, newest first", "RefundList",
                              _list_example("/v1/refunds", REFUND_EXAMPLE),
                              query=PAGE + [{"name": "payment", "in": "query", "schema": ID}]),
        },
        "/v1/refunds/{refund_id}": {
            "get": _operation("retrieveRefund", "Retrieve a refund", "Refund", REFUND_EXAMPLE, path_id="refund_id")},
        "/v1/sellers": {
            "post": _operation("createSeller", "Create a seller", "Seller", SELLER_EXAMPLE, body=CREATE_SELLER,
                               body_example={"name": "Ann's Pottery", "email": "ann@example.com"},
                               idempotency_key="seller-ann", **write),
            "get": _operation("listSellers", "List sellers, newest first", "SellerList",
                              _list_example("/v1/sellers", SELLER_EXAMPLE), query=PAGE),
        },
        "/v1/sellers/{seller_id}": {
            "get": _operation("retrieveSeller", "Retrieve a seller", "Seller", SELLER_EXAMPLE, path_id="seller_id")},
        "/v1/sellers/{seller_id}/bank_account": {
            "get": _operation(
                "retrieveSellerBankAccount", "Retrieve a seller's payout bank account (masked)", "BankAccount",
                BANK_ACCOUNT_EXAMPLE, path_id="seller_id",
                description="Read-only: bank accounts are added and changed only in the dashboard, after the "
                            "person re-authenticates. 404 when the seller has none.")},
        "/v1/events": {
            "get": _operation("listEvents", "List events, newest first", "EventList",
                              _list_example("/v1/events", EVENT_EXAMPLE), query=PAGE + [
                                  {"name": "type", "in": "query", "schema": {"type": "string", "maxLength": 100}},
                                  {"name": "object", "in": "query", "schema": ID}])},
        "/v1/events/{event_id}": {
            "get": _operation("retrieveEvent", "Retrieve an event", "Event", EVENT_EXAMPLE, path_id="event_id")},
        "/v1/balance": {
            "get": _operation("retrieveBalance", "Seller balances and platform fees from the ledger", "Balance",
                              BALANCE_EXAMPLE)},
        "/v1/payouts": {
            "post": _operation("createPayout", "A manual payout (at most what is available) to a seller's bank "
                                               "account, or without `seller` to the merchant's own", "Payout",
                               {**PAYOUT_EXAMPLE, "type": "manual", "status": "pending", "period": None},
                               body=CREATE_PAYOUT, body_example={"seller": SELLER_ID, "amount": 2000,
                                                                 "currency": "eur"},
                               idempotency_key="payout-2024-11-20", **write),
            "get": _operation("listPayouts", "List payouts, newest first", "PayoutList",
                              _list_example("/v1/payouts", PAYOUT_EXAMPLE), query=PAGE + [
                                  {"name": "seller", "in": "query", "schema": ID,
                                   "description": "A seller id, or `merchant` for the merchant's own payouts."},
                                  {"name": "status", "in": "query",
                                   "schema": {"enum": ["pending", "in_transit", "paid", "failed", "canceled"]}},
                                  {"name": "currency", "in": "query", "schema": {"enum": CURRENCIES}}])},
        "/v1/payouts/{payout_id}": {
            "get": _operation("retrievePayout", "Retrieve a payout", "Payout", PAYOUT_EXAMPLE, path_id="payout_id")},
        "/v1/payouts/{payout_id}/cancel": {
            "post": _operation("cancelPayout", "Cancel a pending payout (its money goes back to the balance)",
                               "Payout", {**PAYOUT_EXAMPLE, "status": "canceled", "canceled_at": CREATED + 60},
                               path_id="payout_id", idempotency_key="payout-cancel-1", **write)},
        "/v1/payouts/{payout_id}/reconciliation.csv": {
            "get": {"operationId": "payoutReconciliation",
                    "summary": "The balance transactions a scheduled payout pays, as CSV (their net adds up to its "
                               "amount; a manual payout lists none)",
                    "parameters": [{"name": "payout_id", **PATH_ID, "example": PAYOUT_ID}],
                    "responses": {"200": {"description": "The CSV, as an attachment.",
                                          "content": {"text/csv": {"schema": {"type": "string", "format": "binary"}}},
                                          "headers": {"Content-Disposition": {
                                              "schema": {"type": "string"},
                                              "example": f'attachment; filename="{PAYOUT_ID}-reconciliation.csv"'}}},
                                  **{s: {"description": ERROR_STATUSES[s], "content": _json(_ref("Error"))}
                                     for s in sorted(READ_ERRORS)}}}},
        "/v1/balance_transactions": {
            "get": _operation("listBalanceTransactions", "A seller's (or the merchant's own) balance transactions, "
                                                         "newest first", "BalanceTransactionList",
                              _list_example("/v1/balance_transactions", BALANCE_TRANSACTION_EXAMPLE),
                              query=_page(backward=False) + [
                                  {"name": "seller", "in": "query", "schema": ID,
                                   "description": "A seller id; none or `merchant`: the merchant's own."},
                                  {"name": "type", "in": "query", "schema": {"enum": [
                                      "charge", "refund", "dispute", "fee", "payout", "payout_reversal",
                                      "adjustment"]}},
                                  {"name": "payout", "in": "query", "schema": ID,
                                   "description": "The transactions this payout pays."},
                                  {"name": "currency", "in": "query", "schema": {"enum": CURRENCIES}}])},
        "/v1/payout_schedules/{subject}": {
            "get": _operation("retrievePayoutSchedule", "A seller's payout schedule and reserve (`merchant`: the "
                                                        "merchant's own, with its fee bearer)", "PayoutSchedule",
                              PAYOUT_SCHEDULE_EXAMPLE, path_id="subject"),
            "post": _operation("updatePayoutSchedule", "Change a payout schedule and reserve", "PayoutSchedule",
                               PAYOUT_SCHEDULE_EXAMPLE, path_id="subject", body=UPDATE_PAYOUT_SCHEDULE,
                               body_example={"interval": "weekly", "weekly_anchor": "friday"}, **write)},
        "/v1/account": {
            "get": _operation("retrieveAccount", "The merchant the API key belongs to, in the key's mode",
                              "Account", ACCOUNT_EXAMPLE)},
        "/v1/checkout/sessions": {
            "post": _operation(
                "createCheckoutSession", "Create a hosted checkout session; send the shopper to its `url`",
                "CheckoutSession", CHECKOUT_SESSION_EXAMPLE, body=CREATE_CHECKOUT_SESSION, **write,
                body_example={"currency": "eur", "success_url": "https://shop.example/thanks",
                              "line_items": [{"name": "T-shirt", "quantity": 2, "unit_amount": 1500}],
                              "client_reference_id": "order-1002"}),
            "get": _operation(
                "listCheckoutSessions", "List checkout sessions, newest first", "CheckoutSessionList",
                _list_example("/v1/checkout/sessions", CHECKOUT_SESSION_EXAMPLE), query=[
                    *_page(backward=False),
                    {"name": "status", "in": "query", "schema": {"enum": [s.value for s in SessionStatus]}},
                    {"name": "client_reference_id", "in": "query", "schema": {"type": "string", "maxLength": 200}},
                    {"name": "payment", "in": "query", "schema": ID}]),
        },
        "/v1/checkout/sessions/{session_id}": {
            "get": _operation("retrieveCheckoutSession", "Retrieve a checkout session", "CheckoutSession",
                              CHECKOUT_SESSION_EXAMPLE, path_id="session_id")},
        "/v1/checkout/sessions/{session_id}/expire": {
            "post": _operation("expireCheckoutSession", "Expire an open session now (its page stops taking "
                                                        "payments)", "CheckoutSession",
                               {**CHECKOUT_SESSION_EXAMPLE, "status": "expired", "url": None,
                                "expired_at": CREATED + 600},
                               description="400 when the session is complete or its payment is in progress.",
                               path_id="session_id", **write)},
        "/v1/webhook_endpoints": {
            "post": _operation(
                "createWebhookEndpoint", "Create a webhook endpoint; the answer has its signing secret, this once",
                "WebhookEndpoint", {**ENDPOINT_EXAMPLE, "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"},
                body=CREATE_WEBHOOK_ENDPOINT, **write,
                body_example={"url": "https://shop.example/hooks/kassa",
                              "enabled_events": ["payment.succeeded", "refund.succeeded"]}),
            "get": _operation("listWebhookEndpoints", "List webhook endpoints, newest first", "WebhookEndpointList",
                              _list_example("/v1/webhook_endpoints", ENDPOINT_EXAMPLE), query=PAGE),
        },
        "/v1/webhook_endpoints/{endpoint_id}": {
            "get": _operation("retrieveWebhookEndpoint", "Retrieve a webhook endpoint", "WebhookEndpoint",
                              ENDPOINT_EXAMPLE, path_id="endpoint_id"),
            "post": _operation("updateWebhookEndpoint", "Update a webhook endpoint; `disabled` switches it off or "
                                                        "back on", "WebhookEndpoint", ENDPOINT_EXAMPLE,
                               path_id="endpoint_id", body=UPDATE_WEBHOOK_ENDPOINT, body_example={"disabled": False},
                               **write),
            "delete": _operation("deleteWebhookEndpoint", "Delete a webhook endpoint (its attempt log stays)",
                                 "WebhookEndpointDeleted",
                                 {"id": ENDPOINT_ID, "object": "webhook_endpoint", "deleted": True},
                                 path_id="endpoint_id"),
        },
        "/v1/webhook_endpoints/{endpoint_id}/send_missed_events": {
            "post": _operation(
                "sendMissedWebhookEvents", "Send a re-enabled endpoint the events it missed while disabled "
                                           "(last 30 days)", "WebhookMissedEvents",
                {"object": "webhook_missed_events", "webhook_endpoint": ENDPOINT_ID, "livemode": False,
                 "since": CREATED - 30 * 86400, "scheduled": 12},
                description="Schedules each event of the last 30 days that was raised while the endpoint was "
                            "disabled and is of a type it subscribes to, with the event's id as webhook-id. "
                            "Idempotent: a second call schedules nothing new. 400 `webhook_endpoint_disabled` "
                            "while the endpoint is still disabled.",
                path_id="endpoint_id", **write)},
        "/v1/disputes": {
            "get": _operation("listDisputes", "List disputes, newest first", "DisputeList",
                              _list_example("/v1/disputes", DISPUTE_EXAMPLE), query=PAGE + [
                                  {"name": "status", "in": "query", "schema": {"enum": list(DISPUTE_STATUSES)}},
                                  {"name": "payment", "in": "query", "schema": ID},
                                  *({"name": f"created[{op}]", "in": "query",
                                     "schema": {"type": "integer", "minimum": 0, "maximum": 2**32}}
                                    for op in ("gte", "gt", "lte", "lt"))])},
        "/v1/disputes/{dispute_id}": {
            "get": _operation("retrieveDispute", "Retrieve a dispute", "Dispute", DISPUTE_EXAMPLE,
                              path_id="dispute_id"),
            "post": _operation("updateDispute", "Save evidence (a draft) and metadata; `submit=true` submits the "
                                                "evidence to the payment processor (final)", "Dispute",
                               DISPUTE_EXAMPLE, path_id="dispute_id", body=UPDATE_DISPUTE,
                               body_example={"evidence": {"product_description": "Hand-thrown stoneware mug",
                                                          "shipping_tracking_number": "1Z999AA10123456784"}},
                               description="Submission is refused after `evidence_details.due_by`; the payment "
                                           "processor's limits (150,000 characters over all text fields) are "
                                           "checked on every save.", **write)},
        "/v1/disputes/{dispute_id}/close": {
            "post": _operation("closeDispute", "Accept the dispute (final)", "Dispute",
                               {**DISPUTE_EXAMPLE, "pending_action": "close"}, path_id="dispute_id",
                               body=CLOSE_DISPUTE, body_example={}, **write)},
        "/v1/files": {"post": {
            "operationId": "createFile",
            "summary": f"Upload a dispute evidence file: PDF, PNG or JPEG (checked by content), at most "
                       f"{FILE_MAX_BYTES // 1024 // 1024} MB",
            "parameters": [],
            "requestBody": {"required": True, "content": {"multipart/form-data": {
                "schema": {"type": "object", "required": ["purpose", "file"], "additionalProperties": False,
                           "properties": {"purpose": {"enum": list(FILE_PURPOSES)},
                                          "file": {"type": "string", "format": "binary"}}},
                "example": {"purpose": "dispute_evidence", "file": "receipt-1001.pdf"}}}},
            "responses": {"200": {"description": "OK", "content": _json(_ref("File"), FILE_EXAMPLE)},
                          **{s: {"description": ERROR_STATUSES[s], "content": _json(_ref("Error"))}
                             for s in sorted(WRITE_ERRORS)}},
        }},
        "/v1/files/{file_id}": {
            "get": _operation("retrieveFile", "Retrieve a file's object", "File", FILE_EXAMPLE, path_id="file_id")},
        "/v1/files/{file_id}/contents": {"get": {
            "operationId": "downloadFile", "summary": "Download a file (as an attachment only)",
            "parameters": [{"name": "file_id", **PATH_ID, "example": FILE_ID}],
            "responses": {"200": {"description": "The file, with Content-Disposition: attachment.",
                                  "content": {mime: {"schema": {"type": "string", "format": "binary"}}
                                              for mime in CONTENT_TYPES.values()},
                                  "headers": {name: {"schema": {"type": "string"}, "example": value}
                                              for name, value in DOWNLOAD_HEADERS_EXAMPLE.items()}},
                          **{s: {"description": ERROR_STATUSES[s], "content": _json(_ref("Error"))}
                             for s in sorted(READ_ERRORS)}},
        }},
        "/v1/reviews": {
            "get": _operation("listReviews", "List open reviews, newest first (`open=false`: closed ones)",
                              "ReviewList", _list_example("/v1/reviews", REVIEW_EXAMPLE), query=PAGE + [
                                  {"name": "open", "in": "query", "schema": {"type": "boolean", "default": True}},
                                  *({"name": f"created[{op}]", "in": "query",
                                     "schema": {"type": "integer", "minimum": 0, "maximum": 2**32}}
                                    for op in ("gte", "gt", "lte", "lt"))])},
        "/v1/reviews/{review_id}": {
            "get": _operation("retrieveReview", "Retrieve a review", "Review", REVIEW_EXAMPLE, path_id="review_id")},
        "/v1/reviews/{review_id}/approve": {
            "post": _operation(
                "approveReview", "Approve a review: the held payment is captured", "Review",
                {**REVIEW_EXAMPLE, "open": False, "closed_reason": "approved", "reason": "approved",
                 "closed_at": CREATED + 3600},
                description="Kassa differs from Radar here: a payment in review is authorized and not captured, so "
                            "approving captures it (`capture=false` leaves it for your own capture) and a rejected "
                            "one is voided, not refunded. 409 `review_closed` once decided; 403 `review_not_owned` "
                            "when the platform reviews the payment itself.",
                path_id="review_id", body=APPROVE_REVIEW, body_example={"note": "Customer confirmed by phone"},
                errors=WRITE_ERRORS + ("409",))},
        "/v1/radar/value_lists": {
            "post": _operation("createValueList", "Create a value list", "ValueList",
                               {**VALUE_LIST_EXAMPLE, "list_items": {**VALUE_LIST_EXAMPLE["list_items"], "data": []}},
                               body=CREATE_VALUE_LIST, **write,
                               body_example={"alias": "custom_ip_blocklist", "name": "Custom IP Blocklist",
                                             "item_type": "ip_address"}),
            "get": _operation("listValueLists", "List value lists, newest first", "ValueListList",
                              _list_example("/v1/radar/value_lists", VALUE_LIST_EXAMPLE), query=PAGE + [
                                  {"name": "alias", "in": "query", "schema": {"type": "string", "maxLength": 100}},
                                  {"name": "contains", "in": "query",
                                   "schema": {"type": "string", "maxLength": 800}}])},
        "/v1/radar/value_lists/{value_list_id}": {
            "get": _operation("retrieveValueList", "Retrieve a value list", "ValueList", VALUE_LIST_EXAMPLE,
                              path_id="value_list_id"),
            "post": _operation("updateValueList", "Update a value list (a list that rules use keeps its alias)",
                               "ValueList", VALUE_LIST_EXAMPLE, path_id="value_list_id", body=UPDATE_VALUE_LIST,
                               body_example={"name": "Blocked IP ranges"}, **write),
            "delete": _operation("deleteValueList", "Delete a value list (refused while rules use it)",
                                 "ValueListDeleted", {"id": VALUE_LIST_ID, "object": "radar.value_list",
                                                      "deleted": True}, path_id="value_list_id"),
        },
        "/v1/radar/value_list_items": {
            "post": _operation("createValueListItem", "Add an item to a value list", "ValueListItem",
                               VALUE_LIST_ITEM_EXAMPLE, body=CREATE_VALUE_LIST_ITEM, **write,
                               body_example={"value_list": VALUE_LIST_ID, "value": "203.0.113.0/24"}),
            "get": _operation("listValueListItems", "List a value list's items, newest first", "ValueListItemList",
                              _list_example(f"/v1/radar/value_list_items?value_list={VALUE_LIST_ID}",
                                            VALUE_LIST_ITEM_EXAMPLE), query=PAGE + [
                                  {"name": "value_list", "in": "query", "required": True, "schema": ID,
                                   "example": VALUE_LIST_ID},
                                  {"name": "value", "in": "query", "schema": {"type": "string", "maxLength": 800}}])},
        "/v1/radar/value_list_items/{item_id}": {
            "get": _operation("retrieveValueListItem", "Retrieve a value list item", "ValueListItem",
                              VALUE_LIST_ITEM_EXAMPLE, path_id="item_id"),
            "delete": _operation("deleteValueListItem", "Remove an item from its value list", "ValueListItemDeleted",
                                 {"id": VALUE_LIST_ITEM_ID, "object": "radar.value_list_item", "deleted": True},
                                 path_id="item_id"),
        },
        "/v1/radar/early_fraud_warnings": {
            "get": _operation("listEarlyFraudWarnings", "List early fraud warnings, newest first",
                              "EarlyFraudWarningList",
                              _list_example("/v1/radar/early_fraud_warnings", EARLY_FRAUD_WARNING_EXAMPLE),
                              query=PAGE + [
                                  {"name": "payment_intent", "in": "query", "schema": ID},
                                  {"name": "charge", "in": "query", "schema": ID,
                                   "description": "A payment id too (Kassa has no charges)."},
                                  *({"name": f"created[{op}]", "in": "query",
                                     "schema": {"type": "integer", "minimum": 0, "maximum": 2**32}}
                                    for op in ("gte", "gt", "lte", "lt"))])},
        "/v1/radar/early_fraud_warnings/{warning_id}": {
            "get": _operation("retrieveEarlyFraudWarning", "Retrieve an early fraud warning", "EarlyFraudWarning",
                              EARLY_FRAUD_WARNING_EXAMPLE, path_id="warning_id")},
        "/v1/openapi.json": {"get": {
            "operationId": "getOpenApiDocument", "summary": "This document (public: no API key needed)",
            "security": [], "parameters": [],
            "responses": {"200": {"description": "OK", "content": _json(_ref("OpenApiDocument"), {
                "openapi": "3.1.0", "info": {"title": "Kassa API", "version": VERSION},
                "paths": {"/v1/balance": {"get": {"operationId": "retrieveBalance", "summary": "..."}}}})}}}},
    }


def build_document() -> dict:
    """The OpenAPI document (a fresh dict each call)."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "Kassa API", "version": VERSION,
                 "description": "Payments, refunds, sellers, events, balances, hosted checkout sessions, "
                                "webhook endpoints, disputes and evidence files, risk reviews, value lists and early fraud warnings, payouts and balance "
                                "transactions. Amounts are integers in minor units (2000 = 20.00 EUR); ids "
                                "are prefixed (`pay_`, `re_`, `sel_`, `evt_`, `cs_`, `we_`, `dsp_`, `file_`, `prv_`, `rsl_`, `rsli_`, `issfr_`, `po_`). POST parameters go "
                                "in the body, as JSON (`Content-Type: application/json`) or form fields "
                                "(`metadata[order]=1001`, `split[0][amount]=500`, `enabled_events[]=...`), never "
                                "in the query string. Lists are newest first and paged with `limit` and "
                                "`starting_after` or `ending_before` (one of the two). Errors are "
                                '`{"error": {"type", "code", "message", "param"}}`.'},
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}, {"basicAuth": []}],
        "paths": _paths(),
        "components": {
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer",
                               "description": "A secret key, sk_test_... or sk_live_..."},
                "basicAuth": {"type": "http", "scheme": "basic", "description": "The secret key as user name."},
            },
            "schemas": {
                "Error": ERROR, "Payment": PAYMENT, "PaymentAttempt": ATTEMPT, "SplitPart": SPLIT_PART,
                "Refund": REFUND, "Seller": SELLER, "BankAccount": BANK_ACCOUNT, "Event": EVENT, "Balance": BALANCE, "Account": ACCOUNT,
                "CheckoutSession": CHECKOUT_SESSION, "WebhookEndpoint": WEBHOOK_ENDPOINT,
                "WebhookEndpointDeleted": WEBHOOK_ENDPOINT_DELETED, "WebhookMissedEvents": WEBHOOK_MISSED_EVENTS,
                "OpenApiDocument": OPENAPI_DOCUMENT, "Dispute": DISPUTE, "File": FILE,
                "PaymentList": _list_of("Payment"), "RefundList": _list_of("Refund"),
                "SellerList": _list_of("Seller"), "EventList": _list_of("Event"),
                "CheckoutSessionList": _list_of("CheckoutSession"), "WebhookEndpointList": _list_of("WebhookEndpoint"),
                "DisputeList": _list_of("Dispute"),
                "Review": REVIEW, "ReviewList": _list_of("Review"), "ValueList": VALUE_LIST,
                "ValueListList": _list_of("ValueList"), "ValueListItem": VALUE_LIST_ITEM,
                "ValueListItemList": _list_of("ValueListItem"), "ValueListDeleted": VALUE_LIST_DELETED,
                "ValueListItemDeleted": VALUE_LIST_ITEM_DELETED,
                "EarlyFraudWarning": EARLY_FRAUD_WARNING, "EarlyFraudWarningList": _list_of("EarlyFraudWarning"),
                "Payout": PAYOUT, "PayoutList": _list_of("Payout"), "BalanceTransaction": BALANCE_TRANSACTION,
                "BalanceTransactionList": _list_of("BalanceTransaction"), "PayoutSchedule": PAYOUT_SCHEDULE,
            },
        },
    }


@bp.get("/openapi.json")
def openapi_document():
    """The API description (public: it holds no secrets and helps integrators and tools)."""
    return jsonify(build_document())
