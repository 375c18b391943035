"""Wiring of the stock service: consumers, API and migrations."""

from __future__ import annotations

from pathlib import Path

from stockflow.runtime.consumer import Consumer
from stockflow.runtime.invariants import watch
from stockflow.runtime.service import ServiceDefinition
from stockflow.stock import api, handlers, invariants
from stockflow.stock.replenishment import api as replenishment_api
from stockflow.stock.usecases.levels_stream import publish_levels_at_start

service = ServiceDefinition(
    name="stock",
    description=(
        "Live stock per location, the movement ledger, reservations that never oversell, "
        "backorders and reorder alerts."
    ),
    migrations=Path(__file__).parent / "migrations",
    consumers=[
        Consumer(
            "stock.commands",
            ["stock.commands.v1"],
            handle_batch=handlers.on_commands,
            event_types=handlers.COMMAND_TYPES,
        ),
        Consumer(
            "stock.receipts",
            ["warehouse.receipts.v1"],
            handle_batch=handlers.on_receipts,
            event_types={"warehouse.goods.received.v1"},
        ),
        Consumer(
            "stock.catalog",
            ["catalog.products.v1"],
            handle_batch=handlers.on_catalog,
            event_types=handlers.CATALOG_TYPES,
        ),
        Consumer(
            "stock.fulfillment",
            ["fulfillment.events.v1"],
            handle_batch=handlers.on_fulfillment_batch,
            event_types=handlers.FULFILLMENT_TYPES,
        ),
    ],
    routers=[*api.routers, replenishment_api.router],
    background=[
        watch(invariants.INVARIANTS, alert=invariants.alert),
        publish_levels_at_start,
    ],
)
