"""Message handlers of the stock service: thin adapters between events, the domain and SQL.

Commands arrive in batches; a batch is one transaction that locks every level it touches once,
in a fixed order, and answers each command in offset order against the running levels.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

import asyncpg

from stockflow.contracts.events import catalog as catalog_events
from stockflow.contracts.events import fulfillment as fulfillment_events
from stockflow.contracts.events import stock as wire
from stockflow.contracts.events.warehouse import WarehouseGoodsReceived
from stockflow.runtime.consumer import Inbound
from stockflow.runtime.logging import get_logger
from stockflow.runtime.outbox import UnitOfWork
from stockflow.stock.domain import (
    Allocated,
    Backorder,
    BundleComponent,
    IncomingStock,
    InsufficientStock,
    Movement,
    MovementKind,
    OrderLine,
    Rejection,
    allocate_backorders,
    allocate_order,
    expected_dates,
)
from stockflow.stock.ledger import LevelBook

log = get_logger(__name__)

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
# The events the command and catalog consumers receive, as their event_types guarantee.
Command = wire.ReserveStock | wire.ReleaseReservation | wire.CommitReservation
CatalogEvent = catalog_events.CatalogVariantUpserted | catalog_events.CatalogVariantRemoved


@dataclass(frozen=True)
class Sku:
    """What stock knows of a SKU from the catalog."""

    sku: str
    tracked: bool
    backorderable: bool
    status: str
    components: tuple[BundleComponent, ...]


async def load_skus(conn: asyncpg.Connection, skus: Iterable[str]) -> dict[str, Sku]:
    rows = await conn.fetch(
        "SELECT sku, tracked, backorderable, status, bundle_components FROM skus "
        "WHERE sku = ANY($1::text[])",
        list(set(skus)),
    )
    return {
        r["sku"]: Sku(
            r["sku"],
            r["tracked"],
            r["backorderable"],
            r["status"],
            tuple(BundleComponent(c["sku"], c["quantity"]) for c in r["bundle_components"]),
        )
        for r in rows
    }


async def location_priority(conn: asyncpg.Connection) -> list[str]:
    return [
        r["code"] for r in await conn.fetch("SELECT code FROM locations ORDER BY priority, code")
    ]


# ----------------------------------------------------------------------------- commands


async def on_commands(uow: UnitOfWork, messages: list[Inbound]) -> None:
    """Reserve, release and commit, in offset order, in one transaction for the batch."""
    conn = uow.conn
    reserve_lines = [
        line for m in messages if isinstance(m.event, wire.ReserveStock) for line in m.event.lines
    ]
    commit_lines = [
        line
        for m in messages
        if isinstance(m.event, wire.CommitReservation)
        for line in m.event.lines
    ]
    skus = await load_skus(
        conn, {line.sku for line in reserve_lines} | {line.sku for line in commit_lines}
    )
    wanted = {line.sku for line in reserve_lines}
    wanted |= {c.sku for s in skus.values() for c in s.components}
    order_ids = [cast(Command, m.event).order_id for m in messages]
    # Levels are always locked first (sku order), then the orders' rows: no lock cycles with
    # receipts, which take a level and then the reservations it allocates to.
    wanted |= {
        r["sku"]
        for r in await conn.fetch(
            "SELECT sku FROM reservations WHERE order_id = ANY($1::text[]) "
            "UNION SELECT sku FROM backorders WHERE order_id = ANY($1::text[]) AND open > 0",
            order_ids,
        )
    }
    wanted |= {
        line.sku
        for m in messages
        if isinstance(m.event, wire.CommitReservation)
        for line in m.event.lines
    }
    book = await LevelBook.load(conn, wanted)
    held = await _held_lines(conn, order_ids)
    answered = {
        r["order_id"]: dict(r)
        for r in await conn.fetch(
            # The reply as text: only a repeated reserve command needs it, decoded then.
            "SELECT order_id, status, reply_type, reply::text AS reply FROM order_reservations "
            "WHERE order_id = ANY($1::text[]) FOR UPDATE",
            order_ids,
        )
    }
    priority = await location_priority(conn)
    known = {sku for sku, _ in book.levels}  # skus stock has levels of, catalog or not
    arrivals = await Arrivals.load(conn, wanted)
    bundles = {s.sku: s.components for s in skus.values() if s.components}
    demand: list[tuple[str, str, str, int, bool]] = []
    new = NewReservations()
    for message in messages:
        cause = uow.with_cause(message.cloud)
        event = message.event
        if isinstance(event, wire.ReserveStock):
            _reserve(
                cause,
                book,
                event,
                message.event_id,
                skus,
                known,
                answered,
                priority,
                held,
                demand,
                new,
                arrivals,
            )
            continue
        await new.write(conn)  # a release or commit below reads the rows reserves wrote
        if isinstance(event, wire.ReleaseReservation):
            await _release(cause, book, event.order_id, message.event_id, answered, held)
        elif isinstance(event, wire.CommitReservation):
            await _commit(
                cause,
                book,
                event.order_id,
                event.shipment_id,
                event.lines,
                message.event_id,
                answered,
                held,
                bundles,
            )
    await new.write(conn)
    await book.flush(uow)
    await _record_demand(conn, demand)


class NewReservations:
    """Rows the reserve commands of a batch add, written with one statement per table."""

    def __init__(self) -> None:
        self.answers: list[tuple[str, str, str, dict]] = []
        self.holds: dict[tuple[str, str, str, str], int] = {}
        self.backorders: list[tuple[str, str, str, str, int, int]] = []

    async def write(self, conn: asyncpg.Connection) -> None:
        if self.answers:
            await conn.execute(
                "INSERT INTO order_reservations (order_id, status, reply_type, reply) "
                "SELECT o, s, t, r::jsonb FROM unnest($1::text[], $2::text[], $3::text[], "
                "$4::text[]) AS u(o, s, t, r)",
                *(list(column) for column in zip(*self.answers, strict=True)),
            )
        if self.holds:
            keys = list(self.holds)
            await conn.execute(
                "INSERT INTO reservations (order_id, line_id, sku, location, quantity) "
                "SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int[]) "
                "ON CONFLICT (order_id, line_id, sku, location) "
                "DO UPDATE SET quantity = reservations.quantity + EXCLUDED.quantity",
                *(list(column) for column in zip(*keys, strict=True)),
                [self.holds[key] for key in keys],
            )
        if self.backorders:
            await conn.execute(
                "INSERT INTO backorders (order_id, line_id, sku, location, quantity, open, "
                "priority) SELECT o, l, s, loc, q, q, p FROM unnest($1::text[], $2::text[], "
                "$3::text[], $4::text[], $5::int[], $6::int[]) AS u(o, l, s, loc, q, p)",
                *(list(column) for column in zip(*self.backorders, strict=True)),
            )
        self.answers.clear()
        self.holds.clear()
        self.backorders.clear()


def _reserve(
    uow,
    book,
    event: wire.ReserveStock,
    event_id,
    skus,
    known,
    answered,
    priority,
    held,
    demand,
    new: NewReservations,
    arrivals: Arrivals,
) -> None:
    if event.order_id in answered:  # a repeated command gets the first answer again
        first = answered[event.order_id]
        model = (
            wire.StockReserved if first["reply_type"] == "reserved" else wire.ReservationRejected
        )
        uow.publish(model.model_validate_json(first["reply"]))
        return
    unknown = [line for line in event.lines if line.sku not in skus and line.sku not in known]
    if unknown:
        reply: wire.ReservationRejected | wire.StockReserved = wire.ReservationRejected(
            order_id=event.order_id,
            reason="unknown_sku",
            lines=[
                wire.ShortLine(sku=line.sku, requested=line.quantity, available=0)
                for line in unknown
            ],
        )
        _answer(uow, answered, event.order_id, "rejected", reply, new)
        return

    def allowed(sku: str) -> bool:
        info = skus.get(sku)
        if info is not None and info.status == "discontinued":
            return False
        if event.backorder_policy is not None:
            return event.backorder_policy == "allow"
        return bool(info and info.backorderable)

    lines = [
        OrderLine(line.line_id, line.sku, line.quantity, allowed(line.sku)) for line in event.lines
    ]
    # Only this order's skus: the batch may hold thousands.
    known_here = [skus[line.sku] for line in lines if line.sku in skus]
    untracked = {s.sku for s in known_here if not s.tracked and not s.components}
    bundles = {s.sku: s.components for s in known_here if s.components}
    result = allocate_order(
        lines,
        book.available(
            {line.sku for line in lines} | {c.sku for parts in bundles.values() for c in parts}
        ),
        location_priority=priority,
        untracked=untracked,
        bundles=bundles,
    )
    today = datetime.now(UTC).date()
    short_skus = set()
    if isinstance(result, Rejection):
        short_skus = {line.sku for line in result.lines}
        discontinued = any(skus.get(s) and skus[s].status == "discontinued" for s in short_skus)
        reply = wire.ReservationRejected(
            order_id=event.order_id,
            reason="discontinued" if discontinued else "insufficient_stock",
            lines=[
                wire.ShortLine(sku=line.sku, requested=line.requested, available=line.available)
                for line in result.lines
            ],
        )
        _answer(uow, answered, event.order_id, "rejected", reply, new)
    else:
        dates = _hold(book, event, event_id, result, priority, held, new, arrivals)
        short_skus = {line.sku for line in result.lines if line.backordered}
        reply = wire.StockReserved(
            order_id=event.order_id,
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
        _answer(uow, answered, event.order_id, "held", reply, new, reply_type="reserved")

    # Demand per location: served units where they were allocated; unserved units (and the
    # lines of a rejected order) where a backorder of the sku waits, as in `_hold`.
    def waits_at(sku: str) -> str:
        return (book.locations_of(sku) or priority or ["DEFAULT"])[0]

    day = str(today)
    if isinstance(result, Rejection):
        for line in event.lines:
            short = line.sku in short_skus
            demand.append((line.sku, waits_at(line.sku), day, line.quantity, short))
    else:
        for served in result.lines:
            for allocation in served.allocations:
                demand.append((served.sku, allocation.location, day, allocation.quantity, False))
            if served.backordered:  # a bundle waits where its first component does
                waiting = waits_at(served.backorders[0][0])
                demand.append((served.sku, waiting, day, served.backordered, True))
            if served.untracked:
                demand.append((served.sku, waits_at(served.sku), day, served.requested, False))


def _hold(
    book: LevelBook, event, event_id, result: Allocated, priority, held, new, arrivals: Arrivals
) -> dict[str, datetime]:
    """Reserve what was allocated, open backorders for the rest; returns the expected date of
    each backordered line that incoming stock covers."""
    rows = []
    dates: dict[str, datetime] = {}
    for line in result.lines:
        line_dates = []
        for hold in line.holds:
            book.move_for_order(
                MovementKind.RESERVATION,
                hold.sku,
                hold.location,
                hold.quantity,
                event.order_id,
                event_id,
            )
            rows.append((event.order_id, line.line_id, hold.sku, hold.location, hold.quantity))
        for sku, units in line.backorders:
            # A backorder waits at the location that ships this sku first.
            location = (book.locations_of(sku) or priority or ["DEFAULT"])[0]
            book.move_for_order(
                MovementKind.BACKORDER_OPENED, sku, location, units, event.order_id, event_id
            )
            new.backorders.append(
                (event.order_id, line.line_id, sku, location, units, event.priority)
            )
            line_dates.append(
                arrivals.queue(
                    Backorder(event.order_id, line.line_id, sku, units, 0, event.priority)
                )
            )
        # A bundle line waits for its latest component; unknown if any date is unknown.
        if line_dates and None not in line_dates:
            dates[line.line_id] = max(d for d in line_dates if d is not None)
    for row in rows:
        new.holds[row[:4]] = new.holds.get(row[:4], 0) + row[4]
    held[event.order_id] = [
        {"line_id": r[1], "sku": r[2], "location": r[3], "quantity": r[4]} for r in rows
    ]
    return dates


class Arrivals:
    """Incoming stock still due and the backorder queues it will serve, per sku: the expected
    date of a backorder is when incoming stock covers the queue up to and including it."""

    def __init__(self, incoming: dict[str, list[IncomingStock]], queues: dict[str, list]):
        self.incoming = incoming
        self.queues = queues
        self._sequence = 2**62  # after every stored backorder's id

    @classmethod
    async def load(cls, conn: asyncpg.Connection, skus: Iterable[str]) -> Arrivals:
        incoming: dict[str, list[IncomingStock]] = defaultdict(list)
        for row in await conn.fetch(
            "SELECT sku, quantity, expected_at FROM incoming WHERE sku = ANY($1::text[]) "
            "AND NOT arrived AND expected_at IS NOT NULL",
            list(skus),
        ):
            incoming[row["sku"]].append(IncomingStock(row["quantity"], row["expected_at"]))
        queues: dict[str, list] = defaultdict(list)
        if incoming:  # no incoming stock, no dates: the queues are not needed
            for row in await conn.fetch(
                "SELECT id, order_id, line_id, sku, open, priority FROM backorders "
                "WHERE sku = ANY($1::text[]) AND open > 0",
                list(incoming),
            ):
                queues[row["sku"]].append(
                    Backorder(
                        row["order_id"],
                        row["line_id"],
                        row["sku"],
                        row["open"],
                        row["id"],
                        row["priority"],
                    )
                )
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
        self.queues[backorder.sku].append(queued)
        return self.dates(backorder.sku)[queued]


def _answer(uow, answered, order_id, status, reply, new, *, reply_type="rejected") -> None:
    uow.publish(reply)
    text = reply.model_dump_json()
    new.answers.append((order_id, status, reply_type, text))
    answered[order_id] = {
        "order_id": order_id,
        "status": status,
        "reply_type": reply_type,
        "reply": text,
    }


async def _held_lines(conn, order_ids: Sequence[str]) -> dict[str, list]:
    rows = await conn.fetch(
        "SELECT order_id, line_id, sku, location, quantity FROM reservations "
        "WHERE order_id = ANY($1::text[]) AND quantity > 0 ORDER BY order_id, line_id, sku, "
        "location FOR UPDATE",
        list(order_ids),
    )
    held: dict[str, list] = defaultdict(list)
    for row in rows:
        held[row["order_id"]].append(dict(row))
    return held


async def _release(uow, book: LevelBook, order_id, event_id, answered, held) -> None:
    status = answered.get(order_id, {}).get("status")
    lines = held.get(order_id, [])
    if status is None or status in ("released", "rejected"):
        outcome = "already_released" if status else "unknown_reservation"
    elif status == "committed" and not lines:
        outcome = "already_committed"
    else:
        outcome = "released"
        for line in lines:
            book.move_for_order(
                MovementKind.RELEASE,
                line["sku"],
                line["location"],
                line["quantity"],
                order_id,
                event_id,
            )
        await uow.conn.execute(
            "UPDATE reservations SET released = released + quantity, quantity = 0 "
            "WHERE order_id = $1 AND quantity > 0",
            order_id,
        )
        await _cancel_backorders(uow, book, order_id, event_id)
        await uow.conn.execute(
            "UPDATE order_reservations SET status = 'released', updated_at = now() "
            "WHERE order_id = $1",
            order_id,
        )
        answered[order_id]["status"] = "released"
        held[order_id] = []
        # Released units serve the backorder queue before anyone new can take them.
        for sku, location in sorted({(line["sku"], line["location"]) for line in lines}):
            await allocate_waiting_backorders(uow, book, sku, location, event_id)
    uow.publish(
        wire.StockReleased(
            order_id=order_id,
            outcome=outcome,
            lines=[
                wire.LocatedLine(
                    line_id=line["line_id"],
                    sku=line["sku"],
                    location=line["location"],
                    quantity=line["quantity"],
                )
                for line in lines
            ]
            if outcome == "released"
            else [],
        )
    )


async def _cancel_backorders(uow, book: LevelBook, order_id, event_id) -> None:
    rows = await uow.conn.fetch(
        """WITH waiting AS (SELECT id, sku, location, open AS n FROM backorders
                            WHERE order_id = $1 AND open > 0 FOR UPDATE),
                closed AS (UPDATE backorders b SET open = 0 FROM waiting WHERE b.id = waiting.id)
           SELECT sku, location, n FROM waiting""",
        order_id,
    )
    for row in rows:  # the batch locked these levels: their skus are in `wanted`
        book.move_for_order(
            MovementKind.BACKORDER_CANCELLED,
            row["sku"],
            row["location"],
            row["n"],
            order_id,
            event_id,
        )


async def _commit(
    uow,
    book: LevelBook,
    order_id,
    shipment_id,
    lines,
    event_id,
    answered,
    held,
    components: dict[str, tuple[BundleComponent, ...]] | None = None,
) -> None:
    status = answered.get(order_id, {}).get("status")
    already = await uow.conn.fetchval(
        "SELECT 1 FROM movements WHERE kind = 'shipment' AND order_id = $1 "
        "AND reference_type = 'shipment' AND reference_id = $2 LIMIT 1",
        order_id,
        shipment_id,
    )
    committed: list = []
    if already:
        outcome = "already_committed"
    elif status is None or status == "rejected":
        outcome = "unknown_reservation"
    elif status == "released":
        outcome = "already_released"
    else:
        outcome = "committed"
        pool = held.get(order_id, [])
        for line in lines:
            # A bundle ships as itself but was held as its components.
            parts = (components or {}).get(line.sku) or (BundleComponent(line.sku, 1),)
            for part in parts:
                remaining = line.quantity * part.quantity
                for hold in pool:
                    if remaining == 0:
                        break
                    if (hold["sku"], hold["location"]) != (part.sku, line.location) or hold[
                        "quantity"
                    ] == 0:
                        continue
                    take = min(hold["quantity"], remaining)
                    hold["quantity"] -= take
                    remaining -= take
                    book.move(
                        Movement(
                            MovementKind.SHIPMENT,
                            part.sku,
                            line.location,
                            take,
                            reference=shipment_id,
                        ),
                        cause_event_id=event_id,
                        order_id=order_id,
                        reference_type="shipment",
                    )
                    await uow.conn.execute(
                        "UPDATE reservations SET quantity = quantity - $5, "
                        "committed = committed + $5 WHERE order_id = $1 AND line_id = $2 "
                        "AND sku = $3 AND location = $4",
                        order_id,
                        hold["line_id"],
                        part.sku,
                        line.location,
                        take,
                    )
                if remaining:
                    log.warning(
                        "shipment commits more than was held",
                        order_id=order_id,
                        sku=part.sku,
                        location=line.location,
                        missing=remaining,
                    )
            committed.append(line)
        if not any(h["quantity"] for h in pool) and not await _open_backorders(uow, order_id):
            await uow.conn.execute(
                "UPDATE order_reservations SET status = 'committed', updated_at = now() "
                "WHERE order_id = $1",
                order_id,
            )
            answered[order_id]["status"] = "committed"
    uow.publish(
        wire.StockCommitted(
            order_id=order_id,
            shipment_id=shipment_id,
            outcome=outcome,
            lines=[
                wire.LocatedLine(
                    line_id=line.line_id,
                    sku=line.sku,
                    location=line.location,
                    quantity=line.quantity,
                )
                for line in committed
            ],
        )
    )


async def _open_backorders(uow, order_id: str) -> bool:
    return bool(
        await uow.conn.fetchval(
            "SELECT 1 FROM backorders WHERE order_id = $1 AND open > 0 LIMIT 1", order_id
        )
    )


async def _record_demand(conn, demand: list[tuple[str, str, str, int, bool]]) -> None:
    """Add (sku, location, day, quantity, stockout) tuples to demand_daily, summed per key."""
    if not demand:
        return
    totals: dict[tuple[str, str, str], list] = defaultdict(lambda: [0, False])
    for sku, location, day, quantity, short in demand:
        totals[(sku, location, day)][0] += quantity
        totals[(sku, location, day)][1] |= short
    keys = sorted(totals)  # one row order for every batch: no deadlocks between instances
    await conn.execute(
        """INSERT INTO demand_daily (sku, location, day, quantity, stockout)
           SELECT * FROM unnest($1::text[], $2::text[], $3::date[], $4::int[], $5::bool[])
           ON CONFLICT (sku, location, day) DO UPDATE SET
               quantity = demand_daily.quantity + EXCLUDED.quantity,
               stockout = demand_daily.stockout OR EXCLUDED.stockout""",
        [k[0] for k in keys],
        [k[1] for k in keys],
        [datetime.fromisoformat(k[2]).date() for k in keys],
        [totals[k][0] for k in keys],
        [totals[k][1] for k in keys],
    )


# ----------------------------------------------------------------------------- receipts


async def on_receipts(uow: UnitOfWork, messages: list[Inbound]) -> None:
    """A batch of receipts in one transaction: every level it touches is locked first, once, in
    (sku, location) order, so it never deadlocks with a batch of commands."""
    await LevelBook.load(uow.conn, {cast(WarehouseGoodsReceived, m.event).sku for m in messages})
    for message in messages:
        await on_receipt(uow.with_cause(message.cloud), message)


async def on_receipt(uow: UnitOfWork, message: Inbound) -> None:
    """Goods in: waiting backorders are served first, the rest becomes available."""
    event = cast(WarehouseGoodsReceived, message.event)
    await uow.conn.execute(
        "INSERT INTO locations (code, name) VALUES ($1, $1) ON CONFLICT DO NOTHING", event.location
    )
    book = await LevelBook.load(uow.conn, [event.sku])
    book.move(
        Movement(
            MovementKind.RECEIPT,
            event.sku,
            event.location,
            event.quantity,
            reference=event.receipt_id,
        ),
        cause_event_id=message.event_id,
        reference_type="receipt",
        unit_cost=event.unit_cost,
        currency=event.currency,
    )
    await close_announced_receipt(uow.conn, event.receipt_id)
    await allocate_waiting_backorders(uow, book, event.sku, event.location, message.event_id)
    await book.flush(uow)


async def close_announced_receipt(conn: asyncpg.Connection, receipt_id: str) -> None:
    """The announced receipt (POST /incoming) has arrived: it no longer dates backorders."""
    await conn.execute(
        "UPDATE incoming SET arrived = true WHERE reference = $1", f"receipt:{receipt_id}"
    )


async def allocate_waiting_backorders(
    uow: UnitOfWork, book: LevelBook, sku: str, location: str, event_id: str
) -> None:
    rows = await uow.conn.fetch(
        "SELECT id, order_id, line_id, sku, location, open, priority FROM backorders "
        "WHERE sku = $1 AND open > 0 ORDER BY priority DESC, id FOR UPDATE",
        sku,
    )
    if not rows:
        return
    by_id = {row["id"]: row for row in rows}
    queue = [
        Backorder(r["order_id"], r["line_id"], r["sku"], r["open"], r["id"], r["priority"])
        for r in rows
    ]
    fills, _ = allocate_backorders(queue, book.level(sku, location).available)
    if not fills:
        return
    filled = [(by_id[fill.backorder.sequence], fill) for fill in fills]
    for row, fill in filled:
        if row["location"] != location:  # it waited elsewhere: it leaves that queue
            book.move_for_order(
                MovementKind.BACKORDER_CANCELLED,
                sku,
                row["location"],
                fill.quantity,
                row["order_id"],
                event_id,
            )
            book.move_for_order(
                MovementKind.RESERVATION, sku, location, fill.quantity, row["order_id"], event_id
            )
        else:
            book.move_for_order(
                MovementKind.BACKORDER_ALLOCATED,
                sku,
                location,
                fill.quantity,
                row["order_id"],
                event_id,
            )
        uow.publish(
            wire.BackorderAllocated(
                order_id=row["order_id"],
                line_id=row["line_id"],
                sku=sku,
                location=location,
                quantity=fill.quantity,
                remaining_backordered=fill.remaining,
            )
        )
    ids = [row["id"] for row, _ in filled]
    quantities = [fill.quantity for _, fill in filled]
    # One statement each for every fill (a receipt may serve hundreds of waiting lines);
    # (order, line, sku) is unique among backorders, so no reservation key repeats here.
    await uow.conn.execute(
        "UPDATE backorders b SET open = b.open - u.q "
        "FROM unnest($1::bigint[], $2::int[]) AS u(id, q) WHERE b.id = u.id",
        ids,
        quantities,
    )
    await uow.conn.execute(
        "INSERT INTO reservations (order_id, line_id, sku, location, quantity) "
        "SELECT o, l, $3, $4, q FROM unnest($1::text[], $2::text[], $5::int[]) AS u(o, l, q) "
        "ON CONFLICT (order_id, line_id, sku, location) "
        "DO UPDATE SET quantity = reservations.quantity + EXCLUDED.quantity",
        [row["order_id"] for row, _ in filled],
        [row["line_id"] for row, _ in filled],
        sku,
        location,
        quantities,
    )


# ----------------------------------------------------------------------------- catalog


async def on_catalog(uow: UnitOfWork, messages: list[Inbound]) -> None:
    """Keep the projection: last version per sku wins; removed variants are dropped."""
    for message in messages:
        event = cast(CatalogEvent, message.event)
        if isinstance(event, catalog_events.CatalogVariantRemoved):
            await uow.conn.execute(
                "UPDATE skus SET status = 'discontinued', catalog_version = $2 "
                "WHERE sku = $1 AND catalog_version < $2",
                event.sku,
                event.version,
            )
            continue
        await uow.conn.execute(
            """INSERT INTO skus (sku, tracked, backorderable, status, bundle_components,
                                 catalog_version, updated_at)
               VALUES ($1, $2, $3, $4, $5, $6, now())
               ON CONFLICT (sku) DO UPDATE SET tracked = EXCLUDED.tracked,
                   backorderable = EXCLUDED.backorderable, status = EXCLUDED.status,
                   bundle_components = EXCLUDED.bundle_components,
                   catalog_version = EXCLUDED.catalog_version, updated_at = now()
               WHERE skus.catalog_version < EXCLUDED.catalog_version""",
            event.sku,
            event.tracked and not event.bundle_components,
            event.backorderable,
            event.status,
            [{"sku": c.sku, "quantity": c.quantity} for c in event.bundle_components],
            event.version,
        )


# ----------------------------------------------------------------------------- fulfillment


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
    known = await load_skus(uow.conn, skus)
    skus |= {c.sku for s in known.values() for c in s.components}
    await LevelBook.load(uow.conn, skus)
    for message in messages:
        await on_fulfillment(uow.with_cause(message.cloud), message)


async def on_fulfillment(uow: UnitOfWork, message: Inbound) -> None:
    """Shipped commits the reservation; returns restock; short picks raise an alert."""
    event = message.event
    if isinstance(event, fulfillment_events.ShipmentShipped):
        skus = await load_skus(uow.conn, {line.sku for line in event.lines})
        components = {s.sku: s.components for s in skus.values() if s.components}
        book = await LevelBook.load(
            uow.conn,
            {line.sku for line in event.lines}
            | {c.sku for parts in components.values() for c in parts},
        )
        answered = {
            r["order_id"]: dict(r)
            for r in await uow.conn.fetch(
                "SELECT order_id, status FROM order_reservations WHERE order_id = $1 FOR UPDATE",
                event.order_id,
            )
        }
        held = await _held_lines(uow.conn, [event.order_id])
        lines = [
            wire.LocatedLine(
                line_id=line.line_id, sku=line.sku, location=event.location, quantity=line.quantity
            )
            for line in event.lines
        ]
        await _commit(
            uow,
            book,
            event.order_id,
            event.shipment_id,
            lines,
            message.event_id,
            answered,
            held,
            components,
        )
        await book.flush(uow)
    elif isinstance(event, fulfillment_events.ReturnReceived):
        restock = [line for line in event.lines if line.condition == "restock"]
        if not restock:
            return  # written-off returns never re-enter stock; the return event records them
        book = await LevelBook.load(uow.conn, {line.sku for line in restock})
        for line in restock:
            book.move(
                Movement(
                    MovementKind.RETURN_RESTOCK,
                    line.sku,
                    line.location,
                    line.quantity,
                    reference=event.rma_id,
                ),
                cause_event_id=message.event_id,
                order_id=event.order_id,
                reference_type="rma",
            )
            await allocate_waiting_backorders(uow, book, line.sku, line.location, message.event_id)
        await book.flush(uow)
    elif isinstance(event, fulfillment_events.StockDiscrepancyFound):
        log.warning(
            "short pick reported; a cycle count should follow",
            sku=event.sku,
            location=event.location,
            expected=event.expected,
            found=event.found,
        )
        uow.publish(
            wire.InvariantViolated(
                sku=event.sku,
                location=event.location,
                invariant="bin_count_matches_ledger",
                detail=f"bin {event.bin}: expected {event.expected}, found {event.found}; "
                "run a cycle count",
                detected_at=datetime.now(UTC),
            )
        )


__all__ = [
    "CATALOG_TYPES",
    "COMMAND_TYPES",
    "FULFILLMENT_TYPES",
    "InsufficientStock",
    "on_catalog",
    "on_commands",
    "on_fulfillment",
    "on_receipt",
]
