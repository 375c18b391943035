"""Every SQL statement of the stock service's transactional core, grouped by table.

Levels and the movement ledger are written only through `stockflow.stock.ledger.LevelBook`
(locked in (sku, location) order, one statement per table at flush); this module holds the rest:
the catalog projection, locations, order reservations and their held lines, backorders,
incoming stock, transfers, daily demand and the read queries of the HTTP API. Batch writes are
set-based (`unnest`), one statement per table whatever the batch size.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, TypeAlias

import asyncpg

from stockflow.stock.domain import (
    Backorder,
    BackorderFill,
    BundleBackorder,
    BundleComponent,
    Fact,
    HeldUnits,
    IncomingStock,
)

Db: TypeAlias = asyncpg.Connection | asyncpg.Pool
"""A connection inside a unit of work, or the pool for a read outside one."""

# ----------------------------------------------------------------------------- catalog skus


@dataclass(frozen=True)
class CatalogSku:
    """What stock knows of a SKU from the catalog."""

    sku: str
    tracked: bool
    backorderable: bool
    status: str
    components: tuple[BundleComponent, ...]
    preorder_available_at: datetime | None = None

    @property
    def sellable(self) -> bool:
        """Draft and discontinued (archived) variants are not sold."""
        return self.status == "active"


async def load_catalog_skus(db: Db, skus: Iterable[str]) -> dict[str, CatalogSku]:
    rows = await db.fetch(
        "SELECT sku, tracked, backorderable, status, bundle_components, preorder_available_at "
        "FROM skus WHERE sku = ANY($1::text[])",
        list(set(skus)),
    )
    return {
        r["sku"]: CatalogSku(
            r["sku"],
            r["tracked"],
            r["backorderable"],
            r["status"],
            tuple(BundleComponent(c["sku"], c["quantity"]) for c in r["bundle_components"]),
            r["preorder_available_at"],
        )
        for r in rows
    }


async def upsert_catalog_sku(conn: asyncpg.Connection, sku: CatalogSku, version: int) -> None:
    """Keep `sku` unless a later catalog version is stored already."""
    await conn.execute(
        """INSERT INTO skus (sku, tracked, backorderable, status, bundle_components,
                             catalog_version, preorder_available_at, updated_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, now())
           ON CONFLICT (sku) DO UPDATE SET tracked = EXCLUDED.tracked,
               backorderable = EXCLUDED.backorderable, status = EXCLUDED.status,
               bundle_components = EXCLUDED.bundle_components,
               catalog_version = EXCLUDED.catalog_version,
               preorder_available_at = EXCLUDED.preorder_available_at, updated_at = now()
           WHERE skus.catalog_version < EXCLUDED.catalog_version""",
        sku.sku,
        sku.tracked,
        sku.backorderable,
        sku.status,
        [{"sku": c.sku, "quantity": c.quantity} for c in sku.components],
        version,
        sku.preorder_available_at,
    )


async def discontinue_catalog_sku(conn: asyncpg.Connection, sku: str, version: int) -> None:
    await conn.execute(
        "UPDATE skus SET status = 'discontinued', catalog_version = $2 "
        "WHERE sku = $1 AND catalog_version < $2",
        sku,
        version,
    )


# ----------------------------------------------------------------------------- locations


async def location_priority(db: Db) -> list[str]:
    """Location codes in shipping order (priority, then code)."""
    return [r["code"] for r in await db.fetch("SELECT code FROM locations ORDER BY priority, code")]


async def ensure_location(conn: asyncpg.Connection, code: str) -> None:
    await conn.execute(
        "INSERT INTO locations (code, name) VALUES ($1, $1) ON CONFLICT DO NOTHING", code
    )


async def upsert_location(conn: asyncpg.Connection, code: str, **spec: Any) -> dict[str, Any]:
    """Create or update a location from `spec` (name, kind, priority, bins)."""
    row = await conn.fetchrow(
        "INSERT INTO locations (code, name, kind, priority, bins) VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name, kind = EXCLUDED.kind,"
        " priority = EXCLUDED.priority, bins = EXCLUDED.bins"
        " RETURNING code, name, kind, priority, bins",
        code,
        spec["name"],
        spec["kind"],
        spec["priority"],
        spec["bins"],
    )
    return dict(row)


async def list_locations(db: Db) -> list[dict[str, Any]]:
    rows = await db.fetch(
        "SELECT code, name, kind, priority, bins FROM locations ORDER BY priority, code"
    )
    return [dict(row) for row in rows]


# ----------------------------------------------------------------------------- levels (reads)


async def levels_of_sku(db: Db, sku: str) -> list[asyncpg.Record]:
    return await db.fetch("SELECT * FROM levels WHERE sku = $1 ORDER BY location", sku)


async def available_by_level(db: Db, skus: Iterable[str]) -> dict[tuple[str, str], int]:
    rows = await db.fetch(
        "SELECT sku, location, available FROM levels WHERE sku = ANY($1::text[])", list(skus)
    )
    return {(r["sku"], r["location"]): r["available"] for r in rows}


async def set_reorder_point(conn: asyncpg.Connection, sku: str, location: str, point: int) -> None:
    await conn.execute(
        "INSERT INTO levels (sku, location, reorder_point) VALUES ($1, $2, $3) "
        "ON CONFLICT (sku, location) DO UPDATE SET reorder_point = EXCLUDED.reorder_point",
        sku,
        location,
        point,
    )


# ----------------------------------------------------------------------------- movements (reads)


async def cause_applied(conn: asyncpg.Connection, cause: str) -> bool:
    """True when some movement was made with `cause` (an HTTP write applied before)."""
    return bool(await conn.fetchval("SELECT 1 FROM movements WHERE cause_event_id = $1", cause))


async def movements_of_cause(conn: asyncpg.Connection, cause: str) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT movement_id, sku, location, kind, quantity, reason, order_id FROM movements "
        "WHERE cause_event_id = $1 ORDER BY id",
        cause,
    )
    return [dict(r) | {"movement_id": str(r["movement_id"])} for r in rows]


@dataclass(frozen=True)
class MovementFilter:
    """A page of the ledger: filters (None: any) and the last `id` seen."""

    sku: str | None = None
    location: str | None = None
    kind: str | None = None
    order_id: str | None = None
    after: int = 0
    limit: int = 100


async def list_movements(db: Db, where: MovementFilter) -> list[dict[str, Any]]:
    rows = await db.fetch(
        """SELECT id, movement_id, sku, location, kind, quantity, reason, reference_type,
                  reference_id, order_id, unit_cost, currency, cause_event_id, occurred_at
           FROM movements WHERE id > $1 AND ($2::text IS NULL OR sku = $2)
             AND ($3::text IS NULL OR location = $3) AND ($4::text IS NULL OR kind = $4)
             AND ($5::text IS NULL OR order_id = $5)
           ORDER BY id LIMIT $6""",
        where.after,
        where.sku,
        where.location,
        where.kind,
        where.order_id,
        where.limit,
    )
    return [
        dict(r)
        | {
            "movement_id": str(r["movement_id"]),
            "unit_cost": None if r["unit_cost"] is None else str(r["unit_cost"]),
        }
        for r in rows
    ]


# ----------------------------------------------------------------------------- order reservations


@dataclass
class StoredAnswer:
    """An order's row of `order_reservations`: its status and the reply first given (as JSON)."""

    order_id: str
    status: str
    reply_type: str
    reply: str


