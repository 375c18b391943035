"""Reserve, release and commit: the stock side of the order saga, a batch of commands at a time.

A batch is one transaction. `CommandBatch.load` locks every level the batch touches once, in
(sku, location) order, then the orders' reservation rows (no lock cycles with receipts, which
take a level and then the reservations it allocates to); the commands are then answered in
offset order against the running levels, and the new rows are written with one set-based
statement per table. Status transitions are decided by `domain.reservations`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from typing import cast

from stockflow.contracts.events import stock as wire
from stockflow.contracts.events._shared import RejectionReason
from stockflow.runtime.consumer import Inbound
from stockflow.runtime.logging import get_logger
from stockflow.runtime.outbox import UnitOfWork
from stockflow.stock import store
from stockflow.stock.domain import (
    Allocated,
    AllocationResult,
    Backorder,
    BundleBackorder,
    BundleComponent,
    CommitOutcome,
    HeldUnits,
    LineAllocation,
    LineToAllocate,
    Movement,
    MovementKind,
    Rejection,
    ReleaseOutcome,
    ReservationStatus,
    allocate_order,
    commit_outcome,
    release_outcome,
    status_after_commit,
    status_after_reserve,
    take_for_shipment,
)
from stockflow.stock.ledger import LevelBook
from stockflow.stock.usecases.backorders import Arrivals, serve_waiting_backorders

log = get_logger(__name__)

NOT_FOUND = "not_found_at_pick"
"""The reason of the adjustment that takes units a picker did not find off on hand."""

Command = wire.ReserveStock | wire.ReleaseReservation | wire.CommitReservation
"""The events the command consumer receives, as its event types guarantee."""


@dataclass(frozen=True)
class ShipmentCommit:
    """Units that left a location for an order: commit them against its reservation."""

    order_id: str
    shipment_id: str
    lines: tuple[wire.LocatedLine, ...]


@dataclass
class PendingRows:
    """Rows the reserve commands of a batch add, written with one statement per table."""

    answers: list[store.StoredAnswer] = field(default_factory=list)
    holds: dict[store.HoldKey, int] = field(default_factory=dict)
    backorders: list[store.NewBackorder] = field(default_factory=list)
    bundle_backorders: list[BundleBackorder] = field(default_factory=list)

    async def write(self, rows: store.ReservationStore) -> None:
        if self.answers:
            await rows.insert_answers(self.answers)
        if self.holds:
            await rows.add_holds(self.holds)
        if self.backorders:
            await rows.insert_backorders(self.backorders)
        if self.bundle_backorders:
            await rows.insert_bundle_backorders(self.bundle_backorders)
        self.answers.clear()
        self.holds.clear()
        self.backorders.clear()
        self.bundle_backorders.clear()


@dataclass
class DemandTally:
    """Units asked for per (sku, location, day), and whether any went unserved."""

    totals: dict[store.DemandKey, tuple[int, bool]] = field(default_factory=dict)
    day: date = field(default_factory=lambda: datetime.now(UTC).date())  # the batch's UTC day

    def add(self, where: tuple[str, str], quantity: int, stockout: bool) -> None:
        key = (*where, self.day)
        before, short = self.totals.get(key, (0, False))
        self.totals[key] = (before + quantity, short or stockout)

    async def write(self, uow: UnitOfWork) -> None:
        if self.totals:
            await store.add_demand(uow.conn, self.totals)


@dataclass
class OrderHolds:
    """What releases and commits work on: the locked levels, and per order its stored answer
    and the units it still holds. `components` gives a bundle's parts (a bundle ships as
    itself but was held as its components)."""

    book: LevelBook
    answers: dict[str, store.StoredAnswer]
    held: dict[str, list[HeldUnits]]
    components: dict[str, tuple[BundleComponent, ...]]
    rows: store.ReservationStore

    def status(self, order_id: str) -> ReservationStatus | None:
        answer = self.answers.get(order_id)
        return ReservationStatus(answer.status) if answer else None

    async def set_status(self, order_id: str, status: ReservationStatus) -> None:
        await self.rows.set_reservation_status(order_id, status)
        self.answers[order_id].status = status

    async def release(self, uow: UnitOfWork, order_id: str, cause: str) -> None:
        """Free what the order holds, close its backorders; freed units serve the queue first."""
        # Holds a shipment of this batch emptied are gone, as a later batch would not load them.
        lines = [line for line in self.held.get(order_id, []) if line.quantity]
        outcome = release_outcome(self.status(order_id), bool(lines))
        if outcome is ReleaseOutcome.RELEASED:
            for line in lines:
                where = (line.sku, line.location)
                self.book.move_for_order(
                    MovementKind.RELEASE, where, line.quantity, order_id, cause
                )
            await self.rows.release_holds(order_id)
            for sku, location, units in await self.rows.close_backorders(order_id):
                # The batch locked these levels: their skus are among the orders' skus.
                self.book.move_for_order(
                    MovementKind.BACKORDER_CANCELLED, (sku, location), units, order_id, cause
                )
            await self.set_status(order_id, ReservationStatus.RELEASED)
            self.held[order_id] = []
            for where in sorted({(line.sku, line.location) for line in lines}):
                await serve_waiting_backorders(uow, self.book, where, cause, self.rows)
        freed = lines if outcome is ReleaseOutcome.RELEASED else []
        uow.publish(wire.StockReleased(order_id=order_id, outcome=outcome, lines=_located(freed)))

    async def release_lines(
        self, uow: UnitOfWork, order_id: str, lines: Sequence[wire.ReleaseLine], cause: str
    ) -> None:
        """Free only these units (at most what each line holds there). Units `not_found` at a
        short pick also leave on hand (an adjustment), so they are never sold again; the
        others serve the backorder queue first. Lines to `backorder` join the queue again, so
        any location with stock serves them now. The reservation stays open for the rest."""
        outcome = release_outcome(self.status(order_id), self._holds_any(order_id, lines))
        freed: list[HeldUnits] = []
        to_serve: set[tuple[str, str]] = set()
        if outcome is ReleaseOutcome.RELEASED:
            for line in lines:
                bundle = self.components.get(line.sku, ())
                for part in bundle or (BundleComponent(line.sku, 1),):
                    released = self._release_part(order_id, (part, line), cause)
                    freed += released
                    if not line.not_found:
                        to_serve |= {(h.sku, h.location) for h in released}
                    if line.backorder:
                        to_serve |= await self._queue_again(order_id, released, cause)
                if line.backorder and bundle:
                    await self._queue_bundle_again(order_id, line, bundle)
            for held in freed:
                await self.rows.release_hold(order_id, held, held.quantity)
            for where in sorted(to_serve):
                await serve_waiting_backorders(uow, self.book, where, cause, self.rows)
        uow.publish(wire.StockReleased(order_id=order_id, outcome=outcome, lines=_located(freed)))

    async def _queue_again(
        self, order_id: str, released: Sequence[HeldUnits], cause: str
    ) -> set[tuple[str, str]]:
        """Queue released units as a backorder of their line (where the line's backorder
        waits, if it has one; else where they were held); return every location of their
        skus, where available units may serve the queue now."""
        for held in released:
            waits_at = await self.rows.queue_again(order_id, held)
            self.book.move_for_order(
                MovementKind.BACKORDER_OPENED, (held.sku, waits_at), held.quantity, order_id, cause
            )
        skus = {held.sku for held in released}
        return {(sku, location) for sku in skus for location in self.book.locations_of(sku)}

    async def _queue_bundle_again(
        self, order_id: str, line: wire.ReleaseLine, bundle: Sequence[BundleComponent]
    ) -> None:
        """A bundle line's units back on backorder wait as whole bundles again: its bundle
        row grows, so the components' fills announce those bundles once they are whole."""
        await self.rows.queue_bundle_again(
            BundleBackorder(
                order_id,
                line.line_id,
                line.sku,
                line.location,
                line.quantity,
                0,
                tuple((part.sku, part.quantity) for part in bundle),
            )
        )

    def _holds_any(self, order_id: str, lines: Sequence[wire.ReleaseLine]) -> bool:
        wanted = {(line.line_id, line.location) for line in lines}
        return any(
            h.quantity and (h.line_id, h.location) in wanted for h in self.held.get(order_id, [])
        )

    def _release_part(
        self,
        order_id: str,
        part_of: tuple[BundleComponent, wire.ReleaseLine],
        cause: str,
    ) -> list[HeldUnits]:
        """Release one line's units of one sku (its own, or a component of its bundle)."""
        part, line = part_of
        take = take_for_shipment(
            self.held.get(order_id, []),
            part.sku,
            line.location,
            line.quantity * part.quantity,
            line_id=line.line_id,
        )
        self.held[order_id] = list(take.holds)
        freed = []
        for hold, quantity in take.taken:
            where = (part.sku, line.location)
            self.book.move_for_order(MovementKind.RELEASE, where, quantity, order_id, cause)
            if line.not_found:
                self.book.move(
                    _not_found(part.sku, line.location, quantity, order_id),
                    cause_event_id=cause,
                    order_id=order_id,
                    reference_type="order",
                )
            freed.append(replace(hold, quantity=quantity))
        return freed

    async def commit(self, uow: UnitOfWork, shipment: ShipmentCommit, cause: str) -> None:
        """Turn the shipped units the order holds into shipped stock (on hand and reserved -)."""
        committed = await self.rows.shipment_committed(shipment.order_id, shipment.shipment_id)
        outcome = commit_outcome(self.status(shipment.order_id), committed)
        if outcome is CommitOutcome.COMMITTED:
            for line in shipment.lines:
                parts = self.components.get(line.sku) or (BundleComponent(line.sku, 1),)
                for part in parts:
                    await self._ship_part(shipment, (part, line), cause)
            order_id = shipment.order_id
            holds_units = any(h.quantity for h in self.held.get(order_id, []))
            waits = not holds_units and await self.rows.has_open_backorders(order_id)
            if status_after_commit(holds_units, waits) is ReservationStatus.COMMITTED:
                await self.set_status(order_id, ReservationStatus.COMMITTED)
        uow.publish(
            wire.StockCommitted(
                order_id=shipment.order_id,
                shipment_id=shipment.shipment_id,
                outcome=outcome,
                lines=list(shipment.lines) if outcome is CommitOutcome.COMMITTED else [],
            )
        )

    async def _ship_part(
        self,
        shipment: ShipmentCommit,
        part_of: tuple[BundleComponent, wire.LocatedLine],
        cause: str,
    ) -> None:
        """Ship one line's units of one sku (the line's own, or a component of its bundle)."""
        part, line = part_of
        order_id = shipment.order_id
        take = take_for_shipment(
            self.held.get(order_id, []), part.sku, line.location, line.quantity * part.quantity
        )
        self.held[order_id] = list(take.holds)
        for hold, quantity in take.taken:
            self.book.move(
                Movement(
                    MovementKind.SHIPMENT,
                    part.sku,
                    line.location,
                    quantity,
                    reference=shipment.shipment_id,
                    bundle=line.sku if part.sku != line.sku else None,
                ),
                cause_event_id=cause,
                order_id=order_id,
                reference_type="shipment",
            )
            await self.rows.commit_hold(order_id, hold, quantity)
        if take.missing:
            log.warning(
                "shipment commits more than was held",
                order_id=order_id,
                sku=part.sku,
                location=line.location,
                missing=take.missing,
            )


