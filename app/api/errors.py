"""API errors: every failure is JSON {"error": {"type", "code", "message", "param"}} with the right status."""
from flask import jsonify
from werkzeug.exceptions import HTTPException

from app.api import bp

_HTTP_ERROR_CODES = {
    400: ("invalid_request_error", "bad_request"),
    401: ("authentication_error", "unauthenticated"),
    403: ("permission_error", "forbidden"),
    404: ("invalid_request_error", "resource_missing"),
    405: ("invalid_request_error", "method_not_allowed"),
    409: ("idempotency_error", "conflict"),
    413: ("invalid_request_error", "request_too_large"),
    415: ("invalid_request_error", "unsupported_media_type"),
    429: ("rate_limit_error", "rate_limited"),
}


class ApiError(Exception):
    """An error answered to an API client; raising it changes nothing (the view's transaction rolls back)."""

    def __init__(self, status: int, type_: str, code: str, message: str, param: str | None = None,
                 headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.type = type_
        self.code = code
        self.message = message
        self.param = param
        self.headers = headers or {}

    def to_dict(self) -> dict:
        return {"error": {"type": self.type, "code": self.code, "message": self.message, "param": self.param}}


def invalid_param(param: str, message: str, code: str = "parameter_invalid") -> ApiError:
    """A 400 naming the offending parameter."""
    return ApiError(400, "invalid_request_error", code, message, param)


def error_body(error: HTTPException) -> dict:
    """JSON body for a werkzeug HTTP error (404, 405, 413, ...)."""
    type_, code = _HTTP_ERROR_CODES.get(error.code or 500, ("api_error", "http_error"))
    return {"error": {"type": type_, "code": code, "message": error.description or error.name, "param": None}}


@bp.errorhandler(ApiError)
def handle_api_error(error: ApiError):
    from app.extensions import db

    db.session.rollback()
    response = jsonify(error.to_dict())
    response.status_code = error.status
    for name, value in error.headers.items():
        response.headers[name] = value
    return response
