"""/v1/sellers: a marketplace's sub-accounts that receive split funds (every book has a default one)."""
from flask import g, jsonify

from app.api import bp
from app.api.auth import api_view
from app.api.pagination import list_page, list_response, page_args
from app.api.payments import request_params, run_operation
from app.extensions import db
from app.payments.models import Seller
from app.payments.serializers import seller_object
from app.payments.errors import NotFound
from app.payments.service import default_seller, get_seller
from app.payouts.bank_accounts import active_bank_account, bank_account_object


@bp.post("/sellers")
@api_view
def create_seller():
    p = request_params()
    params = {"name": p.string("name", required=True, max_length=200),
              "email": p.email("email"), "metadata": p.metadata()}
    p.done()
    return run_operation("seller.create", params)


@bp.get("/sellers/<seller_id>")
@api_view
def retrieve_seller(seller_id: str):
    request_params(allowed=())
    body = seller_object(get_seller(db.session, g.scope, seller_id))
    db.session.commit()
    return jsonify(body)


@bp.get("/sellers")
@api_view
def list_sellers():
    """Sellers, newest first; the default seller is created on first sight so it is always listed."""
    p = request_params()
    page = page_args(p)
    p.done()
    default_seller(db.session, g.scope)
    rows, has_more = list_page(db.session, g.scope.select(Seller), Seller, **page)
    return list_response("/v1/sellers", rows, has_more, seller_object)


@bp.get("/sellers/<seller_id>/bank_account")
@api_view
def retrieve_seller_bank_account(seller_id: str):
    """The seller's payout bank account, masked (last4). Read-only: bank accounts change only in the dashboard,
    after the person re-authenticates (app/dashboard/sellers_views.py), never with an API key."""
    request_params(allowed=())
    seller = get_seller(db.session, g.scope, seller_id)
    account = active_bank_account(db.session, g.scope, seller.id)
    db.session.rollback()
    if account is None:
        raise NotFound(f"Seller '{seller.id}' has no bank account.", param="seller_id")
    return jsonify(bank_account_object(account))