async def lock_answers(
    conn: asyncpg.Connection, order_ids: Sequence[str]
) -> dict[str, StoredAnswer]:
    rows = await conn.fetch(
        # The reply as text: only a repeated reserve command needs it, decoded then.
        "SELECT order_id, status, reply_type, reply::text AS reply FROM order_reservations "
        "WHERE order_id = ANY($1::text[]) FOR UPDATE",
        list(order_ids),
    )
    return {r["order_id"]: StoredAnswer(**dict(r)) for r in rows}


async def release_emptied_reservations(conn: asyncpg.Connection, order_ids: Sequence[str]) -> None:
    """Mark released every held order of `order_ids` whose lines hold nothing any more."""
    await conn.execute(
        "UPDATE order_reservations o SET status = 'released', updated_at = now() "
        "WHERE o.order_id = ANY($1::text[]) AND o.status = 'held' AND NOT EXISTS "
        "(SELECT 1 FROM reservations r WHERE r.order_id = o.order_id AND r.quantity > 0)",
        list(order_ids),
    )


async def reservation_header(db: Db, order_id: str) -> asyncpg.Record | None:
    return await db.fetchrow(
        "SELECT status, reply_type, reply FROM order_reservations WHERE order_id = $1", order_id
    )


# ----------------------------------------------------------------------------- held lines


