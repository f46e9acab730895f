"""The payments side's view of the PSP layer: authorize through the router, everything else by connector.

Authorization is the one call that may fail over (only among connectors sharing the token's vault,
and only when the first surely did not process it); capture, void, refund and status queries go to
the connector that holds the authorization. The router owns retries with backoff and the circuit
breakers (app/psp/router.py); this module only adapts its interface to what payments needs.
Status queries answer a ``Lookup`` (found, absent, unknown): only "absent" may lead to sending again.
"""
from datetime import timedelta
from typing import Protocol

from app.psp.interfaces import AuthorizeRequest, Lookup, PspResult


class Gateway(Protocol):
    """What payments calls; ``merchant_id``/``livemode`` pick per-merchant credentials and routes, and
    ``credential`` (the one an attempt or refund recorded) pins every follow-up to its account. ``route``
    and ``credential`` name the bulkhead a run will use (app/jobs/dispatcher.py)."""

    def authorize(self, vault: str, request: AuthorizeRequest) -> PspResult: ...

    def capture(self, connector: str, psp_reference: str, amount: int, currency: str, idempotency_key: str,
                **owner) -> PspResult: ...

    def void(self, connector: str, psp_reference: str, idempotency_key: str, **owner) -> PspResult: ...

    def refund(self, connector: str, psp_reference: str, amount: int, currency: str, idempotency_key: str,
               **owner) -> PspResult: ...

    def retrieve(self, connector: str, *, psp_reference: str | None = None,
                 idempotency_key: str | None = None, **owner) -> Lookup: ...

    def retrieve_refund(self, connector: str, psp_refund_reference: str, **owner) -> Lookup: ...

    def find_refund(self, connector: str, psp_reference: str, idempotency_key: str, **owner) -> Lookup: ...

    def idempotency_window(self, connector: str) -> timedelta | None: ...

    def connector_names(self, vault: str) -> list[str]: ...

    def route(self, vault: str, *, merchant_id: str, currency: str, livemode: bool) -> list[str]: ...

    def credential(self, connector: str, merchant_id: str, livemode: bool, *, recorded: str | None = None) -> str: ...


def gateway_for_app(app) -> Gateway:
    """The app's gateway over the PSP router, built once per process."""
    gateway = app.extensions.get("payments_gateway")
    if gateway is None:
        gateway = app.extensions["payments_gateway"] = RouterGateway.from_app(app)
    return gateway


class RouterGateway:
    """Gateway over app.psp.router (failover + breaker) and its connectors."""

    def __init__(self, router):
        self.router = router

    @classmethod
    def from_app(cls, app) -> "RouterGateway":
        from app.psp.router import router_for_app

        return cls(router_for_app(app))

    def authorize(self, vault: str, request: AuthorizeRequest) -> PspResult:
        return self.router.authorize(vault, request)

    def capture(self, connector, psp_reference, amount, currency, idempotency_key, **owner) -> PspResult:
        return self.router.capture(connector, psp_reference, amount, currency, idempotency_key, **owner)

    def void(self, connector, psp_reference, idempotency_key, **owner) -> PspResult:
        return self.router.void(connector, psp_reference, idempotency_key, **owner)

    def refund(self, connector, psp_reference, amount, currency, idempotency_key, **owner) -> PspResult:
        return self.router.refund(connector, psp_reference, amount, currency, idempotency_key, **owner)

    def retrieve(self, connector, *, psp_reference=None, idempotency_key=None, **owner) -> Lookup:
        return self.router.retrieve(connector, psp_reference=psp_reference, idempotency_key=idempotency_key,
                                    **owner)

    def retrieve_refund(self, connector, psp_refund_reference, **owner) -> Lookup:
        return self.router.retrieve_refund(connector, psp_refund_reference, **owner)

    def find_refund(self, connector, psp_reference, idempotency_key, **owner) -> Lookup:
        return self.router.find_refund(connector, psp_reference, idempotency_key, **owner)

    def idempotency_window(self, connector: str) -> timedelta | None:
        return self.router.idempotency_window(connector)

    def connector_names(self, vault: str) -> list[str]:
        return self.router.connector_names(vault)

    def route(self, vault: str, *, merchant_id: str, currency: str, livemode: bool) -> list[str]:
        return self.router.route(vault, merchant_id=merchant_id, currency=currency, livemode=livemode)

    def credential(self, connector: str, merchant_id: str, livemode: bool, *, recorded: str | None = None) -> str:
        return self.router.credential(connector, merchant_id, livemode, recorded=recorded)

    def card_facts(self, vault: str, token: str, *, merchant_id: str, currency: str, livemode: bool) -> dict | None:
        """The card behind a token, from the first connector routed for it that can tell (risk signals);
        None when none can or the vault does not know the token; ``CardFactsUnavailable`` (app.psp.interfaces)
        when the vault could not be asked. A read: no breaker, no failover, the connector's timeouts."""
        for name in self.router.route(vault, merchant_id=merchant_id, currency=currency, livemode=livemode):
            connector = self.router.connector(name, merchant_id=merchant_id, livemode=livemode)
            ask = getattr(connector, "card_facts", None)
            if ask is not None:
                return ask(token)
        return None
