"""Payout rails: where a payout's money is sent. The sandbox's bank transfers (sandbox_psp/transfers.py) over HTTP;
SEPA credit-transfer files are payouts-banks' (app/payouts/sepa.py). No Flask: takes the config mapping.

Each call has three outcomes (ARCHITECTURE.md): found (the transfer and its status), surely absent (404: never
made), unknown (timeout, connection error, 5xx: ask again later). Sending is idempotent by the payout id, so asking
again after an unknown outcome can never send twice.
"""
from dataclasses import dataclass

import httpx

# A local sandbox call, as PSP calls: connect 1 s, read 5 s (ARCHITECTURE.md, "PSPs").
TIMEOUT = httpx.Timeout(5.0, connect=1.0)


@dataclass(frozen=True)
class Transfer:
    """The rail's answer: ``outcome`` found / absent / unknown; for found, the transfer's status and failure."""

    outcome: str
    status: str | None = None          # in_transit, paid, failed
    failure_code: str | None = None
    reference: str | None = None
    refused: str | None = None         # a definite refusal of the request (4xx other than 404/409)


class SandboxRail:
    """The sandbox's bank transfers."""

    name = "sandbox"

    def __init__(self, config, transport: httpx.BaseTransport | None = None):
        self.base = (config.get("SANDBOX_PSP_URL") or "").rstrip("/")
        self.headers = {"Authorization": f"Bearer {config.get('SANDBOX_PSP_SECRET', '')}"}
        self.transport = transport

    def _call(self, method: str, path: str, body: dict | None = None) -> Transfer:
        try:
            with httpx.Client(timeout=TIMEOUT, transport=self.transport) as client:
                response = client.request(method, f"{self.base}{path}", json=body, headers=self.headers)
        except httpx.HTTPError:
            return Transfer("unknown")
        if response.status_code == 404:
            return Transfer("absent")
        if response.status_code >= 500:
            return Transfer("unknown")
        data = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
        if response.status_code != 200:
            return Transfer("found" if response.status_code == 409 else "absent",
                            refused=(data.get("error") or {}).get("message") or f"HTTP {response.status_code}")
        return Transfer("found", data.get("status"), data.get("failure_code"), data.get("id"))

    def send(self, payout_id: str, amount: int, currency: str, destination) -> Transfer:
        """Make (or find) the transfer of a payout."""
        account = destination.iban or destination.account_number or ""
        return self._call("POST", "/v1/bank_transfers", {"id": payout_id, "amount": amount, "currency": currency,
                                                         "account": account, "holder": destination.holder_name})

    def status(self, payout_id: str) -> Transfer:
        """The transfer of a payout at the rail: found with its status, surely absent, or unknown."""
        return self._call("GET", f"/v1/bank_transfers/{payout_id}")
