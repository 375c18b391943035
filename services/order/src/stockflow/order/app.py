"""Wiring of the order service: three consumer groups, the timer task, the HTTP API."""

from __future__ import annotations

from pathlib import Path

from stockflow.order import api, invariants
from stockflow.order.handlers import (
    CHECKOUT_EVENTS,
    FULFILLMENT_EVENTS,
    STOCK_EVENTS,
    OrderHandlers,
)
from stockflow.order.settings import OrderSettings
from stockflow.order.timers import TimerTask
from stockflow.runtime.consumer import Consumer
from stockflow.runtime.invariants import watch
from stockflow.runtime.service import ServiceDefinition


def build_service(settings: OrderSettings | None = None) -> ServiceDefinition:
    """The order service with `settings` (default: from STOCKFLOW_ORDER_* variables)."""
    settings = settings or OrderSettings()
    policy = settings.saga_policy()
    handlers = OrderHandlers(policy)
    return ServiceDefinition(
        name="order",
        description=(
            "The reservation saga: takes orders from checkout, reserves stock, follows payment, "
            "shipping, delivery and returns, and publishes every step on orders.events.v1."
        ),
        migrations=Path(__file__).parent / "migrations",
        consumers=[
            Consumer(
                "order.checkout",
                ["checkout.orders.v1"],
                handle_batch=handlers.on_checkout,
                event_types=CHECKOUT_EVENTS,
                on_invalid=handlers.on_invalid_checkout,
            ),
            Consumer(
                "order.stock",
                ["stock.events.v1"],
                handle_batch=handlers.on_stock,
                event_types=STOCK_EVENTS,
            ),
            Consumer(
                "order.fulfillment",
                ["fulfillment.events.v1"],
                handle_batch=handlers.on_fulfillment,
                event_types=FULFILLMENT_EVENTS,
            ),
        ],
        routers=[api.router],
        background=[
            TimerTask(policy, settings).run,
            watch(invariants.invariants(settings.settle_s)),
        ],
    )


service = build_service()
