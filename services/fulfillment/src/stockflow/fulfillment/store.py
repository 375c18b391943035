"""SQL for the fulfillment schema: aggregates in and out, projections, and the warehouse's reads.

Aggregates (shipments, pick lists, returns) are stored whole in `state` as the domain's
`to_dict`; the other columns are copies for querying, rewritten on every save. Loads meant for
a change take the row lock (`for_update`), so concurrent steps on one shipment serialise.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg

from stockflow.fulfillment.domain import (
    Address,
    BundlePart,
    Dimensions,
    Label,
    PickList,
    ReturnAuthorization,
    Shipment,
    TrackingUpdate,
    VariantSpec,
)

OPEN_STATUSES = ("created", "picking", "on_hold", "picked", "packed", "labelled")
KEEP = "<keep>"
"""`save_shipment(pick_list_id=KEEP)` leaves the shipment's pick list as it is."""


@dataclass(frozen=True)
class OrderLineInfo:
    sku: str
    unit_price: Decimal | None


@dataclass(frozen=True)
class OrderInfo:
    """What fulfillment keeps of a confirmed order: where it goes and what its lines cost."""

    order_id: str
    currency: str
    ship_to: Address
    lines: dict[str, OrderLineInfo]
    status: str


# --- orders ---------------------------------------------------------------------------------


async def insert_order(conn: asyncpg.Connection, order: OrderInfo, confirmed_at: datetime) -> bool:
    """Record a confirmed order; False when it was already known (a repeated confirmation)."""
    lines = {
        line_id: {
            "sku": line.sku,
            "unit_price": None if line.unit_price is None else str(line.unit_price),
        }
        for line_id, line in order.lines.items()
    }
    inserted = await conn.fetchval(
        "INSERT INTO orders (order_id, currency, ship_to, lines, confirmed_at) "
        "VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING true",
        order.order_id,
        order.currency,
        order.ship_to.to_dict(),
        lines,
        confirmed_at,
    )
    return bool(inserted)


async def get_order(
    conn: asyncpg.Connection, order_id: str, *, for_update: bool = False
) -> OrderInfo | None:
    row = await conn.fetchrow(
        "SELECT * FROM orders WHERE order_id = $1" + (" FOR UPDATE" if for_update else ""),
        order_id,
    )
    if row is None:
        return None
    return OrderInfo(
        order_id=row["order_id"],
        currency=row["currency"],
        ship_to=Address.from_dict(row["ship_to"]),
        lines={
            line_id: OrderLineInfo(
                line["sku"], None if line["unit_price"] is None else Decimal(line["unit_price"])
            )
            for line_id, line in row["lines"].items()
        },
        status=row["status"],
    )


async def mark_order_cancelled(conn: asyncpg.Connection, order_id: str) -> None:
    await conn.execute(
        "UPDATE orders SET status = 'cancelled', updated_at = now() WHERE order_id = $1", order_id
    )


# --- shipments ------------------------------------------------------------------------------


async def count_shipments(conn: asyncpg.Connection, order_id: str) -> int:
    return await conn.fetchval("SELECT count(*) FROM shipments WHERE order_id = $1", order_id)


async def insert_shipment(conn: asyncpg.Connection, shipment: Shipment, sequence: int) -> bool:
    inserted = await conn.fetchval(
        "INSERT INTO shipments (shipment_id, order_id, sequence, location, status, state) "
        "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING true",
        shipment.shipment_id,
        shipment.order_id,
        sequence,
        shipment.location,
        shipment.status.value,
        shipment.to_dict(),
    )
    if inserted:
        await _write_lines(conn, shipment)
    return bool(inserted)


async def save_shipment(
    conn: asyncpg.Connection, shipment: Shipment, *, pick_list_id: str | None = KEEP
) -> None:
    """Write the shipment back; `pick_list_id` is changed only when given."""
    label = shipment.label
    await conn.execute(
        "UPDATE shipments SET status = $2, state = $3, version = version + 1, updated_at = now(), "
        "tracking_number = $4, carrier = $5, shipped_at = $6"
        + (", pick_list_id = $7" if pick_list_id != KEEP else "")
        + " WHERE shipment_id = $1",
        shipment.shipment_id,
        shipment.status.value,
        shipment.to_dict(),
        label.tracking_number if label else None,
        label.carrier if label else None,
        shipment.shipped_at,
        *([pick_list_id] if pick_list_id != KEEP else []),
    )
    await _write_lines(conn, shipment)
    await conn.execute("DELETE FROM packages WHERE shipment_id = $1", shipment.shipment_id)
    if shipment.packages:
        await conn.executemany(
            "INSERT INTO packages (shipment_id, package_no, weight_grams, length_mm, width_mm, "
            "height_mm) VALUES ($1, $2, $3, $4, $5, $6)",
            [
                (
                    shipment.shipment_id,
                    number,
                    p.weight_grams,
                    p.dimensions.length_mm,
                    p.dimensions.width_mm,
                    p.dimensions.height_mm,
                )
                for number, p in enumerate(shipment.packages, start=1)
            ],
        )


