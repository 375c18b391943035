"""Wiring of the catalog service (its logic lands with its own issue)."""

from stockflow.runtime.service import ServiceDefinition

service = ServiceDefinition(name="catalog", description="stockflow catalog service")
