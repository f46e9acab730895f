"""The OpenAPI 3.1 document of the payments API, served at /v1/openapi.json.

Hand-written next to the routes it describes (app/api/payments.py, refunds.py, sellers.py, events.py,
balance.py, disputes.py, files.py) and kept in step with them: tests/payments/test_openapi.py runs schemathesis against it and
checks that every route of those modules is documented.
"""
from flask import jsonify

from app.api import bp
from app.disputes import evidence as evidence_rules
from app.disputes.files import CONTENT_TYPES, FILE_MAX_BYTES
from app.disputes.models import FILE_PURPOSES, FILE_TYPES, STATUSES as DISPUTE_STATUSES
from app.money import CURRENCY_EXPONENTS
from app.payments.models import PaymentStatus
from app.payments.service import CANCELLATION_REASONS, MAX_AMOUNT, MAX_SPLIT_SELLERS, REFUND_REASONS

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
    },
}

SELLER = {
    "type": "object", "required": ["id", "object", "livemode", "created", "name", "email", "default", "metadata"],
    "properties": {"id": {"type": "string", "pattern": "^sel_"}, "object": {"const": "seller"},
                   "livemode": {"type": "boolean"}, "created": UNIX, "name": STRING, "email": _nullable(STRING),
                   "default": {"type": "boolean"}, "metadata": {"type": "object", "additionalProperties": STRING}},
}

EVENT = {
    "type": "object", "required": ["id", "object", "type", "livemode", "created", "data", "request"],
    "properties": {"id": {"type": "string", "pattern": "^evt_"}, "object": {"const": "event"}, "type": STRING,
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

BALANCE = {
    "type": "object", "required": ["object", "livemode", "sellers", "platform_fees"],
    "properties": {
        "object": {"const": "balance"}, "livemode": {"type": "boolean"},
        "sellers": {"type": "array", "items": {"type": "object", "required": ["seller", "currency", "amount"],
                                               "properties": {"seller": STRING, "currency": STRING, "amount": INT}}},
        "platform_fees": {"type": "array", "items": {"type": "object", "required": ["currency", "amount"],
                                                     "properties": {"currency": STRING, "amount": INT}}},
    },
}


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
    },
}

CONFIRM = {"type": "object", "additionalProperties": False, "properties": {
    "payment_method": PAYMENT_METHOD,
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
    "400": "Invalid request: a parameter, a state the payment cannot leave this way, or an idempotency key "
           "reused with another request.",
    "401": "No valid API key.",
    "403": "A publishable key where a secret key is needed.",
    "404": "No such object for this merchant and mode.",
    "409": "A request with this Idempotency-Key is still in flight.",
    "413": "Body too large.",
    "415": "Unsupported content type.",
    "429": "Rate limited.",
}


def _errors(*statuses: str) -> dict:
    return {s: {"description": ERROR_STATUSES[s], "content": {"application/json": {"schema": _ref("Error")}}}
            for s in statuses}


def _ok(schema: str, description: str = "OK") -> dict:
    return {"200": {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}}


IDEMPOTENCY = {"name": "Idempotency-Key", "in": "header", "required": False,
               "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": r"^[\x21-\x7e]+$"},
               "description": "Makes a retry safe: the same key and request replay the first response (24 h)."}
PATH_ID = {"in": "path", "required": True, "schema": {"type": "string", "minLength": 1, "maxLength": 100,
                                                      "pattern": r"^[A-Za-z0-9_]+$"}}
PAGE = [
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 10}},
    {"name": "starting_after", "in": "query", "schema": ID, "description": "An id: the page after it (older)."},
    {"name": "ending_before", "in": "query", "schema": ID, "description": "An id: the page before it (newer)."},
]
WRITE_ERRORS = ("400", "401", "403", "404", "409", "413", "415", "429")
READ_ERRORS = ("400", "401", "403", "404", "429")


