"""The level and ledger repository of the stock service (part of the store layer, beside
`store.py`): locked levels in memory, the movements made to them, and their SQL.

A use case loads the levels it needs (`LevelBook.load`, which locks them in a fixed order so two
instances never deadlock), moves stock with domain `Movement`s (each checked by the domain and,
again, by the database's CHECK constraints), and `flush` writes the changed levels, appends the
movements to the ledger and stages `stock.level.changed.v1`, `stock.movement.recorded.v1` and
reorder alerts — one statement per table, whatever the number of changes.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import asyncpg

from stockflow.contracts.events.stock import (
    OUTFLOW_KINDS,
    StockLevelChanged,
    StockLow,
    StockMovementRecorded,
    StockOut,
    StockRecovered,
)
from stockflow.runtime.outbox import UnitOfWork
from stockflow.stock.domain import (
    BUCKETS,
    Level,
    LevelKey,
    Movement,
    MovementKind,
    StockAlert,
    apply_to,
    stock_zone,
    zone_change_alert,
)

# The ledger's sign of each kind, as the contract states it.
OUTFLOWS = {MovementKind(kind) for kind in OUTFLOW_KINDS}


@dataclass(frozen=True)
class Recorded:
    """A movement and what the ledger row says about it beyond the domain's fields."""

    movement: Movement
    cause_event_id: str
    order_id: str | None = None
    reference_type: str | None = None
    unit_cost: Decimal | None = None
    currency: str | None = None

    @property
    def signed_quantity(self) -> int:
        quantity = self.movement.quantity
        return -quantity if self.movement.kind in OUTFLOWS else quantity


class LevelBook:
    """The levels one transaction works on, and the movements it made."""

    def __init__(self, rows: Iterable[asyncpg.Record]) -> None:
        self.levels: dict[LevelKey, Level] = {}
        self.reorder_points: dict[LevelKey, int | None] = {}
        self.zones: dict[LevelKey, str] = {}
        for row in rows:
            key = (row["sku"], row["location"])
            self.levels[key] = Level(row["sku"], row["location"], **{b: row[b] for b in BUCKETS})
            self.reorder_points[key] = row["reorder_point"]
            self.zones[key] = row["alert_state"]
        self.recorded: list[Recorded] = []
        self.changed: set[LevelKey] = set()
        # sku -> its locations, so a command looks at its own skus, not at the whole batch's.
        self._locations: dict[str, set[str]] = {}
        for sku, location in self.levels:
            self._locations.setdefault(sku, set()).add(location)

    @classmethod
    async def load(cls, conn: asyncpg.Connection, skus: Iterable[str]) -> LevelBook:
        """Lock and read every level of `skus` (sku, location order: no deadlocks)."""
        rows = await conn.fetch(
            "SELECT * FROM levels WHERE sku = ANY($1::text[]) ORDER BY sku, location FOR UPDATE",
            sorted(set(skus)),
        )
        return cls(rows)

    def level(self, sku: str, location: str) -> Level:
        return self.levels.get((sku, location)) or Level(sku, location)

    def available(self, skus: Iterable[str]) -> dict[LevelKey, int]:
        """Units available per (sku, location) of `skus`."""
        return {
            (sku, location): self.levels[(sku, location)].available
            for sku in set(skus)
            for location in self._locations.get(sku, ())
        }

    def locations_of(self, sku: str) -> list[str]:
        return sorted(self._locations.get(sku, ()))

    def move(
        self,
        movement: Movement,
        *,
        cause_event_id: str,
        order_id: str | None = None,
        reference_type: str | None = None,
        unit_cost: Decimal | None = None,
        currency: str | None = None,
    ) -> None:
        """Apply `movement` (all or nothing; raises InsufficientStock) and record it.

        A movement that changes no bucket (`return_written_off`) is recorded in the ledger only:
        its level keeps its version and publishes nothing."""
        after = apply_to(self.levels, movement)
        self.changed.update(key for key, level in after.items() if self.levels.get(key) != level)
        self.levels |= after
        for sku, location in movement.level_keys:
            self._locations.setdefault(sku, set()).add(location)
        self.recorded.append(
            Recorded(movement, cause_event_id, order_id, reference_type, unit_cost, currency)
        )

    def move_for_order(
        self, kind: MovementKind, where: LevelKey, quantity: int, order_id: str, cause: str
    ) -> None:
        """A movement an order caused (reservation, release, shipment, backorder) at `where`."""
        sku, location = where
        self.move(
            Movement(kind, sku, location, quantity, reference=order_id),
            cause_event_id=cause,
            order_id=order_id,
            reference_type="order",
        )

    async def flush(self, uow: UnitOfWork) -> None:
        """Write changed levels and new movements; stage their events and alerts.

        Every written level's `published_version` is its new version, in the same statement:
        the record staged below is that version's (invariant `level_changes_published`)."""
        if not self.recorded:
            return
        now = datetime.now(UTC)
        keys = sorted(self.changed)
        levels = [self.levels[key] for key in keys]
        zones = [
            stock_zone(level.available, self.reorder_points.get(key))
            for key, level in zip(keys, levels, strict=True)
        ]
        rows = await uow.conn.fetch(
            f"""INSERT INTO levels (sku, location, {", ".join(BUCKETS)}, alert_state, version,
                                    published_version, updated_at)
                SELECT u.*, 1, 1, now() FROM unnest($1::text[], $2::text[],
                    {", ".join(f"${i}::int[]" for i in range(3, 3 + len(BUCKETS)))},
                    ${3 + len(BUCKETS)}::text[]) AS u
                ON CONFLICT (sku, location) DO UPDATE SET
                    {", ".join(f"{b} = EXCLUDED.{b}" for b in BUCKETS)},
                    alert_state = EXCLUDED.alert_state,
                    version = levels.version + 1, published_version = levels.version + 1,
                    updated_at = now()
                RETURNING sku, location, version, reorder_point""",
            [k[0] for k in keys],
            [k[1] for k in keys],
            *([getattr(level, b) for level in levels] for b in BUCKETS),
            [zone.value for zone in zones],
        )
        versions = {(r["sku"], r["location"]): (r["version"], r["reorder_point"]) for r in rows}
        for key, level, zone in zip(keys, levels, zones, strict=True):
            version, reorder_point = versions[key]
            uow.publish(level_record(level, version, now))
            previous = self.zones.get(key, "ok")
            alert = zone_change_alert(type(zone)(previous), zone)
            if alert is not None and reorder_point is not None:
                uow.publish(_alert(alert, level, reorder_point))
        await self._append_movements(uow, now)
        self.changed.clear()

    async def _append_movements(self, uow: UnitOfWork, now: datetime) -> None:
        recorded, self.recorded = self.recorded, []
        ids = [uuid.uuid4() for _ in recorded]
        await uow.conn.execute(
            """INSERT INTO movements (movement_id, sku, location, kind, quantity, reason,
                   reference_type, reference_id, order_id, unit_cost, currency, cause_event_id,
                   bundle_sku, occurred_at)
               SELECT u.*, $14::timestamptz FROM unnest($1::uuid[], $2::text[], $3::text[],
                   $4::text[], $5::int[], $6::text[], $7::text[], $8::text[], $9::text[],
                   $10::numeric[], $11::text[], $12::text[], $13::text[]) AS u""",
            ids,
            [r.movement.sku for r in recorded],
            [r.movement.location for r in recorded],
            [r.movement.kind.value for r in recorded],
            [r.signed_quantity for r in recorded],
            [r.movement.reason for r in recorded],
            [r.reference_type for r in recorded],
            [r.movement.reference for r in recorded],
            [r.order_id for r in recorded],
            [r.unit_cost for r in recorded],
            [r.currency for r in recorded],
            [r.cause_event_id for r in recorded],
            [r.movement.bundle for r in recorded],
            now,
        )
        for movement_id, r in zip(ids, recorded, strict=True):
            reference = (
                {"type": r.reference_type or "other", "id": r.movement.reference}
                if r.movement.reference
                else None
            )
            uow.publish(
                StockMovementRecorded(
                    movement_id=str(movement_id),
                    sku=r.movement.sku,
                    location=r.movement.location,
                    kind=r.movement.kind.value,
                    quantity=r.signed_quantity,
                    reason=r.movement.reason,
                    reference=reference,
                    order_id=r.order_id,
                    unit_cost=r.unit_cost,
                    currency=r.currency,
                    cause_event_id=r.cause_event_id,
                    occurred_at=now,
                    bundle_sku=r.movement.bundle,
                )
            )


