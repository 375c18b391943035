"""Wiring of the fulfillment service (its logic lands with its own issue)."""

from stockflow.runtime.service import ServiceDefinition

service = ServiceDefinition(name="fulfillment", description="stockflow fulfillment service")
