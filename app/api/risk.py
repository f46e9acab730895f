"""/v1/reviews and /v1/radar/value_lists, /v1/radar/value_list_items: Stripe's Reviews and Radar value list APIs
over the risk domain (app/risk).

Reviews differ from Radar's in one way (documented in the API reference): a review holds the capture. The
payment is authorized and stays ``requires_capture`` until the review is approved (``POST .../approve``
captures it) or rejected (voided), instead of being captured and refunded on rejection. A merchant decides
only the reviews it owns; a platform-owned review answers 403 ``review_not_owned`` here, and the merchant's
capture of its payment 409 ``payment_in_review``.

    curl -u sk_test_...: $KASSA/v1/radar/value_lists -d alias=custom_ip_blocklist -d name="Blocked IPs" \\
         -d item_type=ip_address
    curl -u sk_test_...: $KASSA/v1/radar/value_list_items -d value_list=rsl_... -d value=203.0.113.0/24
"""
from flask import g, jsonify, request

from app.api import bp
from app.api.auth import api_view
from app.api.pagination import list_page, list_response, page_args
from app.api.payments import created_range, payments_deps, request_params
from app.extensions import db
from app.risk import lists as value_lists, reviews
from app.risk.models import ITEM_TYPES, Review

ITEMS_SHOWN = 10


def _unix(value):
    return int(value.timestamp()) if value else None


def value_list_object(row) -> dict:
    items = value_lists.list_items(db.session, g.scope, row.id, limit=ITEMS_SHOWN)
    return {
        "id": row.id, "object": "radar.value_list", "alias": row.alias, "name": row.name,
        "item_type": row.item_type, "created": _unix(row.created_at), "created_by": row.created_by,
        "livemode": g.scope.livemode, "metadata": row.metadata_ or {},
        "list_items": {"object": "list", "data": [value_list_item_object(item) for item in items],
                       "has_more": len(items) == ITEMS_SHOWN and value_lists.item_count(db.session, g.scope, row.id)
                       > ITEMS_SHOWN, "url": f"/v1/radar/value_list_items?value_list={row.id}"},
    }


def value_list_item_object(item) -> dict:
    return {"id": item.id, "object": "radar.value_list_item", "value": item.value, "value_list": item.value_list_id,
            "created": _unix(item.created_at), "created_by": item.created_by, "livemode": g.scope.livemode}


def _actor() -> str:
    return f"api_key:{g.api_key.id}" if getattr(g, "api_key", None) is not None else "api"


# -- reviews --------------------------------------------------------------------------------------------

@bp.get("/reviews")
@api_view
def list_reviews():
    """Open reviews (Stripe lists the open ones), newest first; ``open=false`` lists closed ones."""
    p = request_params()
    page = page_args(p)
    is_open = p.boolean("open", default=True)
    window = created_range(p)
    p.done()
    statement = g.scope.select(Review, Review.status == ("open" if is_open else "closed"))
    if "created_gte" in window:
        statement = statement.where(Review.created_at >= window["created_gte"])
    if "created_lte" in window:
        statement = statement.where(Review.created_at <= window["created_lte"])
    rows, has_more = list_page(db.session, statement, Review, **page)
    return list_response("/v1/reviews", rows, has_more, reviews.review_object)


@bp.get("/reviews/<review_id>")
@api_view
def retrieve_review(review_id: str):
    request_params(allowed=())
    body = reviews.review_object(reviews.get_review(db.session, g.scope, review_id))
    db.session.commit()
    return jsonify(body)


@bp.post("/reviews/<review_id>/approve")
@api_view
def approve_review(review_id: str):
    """Approve an open review the merchant owns: the held payment is captured (``capture=false`` leaves it for
    the merchant's own capture). 409 ``review_closed`` once decided; 403 ``review_not_owned`` for the platform's."""
    p = request_params()
    capture = p.boolean("capture", default=True)
    note = p.string("note", max_length=reviews.NOTE_MAX) or "Approved through the API."
    p.done()
    decided = reviews.decide(db.session, g.scope, review_id, "approve", actor=_actor(), note=note,
                             deps=payments_deps(), acting_as="merchant", capture=capture,
                             request_id=g.get("request_id"), ip=request.remote_addr)
    body = reviews.review_object(decided.review)
    db.session.commit()
    return jsonify(body)