async def _write_lines(conn: asyncpg.Connection, shipment: Shipment) -> None:
    await conn.execute("DELETE FROM shipment_lines WHERE shipment_id = $1", shipment.shipment_id)
    await conn.executemany(
        "INSERT INTO shipment_lines (shipment_id, line_id, sku, quantity, picked) "
        "VALUES ($1, $2, $3, $4, $5)",
        [
            (
                shipment.shipment_id,
                line.line_id,
                line.sku,
                line.quantity,
                shipment.picked.get(line.line_id),
            )
            for line in shipment.lines
        ],
    )


def _shipment(row: asyncpg.Record) -> Shipment:
    return Shipment.from_dict(row["state"])


async def load_shipment(
    conn: asyncpg.Connection, shipment_id: str, *, for_update: bool = False
) -> Shipment | None:
    row = await conn.fetchrow(
        "SELECT state FROM shipments WHERE shipment_id = $1"
        + (" FOR UPDATE" if for_update else ""),
        shipment_id,
    )
    return _shipment(row) if row else None


async def load_shipments(
    conn: asyncpg.Connection, shipment_ids: Sequence[str], *, for_update: bool = False
) -> dict[str, Shipment]:
    rows = await conn.fetch(
        "SELECT state FROM shipments WHERE shipment_id = ANY($1::text[]) ORDER BY shipment_id"
        + (" FOR UPDATE" if for_update else ""),
        list(shipment_ids),
    )
    shipments = [_shipment(row) for row in rows]
    return {shipment.shipment_id: shipment for shipment in shipments}


async def shipments_of_order(
    conn: asyncpg.Connection, order_id: str, *, for_update: bool = False
) -> list[Shipment]:
    rows = await conn.fetch(
        "SELECT state FROM shipments WHERE order_id = $1 ORDER BY sequence"
        + (" FOR UPDATE" if for_update else ""),
        order_id,
    )
    return [_shipment(row) for row in rows]


async def shipment_by_tracking(
    conn: asyncpg.Connection, tracking_number: str, *, for_update: bool = False
) -> Shipment | None:
    row = await conn.fetchrow(
        "SELECT state FROM shipments WHERE tracking_number = $1"
        + (" FOR UPDATE" if for_update else ""),
        tracking_number,
    )
    return _shipment(row) if row else None


async def pickable_shipment_ids(
    conn: asyncpg.Connection,
    location: str,
    *,
    limit: int,
    shipment_ids: Sequence[str] | None = None,
    older_than_s: float = 0.0,
) -> list[str]:
    """Shipments waiting to be picked at `location` and on no open list, oldest first, locked.

    Rows another transaction is batching right now are skipped, so two pickers (or the
    autopilot) never get the same shipment.
    """
    rows = await conn.fetch(
        "SELECT shipment_id FROM shipments WHERE location = $1 "
        "AND status IN ('created', 'picking') AND pick_list_id IS NULL "
        "AND ($2::text[] IS NULL OR shipment_id = ANY($2::text[])) "
        "AND created_at <= now() - make_interval(secs => $4) "
        "ORDER BY created_at, shipment_id LIMIT $3 FOR UPDATE SKIP LOCKED",
        location,
        list(shipment_ids) if shipment_ids is not None else None,
        limit,
        older_than_s,
    )
    return [row["shipment_id"] for row in rows]


async def shipment_ids_in_status(
    conn: asyncpg.Connection, statuses: Sequence[str], *, shipped_before_s: float | None = None
) -> list[str]:
    rows = await conn.fetch(
        "SELECT shipment_id FROM shipments WHERE status = ANY($1::text[]) "
        "AND ($2::float8 IS NULL OR shipped_at <= now() - make_interval(secs => $2)) "
        "ORDER BY updated_at LIMIT 200",
        list(statuses),
        shipped_before_s,
    )
    return [row["shipment_id"] for row in rows]


async def locations_with_work(conn: asyncpg.Connection, *, older_than_s: float) -> list[str]:
    rows = await conn.fetch(
        "SELECT DISTINCT location FROM shipments WHERE status = 'created' "
        "AND pick_list_id IS NULL AND created_at <= now() - make_interval(secs => $1)",
        older_than_s,
    )
    return sorted(row["location"] for row in rows)


