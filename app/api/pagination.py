"""List endpoints: ``limit`` / ``starting_after`` / ``ending_before`` in, a Stripe-style list object out.

Every /v1 list is newest first and keyset-paged by id (ids sort by creation, app/ids.py)::

    page = page_args(p)              # before the filters, so a bad limit is the error reported
    ...                              # filters, p.done(), the scoped statement
    rows, has_more = list_page(db.session, statement, Refund, **page)
    return list_response("/v1/refunds", rows, has_more, refund_object)
"""
from typing import Any, Callable

from flask import Response, g, jsonify
from sqlalchemy.orm import Session

from app.api.errors import ApiError, invalid_param
from app.api.params import Params
from app.extensions import db

LIST_LIMIT_DEFAULT = 10
LIST_LIMIT_MAX = 100


def page_args(p: Params, *, ending_before: bool = True) -> dict:
    """``limit`` and ``starting_after``, plus ``ending_before`` unless the endpoint only pages forward.

    400 when both ``starting_after`` and ``ending_before`` are given.
    """
    args = {
        "limit": p.integer("limit", default=LIST_LIMIT_DEFAULT, min_value=1, max_value=LIST_LIMIT_MAX),
        "starting_after": p.string("starting_after", max_length=100),
    }
    if not ending_before:
        return args
    args["ending_before"] = p.string("ending_before", max_length=100)
    if args["starting_after"] and args["ending_before"]:
        raise ApiError(400, "invalid_request_error", "parameter_invalid",
                       "Use either starting_after or ending_before, not both.", "ending_before")
    return args


def require_cursors(session: Session, model, **page) -> None:
    """400 naming ``starting_after`` or ``ending_before`` when it is not the id of one of the key's ``model``
    rows: a mistyped id would otherwise page from wherever it happens to sort, often the whole list."""
    for param in ("starting_after", "ending_before"):
        cursor = page.get(param)
        if cursor and g.scope.get(session, model, cursor) is None:
            raise invalid_param(param, f"{param} must be the id of an object of this list; there is no "
                                       f"{cursor!r}.", "resource_missing")


def list_page(session: Session, statement, model, *, limit: int, starting_after: str | None = None,
              ending_before: str | None = None) -> tuple[list, bool]:
    """Keyset pagination, newest first by id (ULIDs sort by creation): (rows, has_more).

    The cursors must be ids of the key's ``model`` rows (``require_cursors``).
    """
    require_cursors(session, model, starting_after=starting_after, ending_before=ending_before)
    if starting_after:
        statement = statement.where(model.id < starting_after)
    if ending_before:
        rows = session.scalars(statement.where(model.id > ending_before).order_by(model.id.asc())
                               .limit(limit + 1)).all()
        has_more = len(rows) > limit
        return list(reversed(rows[:limit])), has_more
    rows = session.scalars(statement.order_by(model.id.desc()).limit(limit + 1)).all()
    return list(rows[:limit]), len(rows) > limit


def list_response(url: str, rows: list, has_more: bool, serialize: Callable[[Any], dict]) -> Response:
    """The list object of one page (each row through ``serialize``), after committing the request's session."""
    body = {"object": "list", "url": url, "data": [serialize(row) for row in rows], "has_more": has_more}
    db.session.commit()
    return jsonify(body)
