"""Wiring of the accounting service (its logic lands with its own issue)."""

from stockflow.runtime.service import ServiceDefinition

service = ServiceDefinition(name="accounting", description="stockflow accounting service")