HoldKey = tuple[str, str, str, str]
"""(order_id, line_id, sku, location) of a `reservations` row."""
LineKey = tuple[str, str]
"""(order_id, line_id) of an order line."""


async def lock_held_lines(
    conn: asyncpg.Connection, order_ids: Sequence[str]
) -> dict[str, list[HeldUnits]]:
    rows = await conn.fetch(
        "SELECT order_id, line_id, sku, location, quantity FROM reservations "
        "WHERE order_id = ANY($1::text[]) AND quantity > 0 ORDER BY order_id, line_id, sku, "
        "location FOR UPDATE",
        list(order_ids),
    )
    held: dict[str, list[HeldUnits]] = {}
    for r in rows:
        held.setdefault(r["order_id"], []).append(
            HeldUnits(r["line_id"], r["sku"], r["location"], r["quantity"])
        )
    return held


async def release_hold_if_unchanged(
    conn: asyncpg.Connection, order_id: str, hold: HeldUnits
) -> bool:
    """Release the row's held units if it still holds `hold.quantity`; False if it changed."""
    return bool(
        await conn.fetchval(
            "UPDATE reservations SET released = released + quantity, quantity = 0 "
            "WHERE order_id = $1 AND line_id = $2 AND sku = $3 AND location = $4 "
            "AND quantity = $5 RETURNING true",
            order_id,
            hold.line_id,
            hold.sku,
            hold.location,
            hold.quantity,
        )
    )


async def open_reservations_total(conn: asyncpg.Connection, sku: str, location: str) -> int:
    held: int = await conn.fetchval(
        "SELECT coalesce(sum(quantity), 0) FROM reservations WHERE sku = $1 AND location = $2",
        sku,
        location,
    )
    return held


async def skus_of_orders(conn: asyncpg.Connection, order_ids: Sequence[str]) -> set[str]:
    """Every sku the orders hold or wait for."""
    rows = await conn.fetch(
        "SELECT sku FROM reservations WHERE order_id = ANY($1::text[]) "
        "UNION SELECT sku FROM backorders WHERE order_id = ANY($1::text[]) AND open > 0",
        list(order_ids),
    )
    return {r["sku"] for r in rows}


async def reservation_lines(db: Db, order_id: str) -> list[dict[str, Any]]:
    rows = await db.fetch(
        "SELECT line_id, sku, location, quantity AS held, committed, released FROM reservations"
        " WHERE order_id = $1 ORDER BY line_id, sku, location",
        order_id,
    )
    return [dict(r) for r in rows]


# ----------------------------------------------------------------------------- backorders


@dataclass(frozen=True)
class NewBackorder:
    order_id: str
    line_id: str
    sku: str
    location: str
    quantity: int
    priority: int


