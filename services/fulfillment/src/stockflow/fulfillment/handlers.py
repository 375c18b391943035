"""Message handlers: translate each record into a use case, inside the batch's transaction."""

from __future__ import annotations

from stockflow.contracts.events.catalog import CatalogVariantRemoved, CatalogVariantUpserted
from stockflow.contracts.events.orders import (
    OrderBackorderAllocated,
    OrderCancelled,
    OrderConfirmed,
    OrderLinesCancelRequested,
)
from stockflow.fulfillment import usecases
from stockflow.runtime.consumer import Inbound
from stockflow.runtime.outbox import UnitOfWork

ORDER_EVENTS = {
    OrderConfirmed.event_type,
    OrderCancelled.event_type,
    OrderBackorderAllocated.event_type,
    OrderLinesCancelRequested.event_type,
}
CATALOG_EVENTS = {CatalogVariantUpserted.event_type, CatalogVariantRemoved.event_type}


async def on_order_event(uow: UnitOfWork, msg: Inbound) -> None:
    """Confirmed: plan shipments. Cancelled: cancel what has not left. Backorder: ship the rest.
    Lines cancelled: drop their units from what has not left."""
    event = msg.event
    if isinstance(event, OrderConfirmed):
        await usecases.plan_confirmed_order(uow, event)
    elif isinstance(event, OrderCancelled):
        await usecases.cancel_order(uow, event.order_id, f"order cancelled: {event.reason}")
    elif isinstance(event, OrderBackorderAllocated):
        await usecases.plan_backorder_shipment(uow, event)
    elif isinstance(event, OrderLinesCancelRequested):
        await usecases.drop_cancelled_units(uow, event)


async def on_catalog_batch(uow: UnitOfWork, batch: list[Inbound]) -> None:
    """Variant weights and sizes, a whole batch in one statement."""
    await usecases.learn_variants(
        uow,
        [
            item.event
            for item in batch
            if isinstance(item.event, CatalogVariantUpserted | CatalogVariantRemoved)
        ],
    )
