"""SQL of the order service: sagas, timelines, timers and shipments in schema `orders`.

`SqlSagaStore` is the saga write path (the `SagaStore` the use cases work on): set-based, one
statement per table per batch, arrays through `unnest`. The module functions below it are the
HTTP API's reads. Everything runs on the caller's connection, inside the caller's transaction.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import asyncpg

from stockflow.contracts.events.fulfillment import ShipmentDelivered, ShipmentShipped
from stockflow.order.domain import OrderSaga, TimelineEntry


class ConcurrentUpdate(asyncpg.exceptions.SerializationError):
    """Another transaction changed an order between our read and our write.

    A serialization failure, so the runtime retries the whole batch against fresh rows.
    """


@dataclass(frozen=True)
class OrderFacts:
    """What the order service keeps beside the saga: who ordered, where it goes, and when
    each backordered line is expected (line id -> date; None when stock cannot say)."""

    customer_id: str | None = None
    priority: int | None = None
    placed_at: datetime | None = None
    shipping_address: dict[str, Any] | None = None
    backorder_etas: Mapping[str, datetime | None] = field(default_factory=dict)


@dataclass(frozen=True)
class StoredOrder:
    saga: OrderSaga
    facts: OrderFacts


@dataclass(frozen=True)
class SagaWrite:
    """A saga to insert (`expected_version` None) or to update from `expected_version`."""

    saga: OrderSaga
    facts: OrderFacts
    expected_version: int | None
    at: datetime


@dataclass(frozen=True)
class DueTimer:
    order_id: str
    kind: str
    fire_at: datetime
    attempt: int


@dataclass(frozen=True)
class ArmedTimer:
    """A timer to arm (or re-arm, replacing the order's timer of the same kind)."""

    order_id: str
    kind: str
    fire_at: datetime
    attempt: int


SHIPMENT_COLUMNS = (
    "order_id",
    "shipment_id",
    "location",
    "carrier",
    "service_level",
    "tracking_number",
    "shipped_at",
)
"""The shipments columns taken as they are from fulfillment's ShipmentShipped."""


class SagaStore(Protocol):
    """What the use cases need of the orders schema: `SqlSagaStore` in the service, an
    in-memory one in the use-case tests."""

    async def lock_orders(self, order_ids: Sequence[str]) -> dict[str, StoredOrder]: ...

    async def save_sagas(self, writes: Sequence[SagaWrite]) -> None: ...

    async def append_timeline(self, entries: Sequence[tuple[str, TimelineEntry]]) -> None: ...

    async def set_timers(
        self, armed: Sequence[ArmedTimer], cancelled: Sequence[tuple[str, str]]
    ) -> None: ...

    async def claim_due_timers(self, now: datetime, limit: int) -> list[DueTimer]: ...

    async def record_shipments(
        self, shipped: Sequence[ShipmentShipped], delivered: Sequence[ShipmentDelivered]
    ) -> None: ...


@dataclass(frozen=True)
class SqlSagaStore:
    """The saga write path in SQL, on the caller's connection and transaction."""

    conn: asyncpg.Connection

    async def lock_orders(self, order_ids: Sequence[str]) -> dict[str, StoredOrder]:
        """The stored orders among `order_ids`, row-locked in key order (no deadlocks between
        batches that share orders)."""
        if not order_ids:
            return {}
        rows = await self.conn.fetch(
            "SELECT order_id, customer_id, priority, placed_at, shipping_address, saga, "
            "(SELECT jsonb_object_agg(e.line_id, e.expected_date) FROM backorder_etas e "
            " WHERE e.order_id = orders.order_id) AS backorder_etas FROM orders "
            "WHERE order_id = ANY($1::text[]) ORDER BY order_id FOR UPDATE",
            list(order_ids),
        )
        return {row["order_id"]: _stored(row) for row in rows}

    async def save_sagas(self, writes: Sequence[SagaWrite]) -> None:
        """Insert new sagas and update changed ones, each update guarded by its expected version."""
        new = [w for w in writes if w.expected_version is None]
        changed = [w for w in writes if w.expected_version is not None]
        if new:
            inserted = await self.conn.fetch(
                "INSERT INTO orders (order_id, state, version, customer_id, currency, fingerprint, "
                "priority, placed_at, shipping_address, saga, created_at, updated_at, settled_at) "
                "SELECT o, s, v, c, cur, f, p, pa, a::jsonb, sg::jsonb, at, at, st "
                "FROM unnest($1::text[], $2::text[], $3::int[], $4::text[], $5::text[], "
                "$6::text[], $7::smallint[], $8::timestamptz[], $9::text[], $10::text[], "
                "$11::timestamptz[], "
                "$12::timestamptz[]) AS u(o, s, v, c, cur, f, p, pa, a, sg, at, st) "
                "ON CONFLICT (order_id) DO NOTHING RETURNING order_id",
                [w.saga.order_id for w in new],
                [w.saga.state.value for w in new],
                [w.saga.version for w in new],
                [w.facts.customer_id for w in new],
                [w.saga.currency for w in new],
                [w.saga.fingerprint for w in new],
                [w.facts.priority for w in new],
                [w.facts.placed_at for w in new],
                [_json_or_none(w.facts.shipping_address) for w in new],
                [json.dumps(w.saga.to_dict()) for w in new],
                [w.at for w in new],
                [w.at if w.saga.state.is_settled else None for w in new],
            )
            if len(inserted) != len(new):
                raise ConcurrentUpdate("an order was created concurrently; retrying the batch")
        if changed:
            updated = await self.conn.fetch(
                "UPDATE orders o SET state = u.s, version = u.v, currency = u.cur, "
                "saga = u.sg::jsonb, updated_at = u.at, "
                "settled_at = COALESCE(o.settled_at, u.st) "
                "FROM unnest($1::text[], $2::text[], $3::int[], $4::int[], $5::text[], $6::text[], "
                "$7::timestamptz[], $8::timestamptz[]) AS u(o, s, v, expected, cur, sg, at, st) "
                "WHERE o.order_id = u.o AND o.version = u.expected RETURNING o.order_id",
                [w.saga.order_id for w in changed],
                [w.saga.state.value for w in changed],
                [w.saga.version for w in changed],
                [w.expected_version for w in changed],
                [w.saga.currency for w in changed],
                [json.dumps(w.saga.to_dict()) for w in changed],
                [w.at for w in changed],
                [w.at if w.saga.state.is_settled else None for w in changed],
            )
            if len(updated) != len(changed):
                raise ConcurrentUpdate("an order changed under us; retrying the batch")

    async def append_timeline(self, entries: Sequence[tuple[str, TimelineEntry]]) -> None:
        """Append (order_id, entry) pairs in the given order."""
        if not entries:
            return
        await self.conn.execute(
            "INSERT INTO timeline (order_id, at, from_state, to_state, cause_type, cause_id, "
            "outcome, note) SELECT o, a, f, t, ct, ci, oc, n FROM unnest($1::text[], "
            "$2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], "
            "$8::text[]) "
            "WITH ORDINALITY AS u(o, a, f, t, ct, ci, oc, n, i) ORDER BY i",
            [order_id for order_id, _ in entries],
            [e.at for _, e in entries],
            [e.from_state.value for _, e in entries],
            [e.to_state.value for _, e in entries],
            [e.cause_type for _, e in entries],
            [e.cause_id for _, e in entries],
            [e.outcome.value for _, e in entries],
            [e.note for _, e in entries],
        )

    async def set_timers(
        self, armed: Sequence[ArmedTimer], cancelled: Sequence[tuple[str, str]]
    ) -> None:
        """Arm timers, replacing any of the same kind, and drop the (order_id, kind) timers in
        `cancelled`."""
        if cancelled:
            await self.conn.execute(
                "DELETE FROM timers t USING unnest($1::text[], $2::text[]) AS u(o, k) "
                "WHERE t.order_id = u.o AND t.kind = u.k",
                [order_id for order_id, _ in cancelled],
                [kind for _, kind in cancelled],
            )
        if armed:
            await self.conn.execute(
                "INSERT INTO timers (order_id, kind, fire_at, attempt) "
                "SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::int[]) "
                "ON CONFLICT (order_id, kind) DO UPDATE "
                "SET fire_at = EXCLUDED.fire_at, attempt = EXCLUDED.attempt",
                [t.order_id for t in armed],
                [t.kind for t in armed],
                [t.fire_at for t in armed],
                [t.attempt for t in armed],
            )

    async def claim_due_timers(self, now: datetime, limit: int) -> list[DueTimer]:
        """Take due timers off the table, locking them and their orders; rows another instance
        holds are skipped, so no timer fires twice."""
        rows = await self.conn.fetch(
            "SELECT t.order_id, t.kind, t.fire_at, t.attempt FROM timers t "
            "JOIN orders o ON o.order_id = t.order_id WHERE t.fire_at <= $1 "
            "ORDER BY t.fire_at LIMIT $2 FOR UPDATE OF t, o SKIP LOCKED",
            now,
            limit,
        )
        if not rows:
            return []
        await self.conn.execute(
            "DELETE FROM timers t USING unnest($1::text[], $2::text[]) AS u(o, k) "
            "WHERE t.order_id = u.o AND t.kind = u.k",
            [r["order_id"] for r in rows],
            [r["kind"] for r in rows],
        )
        return [DueTimer(r["order_id"], r["kind"], r["fire_at"], r["attempt"]) for r in rows]

    async def record_shipments(
        self, shipped: Sequence[ShipmentShipped], delivered: Sequence[ShipmentDelivered]
    ) -> None:
        """Carrier facts of accepted shipments, and their delivery times."""
        if shipped:
            columns = SHIPMENT_COLUMNS
            await self.conn.execute(
                f"INSERT INTO shipments ({', '.join(columns)}) SELECT * FROM unnest($1::text[], "
                "$2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamptz[]) "
                "ON CONFLICT (order_id, shipment_id) DO NOTHING",
                *([getattr(event, c) for event in shipped] for c in columns),
            )
        if delivered:
            await self.conn.execute(
                "UPDATE shipments s SET delivered_at = u.d "
                "FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS u(o, sh, d) "
                "WHERE s.order_id = u.o AND s.shipment_id = u.sh AND s.delivered_at IS NULL",
                [event.order_id for event in delivered],
                [event.shipment_id for event in delivered],
                [event.delivered_at for event in delivered],
            )


def _stored(row: asyncpg.Record) -> StoredOrder:
    return StoredOrder(
        saga=OrderSaga.from_dict(row["saga"]),
        facts=OrderFacts(
            customer_id=row["customer_id"],
            priority=row["priority"],
            placed_at=row["placed_at"],
            shipping_address=row["shipping_address"],
            backorder_etas={
                line_id: None if date is None else datetime.fromisoformat(date)
                for line_id, date in (row["backorder_etas"] or {}).items()
            },
        ),
    )


def _json_or_none(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


# Reads (HTTP API) ------------------------------------------------------------------------------


async def order(conn: asyncpg.Connection, order_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT order_id, state, version, customer_id, currency, priority, placed_at, "
        "shipping_address, saga, created_at, updated_at, settled_at FROM orders "
        "WHERE order_id = $1",
        order_id,
    )


async def timeline(conn: asyncpg.Connection, order_id: str) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT seq, at, from_state, to_state, cause_type, cause_id, outcome, note FROM timeline "
        "WHERE order_id = $1 ORDER BY seq",
        order_id,
    )


async def shipments(conn: asyncpg.Connection, order_id: str) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT shipment_id, location, carrier, service_level, tracking_number, shipped_at, "
        "delivered_at FROM shipments WHERE order_id = $1 ORDER BY shipped_at, shipment_id",
        order_id,
    )