@dataclass(frozen=True)
class WaitingBackorder:
    """An open backorder row: the domain's queue entry and where its units wait."""

    queued: Backorder
    location: str
    in_bundle: bool = False  # a component of a backordered bundle line


async def backorder_queues(db: Db, skus: Iterable[str]) -> dict[str, list[Backorder]]:
    queues: dict[str, list[Backorder]] = {}
    for r in await db.fetch(
        "SELECT id, order_id, line_id, sku, open, priority FROM backorders "
        "WHERE sku = ANY($1::text[]) AND open > 0",
        list(skus),
    ):
        queues.setdefault(r["sku"], []).append(
            Backorder(r["order_id"], r["line_id"], r["sku"], r["open"], r["id"], r["priority"])
        )
    return queues


async def backorders_of_order(db: Db, order_id: str) -> list[dict[str, Any]]:
    rows = await db.fetch(
        "SELECT line_id, sku, location, quantity, open, priority FROM backorders "
        "WHERE order_id = $1 ORDER BY id",
        order_id,
    )
    return [dict(r) for r in rows]


# ----------------------------------------------------------------------------- incoming


async def due_incoming(db: Db, skus: Iterable[str]) -> dict[str, list[IncomingStock]]:
    """Dated incoming stock not yet arrived, per sku."""
    incoming: dict[str, list[IncomingStock]] = {}
    for row in await db.fetch(
        "SELECT sku, quantity, expected_at FROM incoming WHERE sku = ANY($1::text[]) "
        "AND NOT arrived AND expected_at IS NOT NULL",
        list(skus),
    ):
        incoming.setdefault(row["sku"], []).append(
            IncomingStock(row["quantity"], row["expected_at"])
        )
    return incoming


def receipt_reference(receipt_id: str) -> str:
    return f"receipt:{receipt_id}"


def transfer_reference(transfer_id: str) -> str:
    return f"transfer:{transfer_id}"


async def announced_at(db: Db, receipt_id: str) -> tuple[str, str] | None:
    """(sku, location) of the announced receipt `receipt_id` while it is still due."""
    row = await db.fetchrow(
        "SELECT sku, location FROM incoming WHERE reference = $1 AND NOT arrived",
        receipt_reference(receipt_id),
    )
    return (row["sku"], row["location"]) if row else None


async def close_announced_receipt(conn: asyncpg.Connection, receipt_id: str) -> Incoming | None:
    """Mark the announced receipt arrived; returns it if it was still due."""
    row = await conn.fetchrow(
        "UPDATE incoming SET arrived = true WHERE reference = $1 AND NOT arrived "
        "RETURNING sku, location, quantity, expected_at, reference",
        receipt_reference(receipt_id),
    )
    return Incoming(**dict(row)) if row else None


@dataclass(frozen=True)
class Incoming:
    """Units of a sku on their way to a location, named by `reference`."""

    sku: str
    location: str
    quantity: int
    expected_at: datetime | None
    reference: str


async def insert_incoming(conn: asyncpg.Connection, incoming: Incoming) -> bool:
    """Record incoming stock; False if its reference is recorded already."""
    created = await conn.fetchval(
        "INSERT INTO incoming (sku, location, quantity, expected_at, reference) "
        "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (reference) DO NOTHING RETURNING id",
        incoming.sku,
        incoming.location,
        incoming.quantity,
        incoming.expected_at,
        incoming.reference,
    )
    return created is not None


async def reduce_incoming(conn: asyncpg.Connection, reference: str, arrived: int) -> None:
    """`arrived` units of the incoming stock named `reference` are here."""
    await conn.execute(
        "UPDATE incoming SET arrived = quantity <= $2, quantity = greatest(quantity - $2, 1) "
        "WHERE reference = $1",
        reference,
        arrived,
    )