def _not_found(sku: str, location: str, quantity: int, order_id: str) -> Movement:
    """Units a picker did not find leave on hand until a count finds them again."""
    return Movement(
        MovementKind.ADJUSTMENT, sku, location, -quantity, reason=NOT_FOUND, reference=order_id
    )


def _located(lines: Sequence[HeldUnits]) -> list[wire.LocatedLine]:
    return [
        wire.LocatedLine(
            line_id=line.line_id, sku=line.sku, location=line.location, quantity=line.quantity
        )
        for line in lines
    ]


@dataclass
class CommandBatch:
    """Everything one batch of commands reads, locked once, and the rows it will write."""

    holds: OrderHolds
    catalog: dict[str, store.CatalogSku]
    priority: list[str]
    arrivals: Arrivals
    pending: PendingRows = field(default_factory=PendingRows)
    demand: DemandTally = field(default_factory=DemandTally)

    @classmethod
    async def load(cls, uow: UnitOfWork, commands: Sequence[Command]) -> CommandBatch:
        conn = uow.conn
        reserved = {
            line.sku for c in commands if isinstance(c, wire.ReserveStock) for line in c.lines
        }
        shipped = {
            line.sku for c in commands if isinstance(c, wire.CommitReservation) for line in c.lines
        }
        shipped |= {
            line.sku
            for c in commands
            if isinstance(c, wire.ReleaseReservation)
            for line in c.lines or ()
        }
        catalog = await store.load_catalog_skus(conn, reserved | shipped)
        order_ids = [command.order_id for command in commands]
        # Levels are always locked first (sku order), then the orders' rows.
        wanted = reserved | shipped | {c.sku for s in catalog.values() for c in s.components}
        wanted |= await store.skus_of_orders(conn, order_ids)
        book = await LevelBook.load(conn, wanted)
        held = await store.lock_held_lines(conn, order_ids)
        answers = await store.lock_answers(conn, order_ids)
        bundles = {s.sku: s.components for s in catalog.values() if s.components}
        return cls(
            holds=OrderHolds(book, answers, held, bundles, store.ReservationStore(conn)),
            catalog=catalog,
            priority=await store.location_priority(conn),
            arrivals=await Arrivals.load(conn, wanted),
        )

    @property
    def book(self) -> LevelBook:
        return self.holds.book

    async def finish(self, uow: UnitOfWork) -> None:
        await self.pending.write(self.holds.rows)
        await self.book.flush(uow)
        await self.demand.write(uow)

    def reserve(self, uow: UnitOfWork, event: wire.ReserveStock, cause: str) -> None:
        """Hold an order's lines (or backorder them, or reject the order) exactly once."""
        first = self.holds.answers.get(event.order_id)
        if first is not None:  # a repeated command gets the first answer again
            model = (
                wire.StockReserved if first.reply_type == "reserved" else wire.ReservationRejected
            )
            uow.publish(model.model_validate_json(first.reply))
            return
        refused = self._refuse_unsellable(event)
        if refused is not None:
            self._answer(uow, event.order_id, refused, ReservationStatus.REJECTED)
            return
        result = self._allocate(event)
        reply: wire.StockReserved | wire.ReservationRejected
        if isinstance(result, Rejection):
            reply = self._rejection(event.order_id, result)
        else:
            reply = _reserved(event.order_id, result, self._hold(event, result, cause))
        self._answer(uow, event.order_id, reply, status_after_reserve(result))
        self._count_demand(event, result)

    def _refuse_unsellable(self, event: wire.ReserveStock) -> wire.ReservationRejected | None:
        """Refuse an order with a sku the catalog never announced (`unknown_sku`: units received
        for it are held, not sold, until the catalog announces it active) or whose variant is
        draft or discontinued (`not_sellable`); None when every line may be sold."""
        refusals: list[tuple[wire.ReserveLine, RejectionReason]] = []
        for line in event.lines:
            info = self.catalog.get(line.sku)
            if info is None:
                refusals.append((line, "unknown_sku"))
            elif not info.sellable:
                refusals.append((line, "not_sellable"))
        if not refusals:
            return None
        reasons = {reason for _, reason in refusals}
        return wire.ReservationRejected(
            order_id=event.order_id,
            reason="unknown_sku" if "unknown_sku" in reasons else "not_sellable",
            lines=[
                wire.ShortLine(
                    sku=line.sku,
                    requested=line.quantity,
                    available=sum(self.book.available([line.sku]).values()),
                    reason=reason,
                )
                for line, reason in refusals
            ],
        )

    def _preorder_date(self, sku: str) -> datetime | None:
        """When a preorder variant becomes available, while that is still ahead."""
        info = self.catalog.get(sku)
        when = info.preorder_available_at if info else None
        return when if when is not None and when > datetime.now(UTC) else None

    def _allocate(self, event: wire.ReserveStock) -> AllocationResult:
        def allowed(sku: str) -> bool:
            if self._preorder_date(sku) is not None:
                return True  # a preorder is sold as a backorder until its date
            if event.backorder_policy is not None:
                return event.backorder_policy == "allow"
            info = self.catalog.get(sku)
            return bool(info and info.backorderable)

        lines = [
            LineToAllocate(line.line_id, line.sku, line.quantity, allowed(line.sku))
            for line in event.lines
        ]
        # Only this order's skus: the batch may hold thousands.
        known_here = [self.catalog[line.sku] for line in lines if line.sku in self.catalog]
        bundles = {s.sku: s.components for s in known_here if s.components}
        skus = {line.sku for line in lines} | {c.sku for parts in bundles.values() for c in parts}
        return allocate_order(
            lines,
            self.book.available(skus),
            location_priority=self.priority,
            untracked={s.sku for s in known_here if not s.tracked and not s.components},
            bundles=bundles,
        )

    def _rejection(self, order_id: str, result: Rejection) -> wire.ReservationRejected:
        return wire.ReservationRejected(
            order_id=order_id,
            reason="insufficient_stock",
            lines=[
                wire.ShortLine(
                    sku=line.sku,
                    requested=line.requested,
                    available=line.available,
                    reason="insufficient_stock",
                )
                for line in result.lines
            ],
        )

    def _waits_at(self, sku: str) -> str:
        """Where a backorder of `sku` waits: the location that ships this sku first."""
        return (self.book.locations_of(sku) or self.priority or ["DEFAULT"])[0]

    def _hold(self, event: wire.ReserveStock, result: Allocated, cause: str) -> dict[str, datetime]:
        """Reserve what was allocated, open backorders for the rest; returns the expected date
        of each backordered line that incoming stock covers."""
        order_id = event.order_id
        holds: list[HeldUnits] = []
        dates: dict[str, datetime] = {}
        for line in result.lines:
            line_dates: list[datetime | None] = []
            for hold in line.holds:
                where = (hold.sku, hold.location)
                self.book.move_for_order(
                    MovementKind.RESERVATION, where, hold.quantity, order_id, cause
                )
                holds.append(HeldUnits(line.line_id, hold.sku, hold.location, hold.quantity))
            if line.backordered:
                line_dates = self._backorder_line(event, line, cause)
            # A bundle line waits for its latest component; unknown if any date is unknown.
            if line_dates and None not in line_dates:
                dates[line.line_id] = max(d for d in line_dates if d is not None)
        for held in holds:
            key = (order_id, held.line_id, held.sku, held.location)
            self.pending.holds[key] = self.pending.holds.get(key, 0) + held.quantity
        self.holds.held[order_id] = holds
        return dates

    def _backorder_line(
        self, event: wire.ReserveStock, line: LineAllocation, cause: str
    ) -> list[datetime | None]:
        """Queue a line's backordered units (its sku's, or each component's of its bundle) and
        return their expected dates. A bundle is assembled in one place, so its components
        all wait where its first component ships first."""
        location = self._waits_at(line.backorders[0][0])
        if line.components:
            self.pending.bundle_backorders.append(
                BundleBackorder(
                    event.order_id,
                    line.line_id,
                    line.sku,
                    location,
                    line.backordered,
                    0,
                    tuple((c.sku, c.quantity) for c in line.components),
                )
            )
        return [
            self._backorder(
                store.NewBackorder(
                    event.order_id, line.line_id, sku, location, units, event.priority
                ),
                cause,
            )
            for sku, units in line.backorders
        ]

    def _backorder(self, queued: store.NewBackorder, cause: str) -> datetime | None:
        """Queue units of a line's sku where `queued` says; returns their expected date (a
        preorder's date at the earliest)."""
        self.book.move_for_order(
            MovementKind.BACKORDER_OPENED,
            (queued.sku, queued.location),
            queued.quantity,
            queued.order_id,
            cause,
        )
        self.pending.backorders.append(queued)
        expected = self.arrivals.queue(
            Backorder(
                queued.order_id, queued.line_id, queued.sku, queued.quantity, 0, queued.priority
            )
        )
        preorder = self._preorder_date(queued.sku)
        if preorder is None:
            return expected
        return max(expected, preorder) if expected is not None else preorder

    def _answer(
        self,
        uow: UnitOfWork,
        order_id: str,
        reply: wire.StockReserved | wire.ReservationRejected,
        status: ReservationStatus,
    ) -> None:
        """Publish the first answer to an order and keep it for repeats."""
        uow.publish(reply)
        reply_type = "reserved" if status is ReservationStatus.HELD else "rejected"
        answer = store.StoredAnswer(order_id, status, reply_type, reply.model_dump_json())
        self.pending.answers.append(answer)
        self.holds.answers[order_id] = answer

    def _count_demand(self, event: wire.ReserveStock, result: AllocationResult) -> None:
        """Demand per location: served units where they were allocated; unserved units (and
        the lines of a rejected order) where a backorder of the sku waits."""
        if isinstance(result, Rejection):
            short = {line.sku for line in result.lines}
            for asked in event.lines:
                where = (asked.sku, self._waits_at(asked.sku))
                self.demand.add(where, asked.quantity, asked.sku in short)
            return
        for served in result.lines:
            for allocation in served.allocations:
                self.demand.add((served.sku, allocation.location), allocation.quantity, False)
            if served.backordered:  # a bundle waits where its first component does
                where = (served.sku, self._waits_at(served.backorders[0][0]))
                self.demand.add(where, served.backordered, True)
            if served.untracked:
                self.demand.add((served.sku, self._waits_at(served.sku)), served.requested, False)


