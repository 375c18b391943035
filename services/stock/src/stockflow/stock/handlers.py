"""Kafka handlers of the stock service: each turns a batch of messages into use-case calls.

Every batch is one transaction (the consumer's unit of work). Batches that move stock lock
every level they touch first, once, in (sku, location) order, so they never deadlock with
each other or with a batch of commands.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import cast

from stockflow.contracts.events import catalog as catalog_events
from stockflow.contracts.events import fulfillment as fulfillment_events
from stockflow.contracts.events import stock as wire
from stockflow.contracts.events.warehouse import WarehouseGoodsReceived
from stockflow.runtime.consumer import Inbound, RecordRefused
from stockflow.runtime.outbox import UnitOfWork
from stockflow.stock.usecases import catalog, reservations, warehouse
from stockflow.stock.usecases.refusals import Conflict

COMMAND_TYPES = {
    wire.ReserveStock.event_type,
    wire.ReleaseReservation.event_type,
    wire.CommitReservation.event_type,
}
FULFILLMENT_TYPES = {
    fulfillment_events.ShipmentShipped.event_type,
    fulfillment_events.ReturnReceived.event_type,
    fulfillment_events.StockDiscrepancyFound.event_type,
}
CATALOG_TYPES = {
    catalog_events.CatalogVariantUpserted.event_type,
    catalog_events.CatalogVariantRemoved.event_type,
}


async def on_commands(uow: UnitOfWork, messages: list[Inbound]) -> None:
    """Reserve, release and commit, in offset order, in one transaction for the batch."""
    await reservations.answer_commands(uow, messages)


async def on_receipts(uow: UnitOfWork, messages: list[Inbound]) -> None:
    """Goods received, in offset order, after locking every level of the batch."""
    await warehouse.lock_levels_of(
        uow, {cast(WarehouseGoodsReceived, m.event).sku for m in messages}
    )
    for message in messages:
        await on_receipt(uow.with_cause(message.cloud), message)


async def on_receipt(uow: UnitOfWork, message: Inbound) -> None:
    event = cast(WarehouseGoodsReceived, message.event)
    receipt = warehouse.GoodsReceipt(
        event.receipt_id,
        event.sku,
        event.location,
        event.quantity,
        event.unit_cost,
        event.currency,
        cause=message.event_id,
    )
    await refusing(warehouse.receive_goods(uow, receipt))


async def refusing(step: Awaitable[object]) -> None:
    """Run a use case; a record it refuses (a business key applied with other values) goes to
    the dead-letter topic with the reason."""
    try:
        await step
    except Conflict as exc:
        raise RecordRefused(str(exc)) from exc


async def on_catalog(uow: UnitOfWork, messages: list[Inbound]) -> None:
    """Keep the projection: last version per sku wins; removed variants are discontinued."""
    for message in messages:
        await catalog.project_catalog_event(uow, cast(catalog.CatalogEvent, message.event))


async def on_fulfillment_batch(uow: UnitOfWork, messages: list[Inbound]) -> None:
    """Fulfillment events in one transaction, levels locked first as in `on_receipts`."""
    skus = {
        line.sku
        for m in messages
        if isinstance(
            m.event, fulfillment_events.ShipmentShipped | fulfillment_events.ReturnReceived
        )
        for line in m.event.lines
    }
    await warehouse.lock_levels_of(uow, skus, bundles_too=True)
    for message in messages:
        await on_fulfillment(uow.with_cause(message.cloud), message)


async def on_fulfillment(uow: UnitOfWork, message: Inbound) -> None:
    """Shipped commits the reservation; returns restock; short picks raise an alert."""
    event = message.event
    if isinstance(event, fulfillment_events.ShipmentShipped):
        lines = tuple(
            wire.LocatedLine(
                line_id=line.line_id, sku=line.sku, location=event.location, quantity=line.quantity
            )
            for line in event.lines
        )
        shipment = reservations.ShipmentCommit(event.order_id, event.shipment_id, lines)
        await reservations.commit_shipment(uow, shipment, message.event_id)
    elif isinstance(event, fulfillment_events.ReturnReceived):
        units = tuple(
            warehouse.ReturnedUnits(
                line.line_id, line.sku, line.location, line.quantity, line.condition
            )
            for line in event.lines
        )
        returned = warehouse.ReturnReceipt(event.rma_id, event.order_id, units, message.event_id)
        await refusing(warehouse.receive_return(uow, returned))
    elif isinstance(event, fulfillment_events.StockDiscrepancyFound):
        pick = warehouse.ShortPick(
            event.sku, event.location, event.bin, event.expected, event.found
        )
        warehouse.report_short_pick(uow, pick)