def _write(summary: str, body: dict, result: str, operation_id: str, path_id: str | None = None) -> dict:
    params = [IDEMPOTENCY] + ([{"name": path_id, **PATH_ID}] if path_id else [])
    return {"post": {
        "operationId": operation_id, "summary": summary, "parameters": params,
        "requestBody": {"required": False, "content": {"application/json": {"schema": body}}},
        "responses": {**_ok(result), **_errors(*WRITE_ERRORS)},
    }}


def _read(summary: str, result: str, operation_id: str, path_id: str | None = None, query=()) -> dict:
    params = ([{"name": path_id, **PATH_ID}] if path_id else []) + list(query)
    return {"get": {"operationId": operation_id, "summary": summary, "parameters": params,
                    "responses": {**_ok(result), **_errors(*READ_ERRORS)}}}


def build_document() -> dict:
    """The OpenAPI document (a fresh dict each call)."""
    payment_filters = PAGE + [
        {"name": "status", "in": "query", "schema": {"enum": [s.value for s in PaymentStatus]}},
        {"name": "customer_email", "in": "query", "schema": {"type": "string", "maxLength": 320}},
        {"name": "seller", "in": "query", "schema": ID},
        *({"name": f"created[{op}]", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": 2**32}}
          for op in ("gte", "gt", "lte", "lt")),
    ]
    paths = {
        "/v1/payments": {
            **_write("Create a payment (and confirm it with confirm=true)", CREATE_PAYMENT, "Payment",
                     "createPayment"),
            **_read("List payments, newest first", "PaymentList", "listPayments", query=payment_filters),
        },
        "/v1/payments/{payment_id}": _read("Retrieve a payment", "Payment", "retrievePayment", "payment_id"),
        "/v1/payments/{payment_id}/confirm": _write(
            "Confirm with a card token; waits briefly for the outcome, else answers `processing`",
            CONFIRM, "Payment", "confirmPayment", "payment_id"),
        "/v1/payments/{payment_id}/capture": _write("Capture in full or partially", CAPTURE, "Payment",
                                                    "capturePayment", "payment_id"),
        "/v1/payments/{payment_id}/cancel": _write("Cancel (voids an authorization)", CANCEL, "Payment",
                                                   "cancelPayment", "payment_id"),
        "/v1/refunds": {
            **_write("Refund a captured payment (partially, per seller or pro rata)", CREATE_REFUND, "Refund",
                     "createRefund"),
            **_read("List refunds", "RefundList", "listRefunds",
                    query=PAGE + [{"name": "payment", "in": "query", "schema": ID}]),
        },
        "/v1/refunds/{refund_id}": _read("Retrieve a refund", "Refund", "retrieveRefund", "refund_id"),
        "/v1/sellers": {
            **_write("Create a seller", CREATE_SELLER, "Seller", "createSeller"),
            **_read("List sellers", "SellerList", "listSellers", query=PAGE),
        },
        "/v1/sellers/{seller_id}": _read("Retrieve a seller", "Seller", "retrieveSeller", "seller_id"),
        "/v1/events": _read("List events", "EventList", "listEvents", query=PAGE + [
            {"name": "type", "in": "query", "schema": {"type": "string", "maxLength": 100}},
            {"name": "object", "in": "query", "schema": ID}]),
        "/v1/events/{event_id}": _read("Retrieve an event", "Event", "retrieveEvent", "event_id"),
        "/v1/balance": _read("Seller balances and platform fees from the ledger", "Balance", "retrieveBalance"),
        "/v1/webhook_endpoints/{endpoint_id}/send_missed_events": {"post": {
            "operationId": "sendMissedWebhookEvents",
            "summary": "Send a re-enabled endpoint the events it missed while disabled (last 30 days)",
            "description": "Schedules each event of the last 30 days that was raised while the endpoint was "
                           "disabled and is of a type it subscribes to, with the event's id as webhook-id. "
                           "Idempotent: a second call schedules nothing new. 400 `webhook_endpoint_disabled` "
                           "while the endpoint is still disabled.",
            "parameters": [{"name": "endpoint_id", **PATH_ID}],
            "responses": {**_ok("WebhookMissedEvents"), **_errors(*(s for s in WRITE_ERRORS if s != "409"))},
        }},
    }
    dispute_filters = PAGE + [
        {"name": "status", "in": "query", "schema": {"enum": list(DISPUTE_STATUSES)}},
        {"name": "payment", "in": "query", "schema": ID},
        *({"name": f"created[{op}]", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": 2**32}}
          for op in ("gte", "gt", "lte", "lt")),
    ]
    paths.update({
        "/v1/disputes": _read("List disputes, newest first", "DisputeList", "listDisputes", query=dispute_filters),
        "/v1/disputes/{dispute_id}": {
            **_read("Retrieve a dispute", "Dispute", "retrieveDispute", "dispute_id"),
            **_write("Save evidence (a draft) and metadata; submit=true submits the evidence", UPDATE_DISPUTE,
                     "Dispute", "updateDispute", "dispute_id"),
        },
        "/v1/disputes/{dispute_id}/close": _write("Accept the dispute (final)", CLOSE_DISPUTE, "Dispute",
                                                  "closeDispute", "dispute_id"),
        "/v1/files": {"post": {
            "operationId": "createFile",
            "summary": f"Upload a dispute evidence file: PDF, PNG or JPEG (by content), at most "
                       f"{FILE_MAX_BYTES // 1024 // 1024} MB",
            "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                "type": "object", "required": ["purpose", "file"], "additionalProperties": False,
                "properties": {"purpose": {"enum": list(FILE_PURPOSES)},
                               "file": {"type": "string", "format": "binary"}}}}}},
            "responses": {**_ok("File"), **_errors("400", "401", "403", "413", "415", "429")},
        }},
        "/v1/files/{file_id}": _read("Retrieve a file's object", "File", "retrieveFile", "file_id"),
        "/v1/files/{file_id}/contents": {"get": {
            "operationId": "downloadFile", "summary": "Download a file (as an attachment only)",
            "parameters": [{"name": "file_id", **PATH_ID}],
            "responses": {"200": {"description": "The file, with Content-Disposition: attachment.",
                                  "content": {mime: {"schema": {"type": "string", "format": "binary"}}
                                              for mime in CONTENT_TYPES.values()}},
                          **_errors(*READ_ERRORS)},
        }},
    })
    return {
        "openapi": "3.1.0",
        "info": {"title": "Kassa payments API", "version": "2026-11-20",
                 "description": "Payments, refunds, sellers, events, balances, disputes and evidence files. "
                                "Amounts are integers in minor units; ids are prefixed (pay_, re_, sel_, evt_, dsp_, "
                                "file_). Errors are "
                                '{"error": {"type", "code", "message", "param"}}.'},
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}, {"basicAuth": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer",
                               "description": "A secret key, sk_test_... or sk_live_..."},
                "basicAuth": {"type": "http", "scheme": "basic", "description": "The secret key as user name."},
            },
            "schemas": {
                "Error": ERROR, "Payment": PAYMENT, "PaymentAttempt": ATTEMPT, "SplitPart": SPLIT_PART,
                "Refund": REFUND, "Seller": SELLER, "Event": EVENT, "Balance": BALANCE,
                "WebhookMissedEvents": WEBHOOK_MISSED_EVENTS, "Dispute": DISPUTE, "File": FILE,
                "DisputeList": _list_of("Dispute"),
                "PaymentList": _list_of("Payment"), "RefundList": _list_of("Refund"),
                "SellerList": _list_of("Seller"), "EventList": _list_of("Event"),
            },
        },
    }


@bp.get("/openapi.json")
def openapi_document():
    """The API description (public: it holds no secrets and helps integrators and tools)."""
    return jsonify(build_document())