def _reserved(order_id: str, result: Allocated, dates: dict[str, datetime]) -> wire.StockReserved:
    return wire.StockReserved(
        order_id=order_id,
        complete=result.complete,
        lines=[
            wire.ReservedLine(
                line_id=line.line_id,
                sku=line.sku,
                requested=line.requested,
                # An untracked line (digital goods, services) is served in full.
                reserved=line.requested if line.untracked else line.reserved,
                backordered=line.backordered,
                untracked=line.untracked,
                allocations=[
                    wire.Allocation(location=a.location, quantity=a.quantity)
                    for a in line.allocations
                ],
                expected_date=dates.get(line.line_id),
            )
            for line in result.lines
        ],
    )


async def answer_commands(uow: UnitOfWork, messages: Sequence[Inbound]) -> None:
    """Reserve, release and commit, in offset order, in one transaction for the batch."""
    batch = await CommandBatch.load(uow, [cast(Command, m.event) for m in messages])
    for message in messages:
        caused = uow.with_cause(message.cloud)
        event = cast(Command, message.event)
        if isinstance(event, wire.ReserveStock):
            batch.reserve(caused, event, message.event_id)
            continue
        await batch.pending.write(
            batch.holds.rows
        )  # a release or commit below reads the rows reserves wrote
        if isinstance(event, wire.ReleaseReservation) and event.lines:
            await batch.holds.release_lines(caused, event.order_id, event.lines, message.event_id)
        elif isinstance(event, wire.ReleaseReservation):
            await batch.holds.release(caused, event.order_id, message.event_id)
        else:
            shipment = ShipmentCommit(event.order_id, event.shipment_id, tuple(event.lines))
            await batch.holds.commit(caused, shipment, message.event_id)
    await batch.finish(uow)


async def commit_shipment(uow: UnitOfWork, shipment: ShipmentCommit, cause: str) -> None:
    """A shipment left the warehouse (fulfillment's Shipped): commit what the order held."""
    catalog = await store.load_catalog_skus(uow.conn, {line.sku for line in shipment.lines})
    components = {s.sku: s.components for s in catalog.values() if s.components}
    book = await LevelBook.load(
        uow.conn,
        {line.sku for line in shipment.lines}
        | {c.sku for parts in components.values() for c in parts},
    )
    answers = await store.lock_answers(uow.conn, [shipment.order_id])
    held = await store.lock_held_lines(uow.conn, [shipment.order_id])
    rows = store.ReservationStore(uow.conn)
    await OrderHolds(book, answers, held, components, rows).commit(uow, shipment, cause)
    await book.flush(uow)
