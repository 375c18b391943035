"""Wiring of the accounting service: three consumer groups, the HTTP API, the migrations."""

from pathlib import Path

from stockflow.accounting import api, invariants
from stockflow.accounting.handlers import (
    FULFILLMENT_EVENTS,
    ORDER_EVENTS,
    on_fulfillment,
    on_movements,
    on_orders,
)
from stockflow.contracts.events import StockMovementRecorded
from stockflow.runtime.consumer import Consumer
from stockflow.runtime.invariants import watch
from stockflow.runtime.service import ServiceDefinition

service = ServiceDefinition(
    name="accounting",
    description=(
        "Double-entry books of stockflow: FIFO and moving-average valuation, COGS, revenue, "
        "returns, period close and reports; every posted entry is published on "
        "accounting.journal.v1."
    ),
    migrations=Path(__file__).parent / "migrations",
    consumers=[
        Consumer(
            "accounting.movements",
            ["stock.movements.v1"],
            handle_batch=on_movements,
            event_types={StockMovementRecorded.event_type},
        ),
        Consumer(
            "accounting.orders",
            ["orders.events.v1"],
            handle_batch=on_orders,
            event_types=ORDER_EVENTS,
        ),
        Consumer(
            "accounting.fulfillment",
            ["fulfillment.events.v1"],
            handle_batch=on_fulfillment,
            event_types=FULFILLMENT_EVENTS,
        ),
    ],
    routers=[api.router],
    background=[watch(invariants.INVARIANTS)],
)