async def list_incoming(db: Db, sku: str | None) -> list[dict[str, Any]]:
    rows = await db.fetch(
        "SELECT sku, location, quantity, expected_at, reference FROM incoming "
        "WHERE NOT arrived AND ($1::text IS NULL OR sku = $1) "
        "ORDER BY expected_at NULLS LAST, id LIMIT 1000",
        sku,
    )
    return [dict(row) for row in rows]


# ----------------------------------------------------------------------------- applied facts


@dataclass(frozen=True)
class FirstApplied:
    """What a business key recorded when its fact was first applied."""

    says: dict[str, Any]
    result: dict[str, Any]


async def claim_fact(conn: asyncpg.Connection, fact: Fact, cause: str) -> FirstApplied | None:
    """Record `fact` under its key; None if it is new (the caller applies it), else what the key
    recorded first. A concurrent claim of the same key waits for this transaction."""
    claimed = await conn.fetchval(
        "INSERT INTO applied_facts (kind, key, says, cause_event_id) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT DO NOTHING RETURNING true",
        fact.kind.value,
        fact.key,
        dict(fact.says),
        cause,
    )
    if claimed:
        return None
    row = await conn.fetchrow(
        "SELECT says, result FROM applied_facts WHERE kind = $1 AND key = $2",
        fact.kind.value,
        fact.key,
    )
    return FirstApplied(row["says"], row["result"])


async def keep_fact_result(conn: asyncpg.Connection, fact: Fact, result: dict[str, Any]) -> None:
    """What applying `fact` answered, for its repeats."""
    await conn.execute(
        "UPDATE applied_facts SET result = $3 WHERE kind = $1 AND key = $2",
        fact.kind.value,
        fact.key,
        result,
    )


# ----------------------------------------------------------------------------- transfers


async def transfer_exists(conn: asyncpg.Connection, transfer_id: str) -> bool:
    return bool(await conn.fetchval("SELECT 1 FROM transfers WHERE transfer_id = $1", transfer_id))


async def insert_transfer(conn: asyncpg.Connection, transfer: Any) -> asyncpg.Record:
    """Record a shipped transfer (`transfer` has the columns as attributes)."""
    return await conn.fetchrow(
        "INSERT INTO transfers (transfer_id, sku, source, destination, quantity, expected_at)"
        " VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
        transfer.transfer_id,
        transfer.sku,
        transfer.source,
        transfer.destination,
        transfer.quantity,
        transfer.expected_at,
    )


async def lock_transfer(conn: asyncpg.Connection, transfer_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT * FROM transfers WHERE transfer_id = $1 FOR UPDATE", transfer_id
    )


async def add_transfer_received(
    conn: asyncpg.Connection, transfer_id: str, quantity: int
) -> asyncpg.Record:
    return await conn.fetchrow(
        "UPDATE transfers SET received = received + $2, "
        "received_at = CASE WHEN received + $2 = quantity THEN now() END "
        "WHERE transfer_id = $1 RETURNING *",
        transfer_id,
        quantity,
    )


@dataclass(frozen=True)
class TransferFilter:
    sku: str | None = None
    location: str | None = None
    in_transit: bool | None = None
    limit: int = 100


async def list_transfers(db: Db, where: TransferFilter) -> list[asyncpg.Record]:
    return await db.fetch(
        """SELECT * FROM transfers
           WHERE ($1::text IS NULL OR sku = $1)
             AND ($2::text IS NULL OR source = $2 OR destination = $2)
             AND ($3::bool IS NULL OR (received < quantity) = $3)
           ORDER BY shipped_at DESC, transfer_id LIMIT $4""",
        where.sku,
        where.location,
        where.in_transit,
        where.limit,
    )


