"""Dispute evidence: Stripe's fields, grouped as Stripe's dashboard groups them, the limits checked on every
save, and what to send for each reason code. No Flask, no database.

Evidence is a dict of field name -> text, or -> a file id (``file_...``) for the file fields. A save names
the fields it changes; an empty string clears one (Stripe's semantics).

Limits (Stripe's, which Kassa applies to every PSP so that a merchant learns of a problem when saving, not
when the deadline is near):

* every text field at most TEXT_FIELD_MAX characters, all of them together at most TEXT_TOTAL_MAX;
* each file field holds one file of the merchant's (purpose ``dispute_evidence``), so at most
  len(FILE_FIELDS) files; together at most EVIDENCE_FILES_MAX_BYTES and EVIDENCE_PAGES_MAX pages (a PDF
  counts its pages, an image one).
"""
from dataclasses import dataclass

# Stripe: each text field has "a maximum character count of 20,000", and the whole evidence 150,000.
TEXT_FIELD_MAX = 20_000
TEXT_TOTAL_MAX = 150_000
# Card networks take at most about 5 MB and 50 pages of evidence per dispute (Mastercard fewer pages);
# Stripe refuses more, so Kassa does too, for every PSP.
EVIDENCE_FILES_MAX_BYTES = 5 * 1024 * 1024
EVIDENCE_PAGES_MAX = 50


@dataclass(frozen=True)
class Field:
    """One evidence field: its Stripe name, the label and hint people read, and whether it holds a file."""

    name: str
    label: str
    hint: str = ""
    file: bool = False
    # Checked for card numbers like any free text, except numbers of another kind (a tracking number).
    card_number_check: bool = True


@dataclass(frozen=True)
class Group:
    name: str
    title: str
    fields: tuple[Field, ...]


GROUPS: tuple[Group, ...] = (
    Group("customer", "Customer", (
        Field("customer_name", "Customer name"),
        Field("customer_email_address", "Customer email"),
        Field("customer_purchase_ip", "IP address used for the purchase", "e.g. 203.0.113.7"),
        Field("billing_address", "Billing address"),
        Field("access_activity_log", "Access or activity log",
              "Logins, downloads or use of the service by the customer around the time of purchase."),
        Field("customer_signature", "Customer signature", "A signed contract or delivery receipt.", file=True),
        Field("customer_communication", "Customer communication",
              "Emails or chats showing the customer received or used what they paid for.", file=True),
    )),
    Group("product", "Product or service", (
        Field("product_description", "Product or service description", "What was sold, and when it was delivered."),
        Field("receipt", "Receipt", "The receipt or order confirmation sent to the customer.", file=True),
        Field("service_date", "Service date", "When the service was provided, e.g. 2026-03-14."),
        Field("service_documentation", "Service documentation", "Proof the service was provided.", file=True),
    )),
    Group("shipping", "Shipping", (
        Field("shipping_address", "Shipping address"),
        Field("shipping_carrier", "Carrier", "e.g. DHL, UPS, La Poste"),
        Field("shipping_tracking_number", "Tracking number", card_number_check=False),
        Field("shipping_date", "Shipping date", "e.g. 2026-03-14"),
        Field("shipping_documentation", "Shipping documentation",
              "Proof of delivery to the address the customer gave.", file=True),
    )),
    Group("refund", "Refund policy", (
        Field("refund_policy", "Refund policy", "Your refund policy as shown to the customer.", file=True),
        Field("refund_policy_disclosure", "How the refund policy was shown",
              "Where and when the customer saw it before paying."),
        Field("refund_refusal_explanation", "Why the customer is not owed a refund"),
    )),
    Group("cancellation", "Cancellation", (
        Field("cancellation_policy", "Cancellation policy", "As shown to the customer.", file=True),
        Field("cancellation_policy_disclosure", "How the cancellation policy was shown"),
        Field("cancellation_rebuttal", "Why the subscription was not canceled"),
    )),
    Group("duplicate", "Duplicate charge", (
        Field("duplicate_charge_id", "The other payment's id", "The earlier payment this one is said to duplicate.",
              card_number_check=False),
        Field("duplicate_charge_explanation", "Why the two payments are different"),
        Field("duplicate_charge_documentation", "Documentation of the other payment", file=True),
    )),
    Group("other", "Other evidence", (
        Field("uncategorized_text", "Anything else", "Other facts that support your case."),
        Field("uncategorized_file", "Other file", file=True),
    )),
)

FIELDS: dict[str, Field] = {field.name: field for group in GROUPS for field in group.fields}
TEXT_FIELDS = tuple(name for name, field in FIELDS.items() if not field.file)
FILE_FIELDS = tuple(name for name, field in FIELDS.items() if field.file)


@dataclass(frozen=True)
class Guidance:
    """What a reason code means and which groups of evidence answer it, most useful first."""

    summary: str
    advice: str
    groups: tuple[str, ...]


