"""Wiring of the stock service (its logic lands with its own issue)."""

from stockflow.runtime.service import ServiceDefinition

service = ServiceDefinition(name="stock", description="stockflow stock service")