async def open_work(conn: asyncpg.Connection, location: str) -> list[dict[str, Any]]:
    """Shipments at `location` that have not left yet, oldest first, with their lines."""
    rows = await conn.fetch(
        "SELECT s.shipment_id, s.order_id, s.status, s.pick_list_id, s.created_at, "
        "  coalesce(json_agg(json_build_object('line_id', l.line_id, 'sku', l.sku, "
        "    'quantity', l.quantity, 'picked', l.picked) ORDER BY l.line_id) "
        "    FILTER (WHERE l.line_id IS NOT NULL), '[]') AS lines "
        "FROM shipments s LEFT JOIN shipment_lines l USING (shipment_id) "
        "WHERE s.location = $1 AND s.status = ANY($2::text[]) "
        "GROUP BY s.shipment_id ORDER BY s.created_at, s.shipment_id",
        location,
        list(OPEN_STATUSES),
    )
    return [dict(row) for row in rows]


# --- pick lists -----------------------------------------------------------------------------


async def insert_pick_list(
    conn: asyncpg.Connection, pick_list_id: str, pick_list: PickList
) -> None:
    await conn.execute(
        "INSERT INTO pick_lists (pick_list_id, location, state) VALUES ($1, $2, $3)",
        pick_list_id,
        pick_list.location,
        pick_list.to_dict(),
    )


async def load_pick_list(
    conn: asyncpg.Connection, pick_list_id: str, *, for_update: bool = False
) -> tuple[PickList, str, datetime, dict[str, int] | None] | None:
    """(list, status, created_at, units found per sku once confirmed)."""
    row = await conn.fetchrow(
        "SELECT state, status, created_at, found FROM pick_lists WHERE pick_list_id = $1"
        + (" FOR UPDATE" if for_update else ""),
        pick_list_id,
    )
    if row is None:
        return None
    return PickList.from_dict(row["state"]), row["status"], row["created_at"], row["found"]


async def close_pick_list(
    conn: asyncpg.Connection, pick_list_id: str, found: dict[str, int]
) -> None:
    await conn.execute(
        "UPDATE pick_lists SET status = 'confirmed', found = $2, confirmed_at = now() "
        "WHERE pick_list_id = $1",
        pick_list_id,
        found,
    )


# --- bins and variants ----------------------------------------------------------------------


async def bins_for(conn: asyncpg.Connection, location: str, skus: Iterable[str]) -> dict[str, str]:
    """sku → bin at `location`: the sku's own bin, else the location's default ('*')."""
    rows = await conn.fetch(
        "SELECT sku, bin FROM bins WHERE location = $1 AND (sku = ANY($2::text[]) OR sku = '*')",
        location,
        list(skus),
    )
    assigned = {row["sku"]: row["bin"] for row in rows}
    default = assigned.pop("*", None)
    return {sku: assigned.get(sku, default) for sku in skus if sku in assigned or default}


async def set_bin(conn: asyncpg.Connection, location: str, sku: str, bin_code: str) -> None:
    await conn.execute(
        "INSERT INTO bins (location, sku, bin) VALUES ($1, $2, $3) ON CONFLICT (location, sku) "
        "DO UPDATE SET bin = excluded.bin, updated_at = now()",
        location,
        sku,
        bin_code,
    )


async def list_bins(conn: asyncpg.Connection, location: str) -> list[dict[str, str]]:
    rows = await conn.fetch("SELECT sku, bin FROM bins WHERE location = $1 ORDER BY sku", location)
    return [dict(row) for row in rows]


async def variants_for(conn: asyncpg.Connection, skus: Iterable[str]) -> dict[str, VariantSpec]:
    rows = await conn.fetch(
        "SELECT * FROM variants WHERE sku = ANY($1::text[]) AND NOT removed", list(set(skus))
    )
    return {
        row["sku"]: VariantSpec(
            sku=row["sku"],
            weight_grams=row["weight_grams"] or None,
            dimensions=(
                Dimensions(row["length_mm"], row["width_mm"], row["height_mm"])
                if row["length_mm"] and row["width_mm"] and row["height_mm"]
                else None
            ),
        )
        for row in rows
    }


async def bundles_among(
    conn: asyncpg.Connection, skus: Iterable[str]
) -> dict[str, tuple[BundlePart, ...]]:
    """The bundles among `skus`, each with its parts (as the catalog last described them)."""
    rows = await conn.fetch(
        "SELECT sku, bundle_components FROM variants "
        "WHERE sku = ANY($1::text[]) AND bundle_components <> '[]'::jsonb",
        list(set(skus)),
    )
    return {
        row["sku"]: tuple(BundlePart(c["sku"], c["quantity"]) for c in row["bundle_components"])
        for row in rows
    }


