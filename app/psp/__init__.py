"""PSP layer: connectors to payment service providers, routing with failover, circuit breakers."""
