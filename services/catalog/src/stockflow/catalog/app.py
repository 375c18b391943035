"""Wiring of the catalog service: its API and migrations (it consumes no topic)."""

from __future__ import annotations

from pathlib import Path

from stockflow.catalog import api
from stockflow.runtime.service import ServiceDefinition

service = ServiceDefinition(
    name="catalog",
    description=(
        "Products, variants (one per SKU), prices, bundles and lifecycle; publishes the full "
        "state of every variant on the compacted catalog.products.v1."
    ),
    migrations=Path(__file__).parent / "migrations",
    routers=[api.router],
)
