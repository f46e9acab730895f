"""Risk's domain errors: the payments service's error family (the API renders them the same way)."""
from app.payments.errors import InvalidRequest, NotFound, PaymentError


class RiskInvalid(InvalidRequest):
    """A parameter is wrong (400); a rule refused by the language carries its position in ``detail``."""

    def __init__(self, message: str, *, detail: dict | None = None, **kwargs):
        super().__init__(message, **kwargs)
        self.detail = detail


class RiskNotFound(NotFound):
    """No such rule, list, item or review in the caller's merchant and mode (404)."""


class ReviewDecided(PaymentError):
    """The review was decided already (a concurrent decision won): 409 ``review_closed``."""

    status = 409
    code = "review_closed"


class PaymentInReview(PaymentError):
    """The merchant's capture of a payment whose platform-owned review is open: 409 ``payment_in_review``."""

    status = 409
    code = "payment_in_review"


class NotReviewOwner(PaymentError):
    """This review belongs to the platform (or to the merchant): 403 ``review_not_owned``."""

    status = 403
    code = "review_not_owned"
