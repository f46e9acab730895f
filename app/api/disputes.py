"""/v1/disputes: list, retrieve, update (evidence, metadata, ``submit=true``), close (accept).

Writes are idempotent operations of the disputes service (app/disputes/service.py), like payments': a
submission or an acceptance is carried to the PSP by a worker, and the answer waits briefly for it (the
dispute as the PSP's answer left it, else with ``pending_action`` still set).

    curl -u sk_test_...: $KASSA/v1/disputes/dsp_... -d "evidence[uncategorized_text]=Signed for on delivery" \\
         -d "evidence[receipt]=file_..." -d submit=true
"""
from flask import g, jsonify

from app.api import bp
from app.api.auth import api_view
from app.api.pagination import list_page, list_response, page_args
from app.api.payments import created_range, request_params, run_operation
from app.disputes import evidence as evidence_rules
from app.disputes.models import STATUSES, Dispute
from app.disputes.service import dispute_object, disputes_query, get_dispute
from app.extensions import db


@bp.get("/disputes")
@api_view
def list_disputes():
    """Disputes, newest first; ``status``, ``payment`` and ``created[gte|gt|lte|lt]`` narrow them."""
    p = request_params()
    page = page_args(p)
    status = p.enum("status", STATUSES)
    filters = {"statuses": (status,) if status else (), "payment": p.string("payment", max_length=100),
               **created_range(p)}
    p.done()
    rows, has_more = list_page(db.session, disputes_query(g.scope, **filters), Dispute, **page)
    return list_response("/v1/disputes", rows, has_more, dispute_object)


@bp.get("/disputes/<dispute_id>")
@api_view
def retrieve_dispute(dispute_id: str):
    """One dispute of the key's merchant and mode (404 for anyone else's)."""
    request_params(allowed=())
    body = dispute_object(get_dispute(db.session, g.scope, dispute_id))
    db.session.commit()
    return jsonify(body)


@bp.post("/disputes/<dispute_id>")
@api_view
def update_dispute(dispute_id: str):
    """Save evidence as a draft (checked against the limits), set metadata, and with ``submit=true`` submit the
    evidence to the PSP: final, and refused after the deadline."""
    p = request_params()
    evidence = p.object("evidence")
    changes = {}
    if evidence is not None:
        for name, field in evidence_rules.FIELDS.items():
            value = evidence.string(name, max_length=evidence_rules.TEXT_FIELD_MAX, allow_empty=True,
                                    card_number_check=field.card_number_check)
            if value is not None:
                changes[name] = value
        evidence.done()
    params = {"dispute": dispute_id, "evidence": changes, "metadata": p.metadata(),
              "submit": p.boolean("submit", default=False)}
    p.done()
    return run_operation("dispute.update", params)


@bp.post("/disputes/<dispute_id>/close")
@api_view
def close_dispute(dispute_id: str):
    """Accept the dispute (the merchant gives up; an inquiry closes): final; a worker tells the PSP."""
    request_params(allowed=())
    return run_operation("dispute.close", {"dispute": dispute_id})