# -- value lists ----------------------------------------------------------------------------------------

@bp.get("/radar/value_lists")
@api_view
def list_value_lists():
    p = request_params()
    page = page_args(p)
    alias = p.string("alias", max_length=100)
    contains = p.string("contains", max_length=800)
    p.done()
    rows = value_lists.list_value_lists(db.session, g.scope, alias=alias, contains=contains,
                                        limit=page["limit"] + 1, starting_after=page["starting_after"],
                                        ending_before=page.get("ending_before"))
    has_more = len(rows) > page["limit"]
    rows = rows[:page["limit"]] if not page.get("ending_before") else rows[-page["limit"]:]
    return list_response("/v1/radar/value_lists", rows, has_more, value_list_object)


@bp.post("/radar/value_lists")
@api_view
def create_value_list():
    p = request_params()
    params = {"alias": p.string("alias", required=True, max_length=100),
              "name": p.string("name", required=True, max_length=200),
              "item_type": p.enum("item_type", ITEM_TYPES, default="string"),
              "metadata": p.metadata()}
    p.done()
    row = value_lists.create_value_list(db.session, g.scope, actor=_actor(), **params)
    body = value_list_object(row)
    db.session.commit()
    return jsonify(body)


@bp.get("/radar/value_lists/<value_list_id>")
@api_view
def retrieve_value_list(value_list_id: str):
    request_params(allowed=())
    body = value_list_object(value_lists.get_value_list(db.session, g.scope, value_list_id))
    db.session.commit()
    return jsonify(body)


@bp.post("/radar/value_lists/<value_list_id>")
@api_view
def update_value_list(value_list_id: str):
    p = request_params()
    params = {"alias": p.string("alias", max_length=100), "name": p.string("name", max_length=200),
              "metadata": p.metadata() or None}
    p.done()
    row = value_lists.update_value_list(db.session, g.scope, value_list_id, **params)
    body = value_list_object(row)
    db.session.commit()
    return jsonify(body)


@bp.delete("/radar/value_lists/<value_list_id>")
@api_view
def delete_value_list(value_list_id: str):
    request_params(allowed=())
    deleted = value_lists.delete_value_list(db.session, g.scope, value_list_id)
    db.session.commit()
    return jsonify({"id": deleted, "object": "radar.value_list", "deleted": True})


@bp.get("/radar/value_list_items")
@api_view
def list_value_list_items():
    p = request_params()
    page = page_args(p)
    list_id = p.string("value_list", required=True, max_length=100)
    value = p.string("value", max_length=800)
    p.done()
    rows = value_lists.list_items(db.session, g.scope, list_id, value=value, limit=page["limit"] + 1,
                                  starting_after=page["starting_after"], ending_before=page.get("ending_before"))
    has_more = len(rows) > page["limit"]
    rows = rows[:page["limit"]] if not page.get("ending_before") else rows[-page["limit"]:]
    return list_response(f"/v1/radar/value_list_items?value_list={list_id}", rows, has_more, value_list_item_object)


@bp.post("/radar/value_list_items")
@api_view
def create_value_list_item():
    p = request_params()
    list_id = p.string("value_list", required=True, max_length=100)
    value = p.string("value", required=True, max_length=800)
    p.done()
    item = value_lists.add_item(db.session, g.scope, list_id, value, actor=_actor())
    body = value_list_item_object(item)
    db.session.commit()
    return jsonify(body)


@bp.get("/radar/value_list_items/<item_id>")
@api_view
def retrieve_value_list_item(item_id: str):
    request_params(allowed=())
    body = value_list_item_object(value_lists.get_item(db.session, g.scope, item_id))
    db.session.commit()
    return jsonify(body)


@bp.delete("/radar/value_list_items/<item_id>")
@api_view
def delete_value_list_item(item_id: str):
    request_params(allowed=())
    deleted = value_lists.delete_item(db.session, g.scope, item_id)
    db.session.commit()
    return jsonify({"id": deleted, "object": "radar.value_list_item", "deleted": True})