GUIDANCE: dict[str, Guidance] = {
    "fraudulent": Guidance(
        "The cardholder says they did not authorize this payment.",
        "Show that the cardholder made or allowed the purchase: their name, email and IP address, proof of "
        "delivery to their address, and any communication or use of what they bought.",
        ("customer", "shipping", "product")),
    "product_not_received": Guidance(
        "The customer says they did not receive what they paid for.",
        "Show that it was delivered (carrier, tracking number, proof of delivery) or that the service was "
        "provided, and any communication confirming receipt.",
        ("shipping", "product", "customer")),
    "duplicate": Guidance(
        "The customer says they were charged twice for one purchase.",
        "Show that the two payments are for different purchases: the other payment's id, its receipt, and "
        "why they differ. If it really is a duplicate, refund one of them or accept.",
        ("duplicate", "product")),
    "credit_not_processed": Guidance(
        "The customer says a refund or credit they were promised was not processed.",
        "Show your refund policy as the customer saw it and why they are not owed a refund, or that the "
        "refund was already made.",
        ("refund", "customer", "product")),
    "subscription_canceled": Guidance(
        "The customer says they canceled a subscription before this payment.",
        "Show your cancellation policy as the customer saw it, and why the subscription was still active.",
        ("cancellation", "customer", "product")),
    "product_unacceptable": Guidance(
        "The customer says what they received was defective, damaged or not as described.",
        "Show the product's description as sold, proof it matched, and your refund policy.",
        ("product", "refund", "customer")),
    "unrecognized": Guidance(
        "The customer does not recognize this payment on their statement.",
        "Show who the customer is and what they bought: their details, the receipt and any communication.",
        ("customer", "product", "shipping")),
    "general": Guidance(
        "The card issuer gave no specific reason.",
        "Send everything that shows the purchase was genuine and delivered as promised.",
        ("customer", "product", "shipping")),
}
DEFAULT_GUIDANCE = GUIDANCE["general"]


def guidance(reason: str | None) -> Guidance:
    """The guidance for a reason code (the general one for codes without their own)."""
    return GUIDANCE.get(reason or "", DEFAULT_GUIDANCE)


class EvidenceInvalid(ValueError):
    """Evidence a save or a submission cannot take; ``field`` names the field at fault (None: the whole)."""

    def __init__(self, message: str, field: str | None = None, code: str = "evidence_invalid"):
        super().__init__(message)
        self.message = message
        self.field = field
        self.code = code


@dataclass(frozen=True)
class FileFacts:
    """What the limits need to know of an evidence file."""

    id: str
    size: int
    pages: int


def merged(current: dict[str, str], changes: dict[str, str]) -> dict[str, str]:
    """The evidence after a save: changed fields replace the current ones, empty strings remove them."""
    result = dict(current)
    for name, value in changes.items():
        if name not in FIELDS:
            raise EvidenceInvalid(f"{name} is not an evidence field.", name, "parameter_unknown")
        if value == "":
            result.pop(name, None)
        else:
            result[name] = value
    return result


def check(evidence: dict[str, str], files: dict[str, FileFacts]) -> None:
    """EvidenceInvalid unless ``evidence`` is within the limits; ``files``: the merchant's files it names, by id."""
    total = 0
    for name, value in evidence.items():
        field = FIELDS.get(name)
        if field is None:
            raise EvidenceInvalid(f"{name} is not an evidence field.", name, "parameter_unknown")
        if not isinstance(value, str):
            raise EvidenceInvalid(f"{field.label} must be text.", name)
        if field.file:
            if value not in files:
                raise EvidenceInvalid(f"{field.label}: no such dispute evidence file: '{value}'.", name,
                                      "resource_missing")
            continue
        if len(value) > TEXT_FIELD_MAX:
            raise EvidenceInvalid(f"{field.label} is {len(value):,} characters long; the most is "
                                  f"{TEXT_FIELD_MAX:,}.", name, "evidence_too_long")
        total += len(value)
    if total > TEXT_TOTAL_MAX:
        raise EvidenceInvalid(f"The evidence's text is {total:,} characters long in all; the most is "
                              f"{TEXT_TOTAL_MAX:,}.", None, "evidence_too_long")
    named = {value for name, value in evidence.items() if FIELDS[name].file}
    size = sum(files[file_id].size for file_id in named)
    if size > EVIDENCE_FILES_MAX_BYTES:
        raise EvidenceInvalid(f"The evidence's files are {size / 1024 / 1024:.1f} MB together; the most is "
                              f"{EVIDENCE_FILES_MAX_BYTES // 1024 // 1024} MB.", None, "evidence_files_too_large")
    pages = sum(files[file_id].pages for file_id in named)
    if pages > EVIDENCE_PAGES_MAX:
        raise EvidenceInvalid(f"The evidence's files have {pages} pages together; the most is {EVIDENCE_PAGES_MAX}.",
                              None, "evidence_too_many_pages")


def file_ids(evidence: dict[str, str]) -> list[str]:
    """The file ids the evidence names, in field order."""
    return [evidence[name] for name in FILE_FIELDS if evidence.get(name)]
