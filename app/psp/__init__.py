"""PSP layer: connectors to payment service providers, routing with failover, circuit breakers."""
from app.psp import inbox as _inbox  # noqa: E402,F401  (registers the inbox's callback and dispute kinds)
