"""Backorders: units that become sellable serve the waiting queue first; expected dates."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from stockflow.contracts.events import stock as wire
from stockflow.runtime.outbox import UnitOfWork
from stockflow.stock import store
from stockflow.stock.domain import (
    Backorder,
    BackorderFill,
    IncomingStock,
    MovementKind,
    allocate_backorders,
    expected_dates,
)
from stockflow.stock.ledger import LevelBook


async def serve_waiting_backorders(
    uow: UnitOfWork,
    book: LevelBook,
    where: tuple[str, str],
    cause: str,
    rows: store.ReservationStore,
) -> None:
    """Give the units available at `where` (sku, location) to the sku's backorder queue.

    Each fill is a movement (allocated where it waited, else cancelled there and reserved
    here) and a hold for its order. A plain line's fill is announced at once
    (`stock.backorder.allocated.v1`); a bundle's component waits only where its bundle does,
    and the bundle is announced in whole units once every component is filled.
    """
    sku, location = where
    waiting = [
        w for w in await rows.lock_backorder_queue(sku) if not w.in_bundle or w.location == location
    ]
    if not waiting:
        return
    waited_at = {w.queued.sequence: w.location for w in waiting}
    fills, _ = allocate_backorders([w.queued for w in waiting], book.level(sku, location).available)
    if not fills:
        return
    in_bundle = {w.queued.sequence for w in waiting if w.in_bundle}
    for fill in fills:
        order_id = fill.backorder.order_id
        if waited_at[fill.backorder.sequence] != location:  # it leaves the queue it waited in
            book.move_for_order(
                MovementKind.BACKORDER_CANCELLED,
                (sku, waited_at[fill.backorder.sequence]),
                fill.quantity,
                order_id,
                cause,
            )
            book.move_for_order(MovementKind.RESERVATION, where, fill.quantity, order_id, cause)
        else:
            book.move_for_order(
                MovementKind.BACKORDER_ALLOCATED, where, fill.quantity, order_id, cause
            )
        if fill.backorder.sequence not in in_bundle:
            uow.publish(_allocated(fill, location))
    # One statement each for every fill: a receipt may serve hundreds of waiting lines.
    await rows.fill_backorders(location, fills)
    bundle_lines = [
        (f.backorder.order_id, f.backorder.line_id)
        for f in fills
        if f.backorder.sequence in in_bundle
    ]
    if bundle_lines:
        await _announce_whole_bundles(uow, rows, bundle_lines)


def _allocated(fill: BackorderFill, location: str) -> wire.BackorderAllocated:
    return wire.BackorderAllocated(
        order_id=fill.backorder.order_id,
        line_id=fill.backorder.line_id,
        sku=fill.backorder.sku,
        location=location,
        quantity=fill.quantity,
        remaining_backordered=fill.remaining,
    )


async def _announce_whole_bundles(
    uow: UnitOfWork, rows: store.ReservationStore, lines: list[store.LineKey]
) -> None:
    """Announce the bundle units the fills just made whole. The bundle rows are locked first:
    fills of the line's other components (other skus, other transactions) are then committed
    and counted, and no two transactions announce the same units."""
    bundles = await rows.lock_bundle_backorders(lines)
    filled = await rows.filled_components(lines)
    allocated: dict[store.LineKey, int] = {}
    for bundle in bundles:
        key = (bundle.order_id, bundle.line_id)
        whole = bundle.newly_whole(filled.get(key, {}))
        if not whole:
            continue
        allocated[key] = bundle.allocated + whole
        uow.publish(
            wire.BackorderAllocated(
                order_id=bundle.order_id,
                line_id=bundle.line_id,
                sku=bundle.sku,
                location=bundle.location,
                quantity=whole,
                remaining_backordered=bundle.quantity - allocated[key],
            )
        )
    if allocated:
        await rows.set_bundles_allocated(allocated)


class Arrivals:
    """Incoming stock still due and the backorder queues it will serve, per sku: the expected
    date of a backorder is when incoming stock covers the queue up to and including it."""

    def __init__(
        self, incoming: dict[str, list[IncomingStock]], queues: dict[str, list[Backorder]]
    ) -> None:
        self.incoming = incoming
        self.queues = queues
        self._sequence = 2**62  # after every stored backorder's id

    @classmethod
    async def load(cls, db: store.Db, skus: Iterable[str]) -> Arrivals:
        incoming = await store.due_incoming(db, skus)
        # No incoming stock, no dates: the queues are not needed.
        queues = await store.backorder_queues(db, incoming) if incoming else {}
        return cls(incoming, queues)

    def dates(self, sku: str) -> dict[Backorder, datetime | None]:
        """The expected date of every waiting backorder of `sku`."""
        return expected_dates(self.queues.get(sku, []), self.incoming.get(sku, []))

    def queue(self, backorder: Backorder) -> datetime | None:
        """Put a new backorder at the end of its sku's queue and return its expected date."""
        if backorder.sku not in self.incoming:
            return None
        self._sequence += 1
        queued = Backorder(
            backorder.order_id,
            backorder.line_id,
            backorder.sku,
            backorder.open_quantity,
            self._sequence,
            backorder.priority,
        )
        self.queues.setdefault(backorder.sku, []).append(queued)
        return self.dates(backorder.sku)[queued]


BackorderLine = tuple[str, str, str]  # order_id, line_id, sku


class EtaWatch:
    """The expected dates of the waiting backorders of some skus before a change of their
    incoming stock; `announce_moves` publishes `stock.backorder.eta_changed.v1` for each
    backorder still waiting whose date the change moved.

    `watch` takes a transaction-scoped lock per sku, so two changes of one sku's incoming stock
    compare dates one after the other (callers that lock levels lock them first)."""

    def __init__(self, skus: list[str], dates: dict[BackorderLine, datetime | None]) -> None:
        self.skus = skus
        self.dates = dates

    @classmethod
    async def watch(cls, db: store.Db, skus: Iterable[str]) -> EtaWatch:
        ordered = sorted(set(skus))
        await db.execute(
            "SELECT pg_advisory_xact_lock(hashtext('backorder-eta:' || sku)) "
            "FROM unnest($1::text[]) AS sku ORDER BY sku",
            ordered,
        )
        return cls(ordered, await _dates(db, ordered))

    async def announce_moves(self, uow: UnitOfWork) -> None:
        for (order_id, line_id, sku), date in (await _dates(uow.conn, self.skus)).items():
            before = self.dates.get((order_id, line_id, sku))
            if date != before:
                uow.publish(
                    wire.BackorderEtaChanged(
                        order_id=order_id,
                        line_id=line_id,
                        sku=sku,
                        expected_date=date,
                        previous_expected_date=before,
                    )
                )


async def _dates(db: store.Db, skus: list[str]) -> dict[BackorderLine, datetime | None]:
    """The expected date of every waiting backorder of `skus` (None: no dated stock covers it)."""
    incoming = await store.due_incoming(db, skus)
    dates: dict[BackorderLine, datetime | None] = {}
    for sku, queue in (await store.backorder_queues(db, skus)).items():
        for backorder, date in expected_dates(queue, incoming.get(sku, [])).items():
            dates[(backorder.order_id, backorder.line_id, sku)] = date
    return dates
