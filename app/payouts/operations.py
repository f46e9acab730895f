"""Idempotent payout operations for the API and the dashboard (app/payments/idempotency.py): a manual payout and a
cancel run at most once per Idempotency-Key, in one transaction each."""
from app.payments import idempotency
from app.payments.idempotency import STARTED, Operation, Phase, PhaseContext, Response
from app.payouts import service
from app.payouts.serializers import payout_object


def _create(ctx: PhaseContext):
    from datetime import date

    p = ctx.params
    result = service.create_payout(ctx.session, ctx.scope, seller_id=p.get("seller"), currency=p["currency"],
                                   amount=p["amount"], hmac_key=ctx.deps.ledger_hmac_key,
                                   today=date.fromisoformat(p["today"]), description=p.get("description"),
                                   created_by=p.get("created_by"))
    return Response(200, payout_object(result.payout))


def _cancel(ctx: PhaseContext):
    payout = service.cancel_payout(ctx.session, ctx.scope, ctx.params["payout"], hmac_key=ctx.deps.ledger_hmac_key)
    return Response(200, payout_object(payout))


CREATE_PAYOUT = idempotency.register(Operation("payout.create", {STARTED: Phase(run=_create)}))
CANCEL_PAYOUT = idempotency.register(Operation("payout.cancel", {STARTED: Phase(run=_cancel)}))