async def upsert_variants(conn: asyncpg.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """Rows of (sku, weight, length, width, height, catalog version, removed, bundle components
    [{sku, quantity}]); the newer catalog version wins."""
    await conn.executemany(
        "INSERT INTO variants (sku, weight_grams, length_mm, width_mm, height_mm, "
        "catalog_version, removed, bundle_components) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
        "ON CONFLICT (sku) DO UPDATE SET weight_grams = excluded.weight_grams, "
        "length_mm = excluded.length_mm, width_mm = excluded.width_mm, "
        "height_mm = excluded.height_mm, catalog_version = excluded.catalog_version, "
        "removed = excluded.removed, bundle_components = excluded.bundle_components, "
        "updated_at = now() "
        "WHERE variants.catalog_version < excluded.catalog_version",
        rows,
    )


# --- labels and tracking --------------------------------------------------------------------


async def next_serial(conn: asyncpg.Connection) -> int:
    return await conn.fetchval("SELECT nextval('tracking_serials')")


async def save_label(
    conn: asyncpg.Connection, shipment_id: str, label: Label, amount: Decimal, currency: str
) -> None:
    await conn.execute(
        "INSERT INTO labels (shipment_id, carrier, tracking_number, service_level, media_type, "
        "document, rate_amount, rate_currency) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        shipment_id,
        label.carrier,
        label.tracking_number,
        label.service_level.value,
        label.media_type,
        label.document,
        amount,
        currency,
    )


async def label_rate(conn: asyncpg.Connection, shipment_id: str) -> tuple[Decimal, str] | None:
    """What the shipment's label cost (amount, currency), if a rate was recorded."""
    row = await conn.fetchrow(
        "SELECT rate_amount, rate_currency FROM labels "
        "WHERE shipment_id = $1 AND rate_amount IS NOT NULL",
        shipment_id,
    )
    return None if row is None else (row["rate_amount"], row["rate_currency"])


async def label_document(conn: asyncpg.Connection, shipment_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT tracking_number, media_type, document FROM labels WHERE shipment_id = $1",
        shipment_id,
    )


async def record_tracking_event(
    conn: asyncpg.Connection, shipment_id: str, update: TrackingUpdate, *, applied: bool
) -> None:
    await conn.execute(
        "INSERT INTO tracking_events (shipment_id, tracking_number, status, occurred_at, detail, "
        "applied) VALUES ($1, $2, $3, $4, $5, $6)",
        shipment_id,
        update.tracking_number,
        update.status.value,
        update.occurred_at,
        update.detail,
        applied,
    )


async def tracking_history(conn: asyncpg.Connection, shipment_id: str) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT status, occurred_at, detail, applied, received_at FROM tracking_events "
        "WHERE shipment_id = $1 ORDER BY id",
        shipment_id,
    )
    return [dict(row) for row in rows]


# --- returns --------------------------------------------------------------------------------


async def insert_return(conn: asyncpg.Connection, rma: ReturnAuthorization) -> None:
    await conn.execute(
        "INSERT INTO returns (rma_id, order_id, status, location, state) "
        "VALUES ($1, $2, $3, $4, $5)",
        rma.rma_id,
        rma.order_id,
        rma.status.value,
        rma.location,
        rma.to_dict(),
    )


async def save_return(conn: asyncpg.Connection, rma: ReturnAuthorization) -> None:
    await conn.execute(
        "UPDATE returns SET status = $2, location = $3, state = $4, version = version + 1, "
        "updated_at = now() WHERE rma_id = $1",
        rma.rma_id,
        rma.status.value,
        rma.location,
        rma.to_dict(),
    )


async def load_return(
    conn: asyncpg.Connection, rma_id: str, *, for_update: bool = False
) -> ReturnAuthorization | None:
    row = await conn.fetchrow(
        "SELECT state FROM returns WHERE rma_id = $1" + (" FOR UPDATE" if for_update else ""),
        rma_id,
    )
    return ReturnAuthorization.from_dict(row["state"]) if row else None


async def returns_of_order(conn: asyncpg.Connection, order_id: str) -> list[ReturnAuthorization]:
    rows = await conn.fetch(
        "SELECT state FROM returns WHERE order_id = $1 ORDER BY created_at", order_id
    )
    return [ReturnAuthorization.from_dict(row["state"]) for row in rows]
