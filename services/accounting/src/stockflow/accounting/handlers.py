"""Message handlers: each batch opens the books it needs, applies its events, writes them back.

All three run inside the runtime's batch transaction, together with the inbox rows, so the
valuation, the journal entries, the parked postings and the outgoing `accounting.entry.posted.v1`
events commit together or not at all.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime

from stockflow.accounting import store
from stockflow.accounting.domain import AccountingError, Cause, JournalEntry
from stockflow.accounting.domain.books import Books
from stockflow.contracts import InvalidMessage
from stockflow.contracts.events import (
    JournalEntryPosted,
    OrderAccepted,
    OrderCancelled,
    OrderConfirmed,
    ReturnReceived,
    ShipmentShipped,
    StockMovementRecorded,
)
from stockflow.runtime.consumer import Inbound
from stockflow.runtime.outbox import UnitOfWork

VALUED_KINDS = frozenset({"receipt", "shipment", "return_restock", "write_off", "adjustment"})
ORDER_EVENTS = {OrderAccepted.event_type, OrderConfirmed.event_type, OrderCancelled.event_type}
FULFILLMENT_EVENTS = {ShipmentShipped.event_type, ReturnReceived.event_type}


@contextlib.contextmanager
def refused_as_invalid(item: Inbound) -> Iterator[None]:
    """What the books refuse will be refused on every retry: dead-letter it at once.

    The runtime rolls the batch back, applies its records one by one, and sends an
    InvalidMessage straight to accounting.dlq.v1 with the reason, without retrying it.
    """
    try:
        yield
    except AccountingError as exc:
        raise InvalidMessage(f"{item.cloud.type} {item.cloud.id}: {exc}") from exc


def cause_of(item: Inbound) -> Cause:
    return Cause(item.cloud.type, item.cloud.id)


async def on_movements(uow: UnitOfWork, batch: list[Inbound]) -> None:
    """Stock movements: value them per SKU in ledger order and post their cost legs."""
    valued = [
        (i, i.event)
        for i in batch
        if isinstance(i.event, StockMovementRecorded) and i.event.kind in VALUED_KINDS
    ]
    if not valued:
        return
    new = await store.claim_movements(uow.conn, [e.movement_id for _, e in valued])
    fresh = []
    for item, event in valued:  # the first copy of each new movement; a batch may hold two
        if event.movement_id in new:
            new.discard(event.movement_id)
            fresh.append((item, event))
    valued = fresh
    orders = {e.order_id for _, e in valued if e.order_id is not None}
    books = await store.open_books(uow.conn, skus={e.sku for _, e in valued}, order_ids=orders)
    for item, event in valued:
        with refused_as_invalid(item):
            books.apply_movement(cause_of(item), event)
    if books.costed_orders:
        await _settle_parked(uow, books, books.costed_orders)
    await _commit(uow, books)


async def on_orders(uow: UnitOfWork, batch: list[Inbound]) -> None:
    """Order events: learn each line's unit price, post what was waiting for it, and the revenue
    of untracked lines, which the customer has once the order is confirmed (and gives back if
    the order is cancelled)."""
    relevant = [
        (i, i.event)
        for i in batch
        if isinstance(i.event, OrderAccepted | OrderConfirmed | OrderCancelled)
    ]
    if not relevant:
        return
    orders = {event.order_id for _, event in relevant}
    books = await store.open_books(uow.conn, order_ids=orders)
    rows = []
    for item, event in relevant:
        if isinstance(event, OrderCancelled):
            with refused_as_invalid(item):
                at = item.cloud.time or datetime.now(UTC)
                books.take_cancelled(cause_of(item), event.order_id, at)
            continue
        rows += books.learn_prices(event.order_id, event.currency, event.lines)
        if isinstance(event, OrderConfirmed):
            with refused_as_invalid(item):
                books.take_delivered_untracked(cause_of(item), event)
    await store.save_prices(uow.conn, rows)
    await _settle_parked(uow, books, orders)
    await _commit(uow, books)


async def on_fulfillment(uow: UnitOfWork, batch: list[Inbound]) -> None:
    """Shipped: revenue. Returned: refunds, and the cost of units written off on return."""
    relevant = [
        (i, i.event) for i in batch if isinstance(i.event, ShipmentShipped | ReturnReceived)
    ]
    if not relevant:
        return
    books = await store.open_books(uow.conn, order_ids={e.order_id for _, e in relevant})
    for item, event in relevant:
        with refused_as_invalid(item):
            if isinstance(event, ShipmentShipped):
                books.take_shipped(cause_of(item), event)
            else:
                books.take_returned(cause_of(item), event)
    await _commit(uow, books)


async def _settle_parked(uow: UnitOfWork, books: Books, order_ids: set[str]) -> None:
    for parked in await store.load_pending(uow.conn, order_ids):
        if books.settle(parked):
            books.settled.append(parked)


async def _commit(uow: UnitOfWork, books: Books) -> None:
    for entry in await store.save_books(uow.conn, books):
        uow.publish(posted_event(entry))


def posted_event(entry: JournalEntry) -> JournalEntryPosted:
    """The `accounting.entry.posted.v1` form of an entry, for the ERP feed."""
    return JournalEntryPosted.model_validate(entry.to_dict())
