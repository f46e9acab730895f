"""Domain errors of the payments service: each knows the API status, type and code it stands for.

The service layer never imports Flask; the API renders these as ``{"error": {...}}`` and the
idempotency layer stores them as a request's response when they happen after work was committed.
"""


class PaymentError(Exception):
    """A refusal the caller can act on (4xx); raising it changes nothing in the caller's transaction."""

    status = 400
    type = "invalid_request_error"
    code = "invalid_request"

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None,
                 status: int | None = None, type_: str | None = None):
        super().__init__(message)
        self.message = message
        self.code = code or self.code
        self.param = param
        self.status = status or self.status
        self.type = type_ or self.type

    def to_dict(self) -> dict:
        """The API's error body."""
        return {"error": {"type": self.type, "code": self.code, "message": self.message, "param": self.param}}


class InvalidRequest(PaymentError):
    """A parameter is wrong (400 parameter_invalid), e.g. a split that does not add up."""

    code = "parameter_invalid"


class NotFound(PaymentError):
    """No such object in the caller's merchant and mode (404)."""

    status = 404
    code = "resource_missing"


class InvalidTransition(PaymentError):
    """The state machine forbids the move (400 payment_unexpected_state)."""

    code = "payment_unexpected_state"


class AmountTooLarge(PaymentError):
    """More than can be captured or refunded (400 amount_too_large)."""

    code = "amount_too_large"


class IdempotencyMismatch(PaymentError):
    """The key was first used with a different request (400 idempotency_error)."""

    type = "idempotency_error"
    code = "idempotency_key_reused"


class IdempotencyInFlight(PaymentError):
    """A request with this key is still running (409); retry later."""

    status = 409
    type = "idempotency_error"
    code = "idempotency_key_in_use"
