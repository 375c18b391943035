"""HTTP API of the stock service: what a storefront and a warehouse ask, and admin writes."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, Field

from stockflow.contracts.types import LocationCode, NonNegativeMoney, Quantity, Sku
from stockflow.runtime.http import idempotent_write, require_role
from stockflow.stock.domain import BUCKETS, InsufficientStock, Movement, MovementKind
from stockflow.stock.handlers import (
    Arrivals,
    allocate_waiting_backorders,
    close_announced_receipt,
    load_skus,
)
from stockflow.stock.ledger import LevelBook

router = APIRouter(tags=["stock"])


def _level_json(row) -> dict:
    level = {b: row[b] for b in BUCKETS}
    level["available"] = (
        row["on_hand"]
        - row["reserved"]
        - row["damaged"]
        - row["quality_control"]
        - row["safety_stock"]
    )
    return {
        "location": row["location"],
        **level,
        "reorder_point": row["reorder_point"],
        "version": row["version"],
    }


@router.get("/levels/{sku}")
async def levels(sku: str, request: Request) -> dict:
    """Levels of one SKU per location, and their totals."""
    rows = await request.app.state.pool.fetch(
        "SELECT * FROM levels WHERE sku = $1 ORDER BY location", sku
    )
    locations = [_level_json(row) for row in rows]
    totals = {key: sum(loc[key] for loc in locations) for key in (*BUCKETS, "available")}
    return {"sku": sku, "locations": locations, "totals": totals}


class AvailabilityQuery(BaseModel):
    skus: list[Sku] = Field(min_length=1, max_length=500)


@router.post("/availability")
async def availability(query: AvailabilityQuery, request: Request) -> dict:
    """Sellable units per SKU over all locations; a bundle's from its components."""
    pool = request.app.state.pool
    async with pool.acquire() as conn:
        skus = await load_skus(conn, query.skus)
        wanted = set(query.skus) | {c.sku for s in skus.values() for c in s.components}
        rows = await conn.fetch(
            "SELECT sku, location, on_hand - reserved - damaged - quality_control - safety_stock"
            " AS available FROM levels WHERE sku = ANY($1::text[])",
            list(wanted),
        )
    by_key = {(r["sku"], r["location"]): r["available"] for r in rows}
    locations = {loc for _, loc in by_key}
    result = {}
    for sku in query.skus:
        info = skus.get(sku)
        if info and info.components:
            result[sku] = sum(
                min(by_key.get((c.sku, loc), 0) // c.quantity for c in info.components)
                for loc in locations
            )
        elif info and not info.tracked:
            result[sku] = None  # not stock-tracked: always sellable
        else:
            result[sku] = sum(v for (s, _), v in by_key.items() if s == sku)
    return {"availability": result, "known": sorted(skus)}


@router.get("/movements")
async def movements(
    request: Request,
    sku: str | None = None,
    location: str | None = None,
    kind: str | None = None,
    order_id: str | None = None,
    after: int = Query(0, ge=0),
    limit: int = Query(100, ge=1, le=1000),
) -> dict:
    """The ledger, oldest first, with filters; page with `after` = the last `id` seen."""
    rows = await request.app.state.pool.fetch(
        """SELECT id, movement_id, sku, location, kind, quantity, reason, reference_type,
                  reference_id, order_id, unit_cost, currency, cause_event_id, occurred_at
           FROM movements WHERE id > $1 AND ($2::text IS NULL OR sku = $2)
             AND ($3::text IS NULL OR location = $3) AND ($4::text IS NULL OR kind = $4)
             AND ($5::text IS NULL OR order_id = $5)
           ORDER BY id LIMIT $6""",
        after,
        sku,
        location,
        kind,
        order_id,
        limit,
    )
    items = [
        dict(r)
        | {
            "movement_id": str(r["movement_id"]),
            "unit_cost": None if r["unit_cost"] is None else str(r["unit_cost"]),
        }
        for r in rows
    ]
    return {"items": items, "next_after": items[-1]["id"] if len(items) == limit else None}


@router.get("/reservations/{order_id}")
async def reservations(order_id: str, request: Request) -> dict:
    """An order's reservation: status, what is held where, and its backorders."""
    pool = request.app.state.pool
    header = await pool.fetchrow(
        "SELECT status, reply_type, reply FROM order_reservations WHERE order_id = $1", order_id
    )
    if header is None:
        raise HTTPException(404, f"no reservation for order {order_id}")
    lines = await pool.fetch(
        "SELECT line_id, sku, location, quantity AS held, committed, released FROM reservations"
        " WHERE order_id = $1 ORDER BY line_id, sku, location",
        order_id,
    )
    backorders = await pool.fetch(
        "SELECT line_id, sku, location, quantity, open, priority FROM backorders "
        "WHERE order_id = $1 ORDER BY id",
        order_id,
    )
    async with pool.acquire() as conn:
        arrivals = await Arrivals.load(conn, {r["sku"] for r in backorders if r["open"]})
    expected = {
        (b.line_id, b.sku): date
        for sku in arrivals.incoming
        for b, date in arrivals.dates(sku).items()
        if b.order_id == order_id
    }
    return {
        "order_id": order_id,
        "status": header["status"],
        "reply": header["reply"],
        "lines": [dict(r) for r in lines],
        "backorders": [
            dict(r) | {"expected_at": expected.get((r["line_id"], r["sku"]))} for r in backorders
        ],
    }


class ReceiptIn(BaseModel):
    receipt_id: str = Field(min_length=1, max_length=128)
    sku: Sku
    location: LocationCode
    quantity: Quantity
    unit_cost: NonNegativeMoney
    currency: str = Field(pattern=r"^[A-Z]{3}$")


@router.post("/receipts", status_code=201, dependencies=[Depends(require_role("warehouse"))])
async def receive(receipt: ReceiptIn, request: Request):
    """Goods in through the API (the same effect as warehouse.goods.received.v1)."""

    async def action(uow):
        await uow.conn.execute(
            "INSERT INTO locations (code, name) VALUES ($1, $1) ON CONFLICT DO NOTHING",
            receipt.location,
        )
        book = await LevelBook.load(uow.conn, [receipt.sku])
        cause = f"http:{receipt.receipt_id}"
        book.move(
            Movement(
                MovementKind.RECEIPT,
                receipt.sku,
                receipt.location,
                receipt.quantity,
                reference=receipt.receipt_id,
            ),
            cause_event_id=cause,
            reference_type="receipt",
            unit_cost=receipt.unit_cost,
            currency=receipt.currency,
        )
        await close_announced_receipt(uow.conn, receipt.receipt_id)
        await allocate_waiting_backorders(uow, book, receipt.sku, receipt.location, cause)
        await book.flush(uow)
        return 201, {
            "receipt_id": receipt.receipt_id,
            "level": book.level(receipt.sku, receipt.location).__dict__,
        }

    return await idempotent_write(request, action)


class CountIn(BaseModel):
    sku: Sku
    location: LocationCode
    expected: int = Field(ge=0, description="What the counter was told is on hand")
    counted: int = Field(ge=0)
    count_id: str = Field(min_length=1, max_length=128)


@router.post("/adjustments", dependencies=[Depends(require_role("warehouse"))])
async def cycle_count(count: CountIn, request: Request):
    """A cycle count: refused (409) when stock moved while counting, else the difference."""
    from stockflow.stock.domain import StaleCount, count_adjustment

    async def action(uow):
        book = await LevelBook.load(uow.conn, [count.sku])
        level = book.level(count.sku, count.location)
        try:
            delta = count_adjustment(count.expected, count.counted, level.on_hand)
            if delta:
                book.move(
                    Movement(
                        MovementKind.ADJUSTMENT,
                        count.sku,
                        count.location,
                        delta,
                        reason="cycle_count",
                        reference=count.count_id,
                    ),
                    cause_event_id=f"http:{count.count_id}",
                    reference_type="count",
                )
        except StaleCount as exc:
            raise HTTPException(409, f"expected: stale count, {exc}") from exc
        except InsufficientStock as exc:
            raise HTTPException(409, f"counted: {exc} (units are reserved)") from exc
        await book.flush(uow)
        return 200, {"adjusted_by": delta, "on_hand": book.level(count.sku, count.location).on_hand}

    return await idempotent_write(request, action)


class ReorderPointIn(BaseModel):
    sku: Sku
    location: LocationCode
    reorder_point: int = Field(ge=0)


@router.put("/reorder-points", dependencies=[Depends(require_role("warehouse"))])
async def set_reorder_point(point: ReorderPointIn, request: Request):
    """Where low-stock alerts start for a (sku, location)."""

    async def action(uow):
        await uow.conn.execute(
            "INSERT INTO levels (sku, location, reorder_point) VALUES ($1, $2, $3) "
            "ON CONFLICT (sku, location) DO UPDATE SET reorder_point = EXCLUDED.reorder_point",
            point.sku,
            point.location,
            point.reorder_point,
        )
        return 200, point.model_dump() | {"set_at": datetime.now(UTC).isoformat()}

    return await idempotent_write(request, action)
