"""Wiring of the order service (its logic lands with its own issue)."""

from stockflow.runtime.service import ServiceDefinition

service = ServiceDefinition(name="order", description="stockflow order service")