def level_record(level: Level, version: int, changed_at: datetime) -> StockLevelChanged:
    """The stock.levels.v1 record of `level` at `version`."""
    return StockLevelChanged(
        sku=level.sku,
        location=level.location,
        on_hand=level.on_hand,
        reserved=level.reserved,
        available=level.available,
        incoming=level.incoming,
        backordered=level.backordered,
        damaged=level.damaged,
        quality_control=level.quality_control,
        safety_stock=level.safety_stock,
        version=version,
        changed_at=changed_at,
    )


async def publish_unpublished_levels(uow: UnitOfWork, limit: int) -> int:
    """Stage the record of up to `limit` levels whose version has none (levels from before the
    key named the location, or a change made outside LevelBook); how many. Locked levels are
    skipped: their writer publishes them."""
    rows = await uow.conn.fetch(
        "SELECT * FROM levels WHERE version > published_version "
        "ORDER BY sku, location LIMIT $1 FOR UPDATE SKIP LOCKED",
        limit,
    )
    now = datetime.now(UTC)
    for row in rows:
        level = Level(row["sku"], row["location"], **{b: row[b] for b in BUCKETS})
        uow.publish(level_record(level, row["version"], now))
    await uow.conn.execute(
        "UPDATE levels SET published_version = version "
        "WHERE (sku, location) IN (SELECT * FROM unnest($1::text[], $2::text[]))",
        [r["sku"] for r in rows],
        [r["location"] for r in rows],
    )
    return len(rows)


def _alert(alert: StockAlert, level: Level, reorder_point: int):
    if alert is StockAlert.OUT_OF_STOCK:
        return StockOut(sku=level.sku, location=level.location)
    if alert is StockAlert.LOW_STOCK:
        return StockLow(
            sku=level.sku,
            location=level.location,
            available=level.available,
            reorder_point=reorder_point,
        )
    return StockRecovered(
        sku=level.sku,
        location=level.location,
        available=level.available,
        reorder_point=reorder_point,
    )
