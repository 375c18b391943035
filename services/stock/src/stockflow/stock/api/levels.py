"""HTTP API of the stock service: what a storefront and a warehouse ask, and admin writes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from stockflow.contracts.types import LocationCode, NonNegativeMoney, Quantity, Sku
from stockflow.runtime.http import require_role
from stockflow.runtime.outbox import UnitOfWork
from stockflow.stock import store
from stockflow.stock.api.refusals import refused, write
from stockflow.stock.domain import InsufficientStock, StaleCount
from stockflow.stock.usecases import queries, warehouse
from stockflow.stock.usecases.refusals import NotFound

router = APIRouter(tags=["stock"])


@router.get("/levels/{sku}")
async def levels(sku: str, request: Request) -> dict[str, Any]:
    """Levels of one SKU per location, and their totals."""
    return await queries.levels_of_sku(request.app.state.pool, sku)


class AvailabilityQuery(BaseModel):
    skus: list[Sku] = Field(min_length=1, max_length=500)


@router.post("/availability")
async def availability(query: AvailabilityQuery, request: Request) -> dict[str, Any]:
    """Sellable units per SKU over all locations; a bundle's from its components."""
    async with request.app.state.pool.acquire() as conn:
        return await queries.availability(conn, query.skus)


def movement_filter(
    sku: str | None = None,
    location: str | None = None,
    kind: str | None = None,
    order_id: str | None = None,
    after: int = Query(0, ge=0),
    limit: int = Query(100, ge=1, le=1000),
) -> store.MovementFilter:
    return store.MovementFilter(sku, location, kind, order_id, after, limit)


@router.get("/movements")
async def movements(
    request: Request, where: store.MovementFilter = Depends(movement_filter)
) -> dict[str, Any]:
    """The ledger, oldest first, with filters; page with `after` = the last `id` seen."""
    return await queries.movements(request.app.state.pool, where)


@router.get("/reservations/{order_id}")
async def reservations(order_id: str, request: Request) -> dict[str, Any]:
    """An order's reservation: status, what is held where, and its backorders."""
    try:
        return await queries.reservation(request.app.state.pool, order_id)
    except NotFound as exc:
        raise refused(exc) from exc


class ReceiptIn(BaseModel):
    receipt_id: str = Field(min_length=1, max_length=128)
    sku: Sku
    location: LocationCode
    quantity: Quantity
    unit_cost: NonNegativeMoney
    currency: str = Field(pattern=r"^[A-Z]{3}$")


@router.post("/receipts", status_code=201, dependencies=[Depends(require_role("warehouse"))])
async def receive(receipt: ReceiptIn, request: Request) -> JSONResponse:
    """Goods in through the API (the same use case as warehouse.goods.received.v1), once per
    `receipt_id`: the same receipt again answers 200 with the first result and changes nothing;
    the same `receipt_id` with other values is refused (409)."""

    async def action(uow: UnitOfWork) -> tuple[int, Any]:
        goods = warehouse.GoodsReceipt(**dict(receipt), cause=f"http:{receipt.receipt_id}")
        applied = await warehouse.receive_goods(uow, goods)
        return 200 if applied.again else 201, applied.result

    return await write(request, action)


class CountIn(BaseModel):
    sku: Sku
    location: LocationCode
    expected: int = Field(ge=0, description="What the counter was told is on hand")
    counted: int = Field(ge=0)
    count_id: str = Field(min_length=1, max_length=128)


@router.post("/adjustments", dependencies=[Depends(require_role("warehouse"))])
async def cycle_count(count: CountIn, request: Request) -> JSONResponse:
    """A cycle count, once per `count_id`: refused (409) when stock moved while counting, else
    the difference. The same count again gets the first answer; the same `count_id` with other
    values is refused (409)."""

    async def action(uow: UnitOfWork) -> tuple[int, Any]:
        try:
            applied = await warehouse.count_stock(uow, warehouse.CycleCount(**dict(count)))
        except StaleCount as exc:
            raise HTTPException(409, f"expected: stale count, {exc}") from exc
        except InsufficientStock as exc:
            raise HTTPException(409, f"counted: {exc} (units are reserved)") from exc
        return 200, applied.result

    return await write(request, action)


class ReorderPointIn(BaseModel):
    sku: Sku
    location: LocationCode
    reorder_point: int = Field(ge=0)


@router.put("/reorder-points", dependencies=[Depends(require_role("warehouse"))])
async def set_reorder_point(point: ReorderPointIn, request: Request) -> JSONResponse:
    """Where low-stock alerts start for a (sku, location)."""

    async def action(uow: UnitOfWork) -> tuple[int, Any]:
        await warehouse.set_reorder_point(uow, (point.sku, point.location), point.reorder_point)
        return 200, point.model_dump() | {"set_at": datetime.now(UTC).isoformat()}

    return await write(request, action)