async def timers(conn: asyncpg.Connection, order_id: str) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT kind, fire_at, attempt FROM timers WHERE order_id = $1 ORDER BY fire_at", order_id
    )


async def list_orders(
    conn: asyncpg.Connection, *, state: str | None, after: str | None, limit: int
) -> list[asyncpg.Record]:
    """A page of orders by order id (keyset paging: pass the last id as `after`)."""
    return await conn.fetch(
        "SELECT order_id, state, version, customer_id, currency, created_at, updated_at, "
        "settled_at, jsonb_array_length(saga->'lines') AS line_count FROM orders "
        "WHERE ($1::text IS NULL OR state = $1) AND ($2::text IS NULL OR order_id > $2) "
        "ORDER BY order_id LIMIT $3",
        state,
        after,
        limit,
    )


async def stats(conn: asyncpg.Connection, since: datetime | None) -> dict[str, Any]:
    """Orders per state and the latency from intake to settlement (milliseconds)."""
    counts = await conn.fetch(
        "SELECT state, count(*) AS n FROM orders WHERE ($1::timestamptz IS NULL OR "
        "created_at >= $1) GROUP BY state ORDER BY state",
        since,
    )
    latency = await conn.fetchrow(
        "SELECT count(*) AS n, "
        "percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY ms) AS p, max(ms) AS max "
        "FROM (SELECT extract(epoch FROM settled_at - created_at) * 1000 AS ms FROM orders "
        "WHERE settled_at IS NOT NULL AND ($1::timestamptz IS NULL OR created_at >= $1)) s",
        since,
    )
    stuck = await conn.fetchval(
        "SELECT count(*) FROM orders WHERE (saga->>'stuck')::boolean AND state = 'reserving' "
        "AND ($1::timestamptz IS NULL OR created_at >= $1)",
        since,
    )
    return {
        "counts": {row["state"]: row["n"] for row in counts},
        "latency": latency,
        "stuck": stuck,
    }


