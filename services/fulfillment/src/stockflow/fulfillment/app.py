"""Wiring of the fulfillment service: consumers, API, autopilot, migrations."""

from pathlib import Path

from stockflow.fulfillment import api, handlers, invariants
from stockflow.fulfillment.autopilot import autopilot
from stockflow.runtime.consumer import Consumer
from stockflow.runtime.invariants import watch
from stockflow.runtime.service import ServiceDefinition

service = ServiceDefinition(
    name="fulfillment",
    description=(
        "Turns confirmed orders into shipments: pick lists by bin, packages, carrier labels, "
        "tracking and delivery, and returns (RMA)."
    ),
    migrations=Path(__file__).parent / "migrations",
    consumers=[
        Consumer(
            "fulfillment.orders",
            ["orders.events.v1"],
            handlers.on_order_event,
            event_types=handlers.ORDER_EVENTS,
        ),
        Consumer(
            "fulfillment.catalog",
            ["catalog.products.v1"],
            handle_batch=handlers.on_catalog_batch,
            event_types=handlers.CATALOG_EVENTS,
        ),
    ],
    routers=[api.router],
    background=[autopilot, watch(invariants.INVARIANTS)],
)