class ReservationStore:
    """The rows a reservation changes: `order_reservations` (status and first answer), its held
    lines in `reservations`, and `backorders`. The use cases get one per unit of work; tests of
    the reservation rules use an in-memory one."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def insert_answers(self, answers: Sequence[StoredAnswer]) -> None:
        await self.conn.execute(
            "INSERT INTO order_reservations (order_id, status, reply_type, reply) "
            "SELECT o, s, t, r::jsonb FROM unnest($1::text[], $2::text[], $3::text[], "
            "$4::text[]) AS u(o, s, t, r)",
            [a.order_id for a in answers],
            [a.status for a in answers],
            [a.reply_type for a in answers],
            [a.reply for a in answers],
        )

    async def set_reservation_status(self, order_id: str, status: str) -> None:
        await self.conn.execute(
            "UPDATE order_reservations SET status = $2, updated_at = now() WHERE order_id = $1",
            order_id,
            status,
        )

    async def add_holds(self, holds: dict[HoldKey, int]) -> None:
        """Hold more units per (order, line, sku, location), adding to what is held."""
        keys = list(holds)
        await self.conn.execute(
            "INSERT INTO reservations (order_id, line_id, sku, location, quantity) "
            "SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int[]) "
            "ON CONFLICT (order_id, line_id, sku, location) "
            "DO UPDATE SET quantity = reservations.quantity + EXCLUDED.quantity",
            *(list(column) for column in zip(*keys, strict=True)),
            [holds[key] for key in keys],
        )

    async def release_holds(self, order_id: str) -> None:
        await self.conn.execute(
            "UPDATE reservations SET released = released + quantity, quantity = 0 "
            "WHERE order_id = $1 AND quantity > 0",
            order_id,
        )

    async def release_hold(self, order_id: str, hold: HeldUnits, quantity: int) -> None:
        """Give back `quantity` held units of the order's `hold` (a partial release)."""
        await self.conn.execute(
            "UPDATE reservations SET quantity = quantity - $5, released = released + $5 "
            "WHERE order_id = $1 AND line_id = $2 AND sku = $3 AND location = $4",
            order_id,
            hold.line_id,
            hold.sku,
            hold.location,
            quantity,
        )

    async def commit_hold(self, order_id: str, hold: HeldUnits, quantity: int) -> None:
        """Turn `quantity` held units of the order's `hold` into committed ones."""
        await self.conn.execute(
            "UPDATE reservations SET quantity = quantity - $5, committed = committed + $5 "
            "WHERE order_id = $1 AND line_id = $2 AND sku = $3 AND location = $4",
            order_id,
            hold.line_id,
            hold.sku,
            hold.location,
            quantity,
        )

    async def queue_again(self, order_id: str, units: HeldUnits) -> str:
        """Put `units` of a line back on its backorder (one row per order line and sku: an
        existing row grows and keeps its place in the queue); returns where it waits."""
        location: str = await self.conn.fetchval(
            "INSERT INTO backorders (order_id, line_id, sku, location, quantity, open) "
            "VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (order_id, line_id, sku) DO UPDATE "
            "SET quantity = backorders.quantity + EXCLUDED.quantity, "
            "open = backorders.open + EXCLUDED.open RETURNING location",
            order_id,
            units.line_id,
            units.sku,
            units.location,
            units.quantity,
        )
        return location

    async def insert_backorders(self, backorders: Sequence[NewBackorder]) -> None:
        await self.conn.execute(
            "INSERT INTO backorders (order_id, line_id, sku, location, quantity, open, "
            "priority) SELECT o, l, s, loc, q, q, p FROM unnest($1::text[], $2::text[], "
            "$3::text[], $4::text[], $5::int[], $6::int[]) AS u(o, l, s, loc, q, p)",
            [b.order_id for b in backorders],
            [b.line_id for b in backorders],
            [b.sku for b in backorders],
            [b.location for b in backorders],
            [b.quantity for b in backorders],
            [b.priority for b in backorders],
        )

    async def has_open_backorders(self, order_id: str) -> bool:
        return bool(
            await self.conn.fetchval(
                "SELECT 1 FROM backorders WHERE order_id = $1 AND open > 0 LIMIT 1", order_id
            )
        )

    async def close_backorders(self, order_id: str) -> list[tuple[str, str, int]]:
        """Close the order's open backorders; returns (sku, location, units) of each."""
        rows = await self.conn.fetch(
            """WITH waiting AS (SELECT id, sku, location, open AS n FROM backorders
                                WHERE order_id = $1 AND open > 0 FOR UPDATE),
                    closed AS (UPDATE backorders b SET open = 0 FROM waiting
                               WHERE b.id = waiting.id)
               SELECT sku, location, n FROM waiting""",
            order_id,
        )
        return [(r["sku"], r["location"], r["n"]) for r in rows]

    async def lock_backorder_queue(self, sku: str) -> list[WaitingBackorder]:
        """The open backorders of `sku`, locked, in queue order (priority, then first come)."""
        rows = await self.conn.fetch(
            "SELECT id, order_id, line_id, sku, location, open, priority, EXISTS ("
            " SELECT 1 FROM bundle_backorders bb"
            " WHERE bb.order_id = b.order_id AND bb.line_id = b.line_id) AS in_bundle "
            "FROM backorders b WHERE sku = $1 AND open > 0 ORDER BY priority DESC, id FOR UPDATE",
            sku,
        )
        return [
            WaitingBackorder(
                Backorder(r["order_id"], r["line_id"], r["sku"], r["open"], r["id"], r["priority"]),
                r["location"],
                r["in_bundle"],
            )
            for r in rows
        ]

    async def insert_bundle_backorders(self, bundles: Sequence[BundleBackorder]) -> None:
        await self.conn.execute(
            "INSERT INTO bundle_backorders (order_id, line_id, sku, location, quantity, "
            "components) SELECT o, l, s, loc, q, c::jsonb FROM unnest($1::text[], $2::text[], "
            "$3::text[], $4::text[], $5::int[], $6::text[]) AS u(o, l, s, loc, q, c)",
            [b.order_id for b in bundles],
            [b.line_id for b in bundles],
            [b.sku for b in bundles],
            [b.location for b in bundles],
            [b.quantity for b in bundles],
            [json.dumps([{"sku": sku, "quantity": n} for sku, n in b.components]) for b in bundles],
        )

    async def queue_bundle_again(self, bundle: BundleBackorder) -> None:
        """`bundle.quantity` more bundles of a line wait whole (a new row if the line had no
        backorder yet; an existing row grows and keeps what it announced)."""
        await self.conn.execute(
            "INSERT INTO bundle_backorders (order_id, line_id, sku, location, quantity, "
            "components) VALUES ($1, $2, $3, $4, $5, $6::text::jsonb) "
            "ON CONFLICT (order_id, line_id) DO UPDATE "
            "SET quantity = bundle_backorders.quantity + EXCLUDED.quantity",
            bundle.order_id,
            bundle.line_id,
            bundle.sku,
            bundle.location,
            bundle.quantity,
            json.dumps([{"sku": sku, "quantity": n} for sku, n in bundle.components]),
        )

    async def lock_bundle_backorders(self, lines: Iterable[LineKey]) -> list[BundleBackorder]:
        """The backordered bundle lines among `lines` (order, line), locked in key order."""
        keys = sorted(set(lines))
        rows = await self.conn.fetch(
            "SELECT bb.* FROM bundle_backorders bb JOIN unnest($1::text[], $2::text[]) "
            "AS u(o, l) ON bb.order_id = u.o AND bb.line_id = u.l "
            "ORDER BY bb.order_id, bb.line_id FOR UPDATE OF bb",
            [order_id for order_id, _ in keys],
            [line_id for _, line_id in keys],
        )
        return [
            BundleBackorder(
                r["order_id"],
                r["line_id"],
                r["sku"],
                r["location"],
                r["quantity"],
                r["allocated"],
                tuple((c["sku"], c["quantity"]) for c in r["components"]),
            )
            for r in rows
        ]

    async def filled_components(self, lines: Iterable[LineKey]) -> dict[LineKey, dict[str, int]]:
        """Units of each sku allocated so far to the backorders of `lines` (order, line)."""
        keys = list(lines)
        filled: dict[LineKey, dict[str, int]] = {}
        for r in await self.conn.fetch(
            "SELECT b.order_id, b.line_id, b.sku, sum(b.quantity - b.open)::int AS filled "
            "FROM backorders b JOIN unnest($1::text[], $2::text[]) AS u(o, l) "
            "ON b.order_id = u.o AND b.line_id = u.l GROUP BY b.order_id, b.line_id, b.sku",
            [order_id for order_id, _ in keys],
            [line_id for _, line_id in keys],
        ):
            filled.setdefault((r["order_id"], r["line_id"]), {})[r["sku"]] = r["filled"]
        return filled

    async def set_bundles_allocated(self, allocated: dict[LineKey, int]) -> None:
        await self.conn.execute(
            "UPDATE bundle_backorders bb SET allocated = u.a "
            "FROM unnest($1::text[], $2::text[], $3::int[]) AS u(o, l, a) "
            "WHERE bb.order_id = u.o AND bb.line_id = u.l",
            [order_id for order_id, _ in allocated],
            [line_id for _, line_id in allocated],
            list(allocated.values()),
        )

    async def fill_backorders(self, location: str, fills: Sequence[BackorderFill]) -> None:
        """Take the fills off their backorders and hold them for their orders at `location`."""
        # (order, line, sku) is unique among backorders, so no reservation key repeats here.
        await self.conn.execute(
            "UPDATE backorders b SET open = b.open - u.q "
            "FROM unnest($1::bigint[], $2::int[]) AS u(id, q) WHERE b.id = u.id",
            [fill.backorder.sequence for fill in fills],
            [fill.quantity for fill in fills],
        )
        await self.conn.execute(
            "INSERT INTO reservations (order_id, line_id, sku, location, quantity) "
            "SELECT o, l, s, $4, q FROM unnest($1::text[], $2::text[], $3::text[], $5::int[]) "
            "AS u(o, l, s, q) ON CONFLICT (order_id, line_id, sku, location) "
            "DO UPDATE SET quantity = reservations.quantity + EXCLUDED.quantity",
            [fill.backorder.order_id for fill in fills],
            [fill.backorder.line_id for fill in fills],
            [fill.backorder.sku for fill in fills],
            location,
            [fill.quantity for fill in fills],
        )

    async def shipment_committed(self, order_id: str, shipment_id: str) -> bool:
        """True when the ledger already holds this shipment's movements."""
        return bool(
            await self.conn.fetchval(
                "SELECT 1 FROM movements WHERE kind = 'shipment' AND order_id = $1 "
                "AND reference_type = 'shipment' AND reference_id = $2 LIMIT 1",
                order_id,
                shipment_id,
            )
        )


# ----------------------------------------------------------------------------- demand


DemandKey = tuple[str, str, date]
"""(sku, location, day)."""


async def add_demand(conn: asyncpg.Connection, totals: dict[DemandKey, tuple[int, bool]]) -> None:
    """Add (quantity, stockout) per (sku, location, day) to demand_daily."""
    keys = sorted(totals)  # one row order for every batch: no deadlocks between instances
    await conn.execute(
        """INSERT INTO demand_daily (sku, location, day, quantity, stockout)
           SELECT * FROM unnest($1::text[], $2::text[], $3::date[], $4::int[], $5::bool[])
           ON CONFLICT (sku, location, day) DO UPDATE SET
               quantity = demand_daily.quantity + EXCLUDED.quantity,
               stockout = demand_daily.stockout OR EXCLUDED.stockout""",
        [k[0] for k in keys],
        [k[1] for k in keys],
        [k[2] for k in keys],
        [totals[k][0] for k in keys],
        [totals[k][1] for k in keys],
    )