# Backorder dates (beside the saga) -------------------------------------------------------------


async def record_backorder_etas(
    conn: asyncpg.Connection, etas: Sequence[tuple[str, str, datetime | None]]
) -> None:
    """The dates of a reservation reply's backordered lines (order, line, date). The first
    reply's dates are kept: a repeated reply never undoes a move announced since."""
    if etas:
        await conn.execute(
            "INSERT INTO backorder_etas (order_id, line_id, expected_date) "
            "SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[]) "
            "ON CONFLICT (order_id, line_id) DO NOTHING",
            [e[0] for e in etas],
            [e[1] for e in etas],
            [e[2] for e in etas],
        )


async def move_backorder_eta(
    conn: asyncpg.Connection, order_id: str, line_id: str, expected_date: datetime | None
) -> asyncpg.Record | None:
    """Move a known line's date; the row with the date it had, or None when the line is
    unknown here or already has that date (a repeat changes nothing)."""
    return await conn.fetchrow(
        "UPDATE backorder_etas e SET expected_date = $3, updated_at = now() "
        "FROM (SELECT expected_date FROM backorder_etas WHERE order_id = $1 AND line_id = $2 "
        "      FOR UPDATE) AS before "
        "WHERE e.order_id = $1 AND e.line_id = $2 AND e.expected_date IS DISTINCT FROM $3 "
        "RETURNING before.expected_date AS previous",
        order_id,
        line_id,
        expected_date,
    )


async def backorder_etas(conn: asyncpg.Connection, order_id: str) -> dict[str, datetime | None]:
    rows = await conn.fetch(
        "SELECT line_id, expected_date FROM backorder_etas WHERE order_id = $1", order_id
    )
    return {r["line_id"]: r["expected_date"] for r in rows}
