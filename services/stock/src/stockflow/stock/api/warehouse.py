"""Warehouse operations over HTTP: locations, transfers between them, stock states, safety stock
and announced receipts. The use cases are in `stockflow.stock.usecases.warehouse`."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, StringConstraints, model_validator

from stockflow.contracts.types import Identifier, LocationCode, Quantity, Sku, Timestamp
from stockflow.runtime.http import require_role as role
from stockflow.runtime.outbox import UnitOfWork
from stockflow.stock import store
from stockflow.stock.api.refusals import write
from stockflow.stock.usecases import queries, warehouse
from stockflow.stock.usecases.warehouse import level_json

router = APIRouter(tags=["warehouse"])
WAREHOUSE = [Depends(role("warehouse", "admin"))]


# ----------------------------------------------------------------------------- locations


class LocationIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    kind: Literal["warehouse", "store"] = "warehouse"
    priority: int = Field(100, ge=0, le=10_000, description="Lower ships first when several can")
    bins: list[Annotated[str, StringConstraints(min_length=1, max_length=64)]] = Field(
        default_factory=list, max_length=10_000
    )


@router.put("/locations/{code}", dependencies=WAREHOUSE)
async def put_location(code: LocationCode, location: LocationIn, request: Request) -> JSONResponse:
    """Create or update a location: its kind, its shipping priority and its bins."""

    async def action(uow: UnitOfWork) -> tuple[int, Any]:
        spec = warehouse.LocationSpec(code=code, **dict(location))
        return 200, await warehouse.put_location(uow, spec)

    return await write(request, action)


@router.get("/locations")
async def locations(request: Request) -> dict[str, Any]:
    """Every location in shipping order (priority, then code)."""
    return await queries.locations(request.app.state.pool)


# ----------------------------------------------------------------------------- transfers


class TransferIn(BaseModel):
    transfer_id: Identifier
    sku: Sku
    source: LocationCode
    destination: LocationCode
    quantity: Quantity
    expected_at: Timestamp | None = Field(None, description="When the destination expects it")

    @model_validator(mode="after")
    def _two_places(self) -> TransferIn:
        if self.source == self.destination:
            raise ValueError("destination must differ from source")
        return self


@router.post("/transfers", status_code=201, dependencies=WAREHOUSE)
async def ship_transfer(transfer: TransferIn, request: Request) -> JSONResponse:
    """Ship units from `source` towards `destination`: they leave the source's on hand and are
    in transit (the destination's incoming) until received."""

    async def action(uow: UnitOfWork) -> tuple[int, Any]:
        shipped = warehouse.Transfer(**dict(transfer))
        return 201, await warehouse.ship_transfer(uow, shipped)

    return await write(request, action)


class TransferReceipt(BaseModel):
    quantity: Quantity | None = Field(None, description="Units received; default all in transit")


@router.post("/transfers/{transfer_id}/receive", dependencies=WAREHOUSE)
async def receive_transfer(
    transfer_id: str, receipt: TransferReceipt, request: Request
) -> JSONResponse:
    """Receive a transfer at its destination, in full or in part."""

    async def action(uow: UnitOfWork) -> tuple[int, Any]:
        return 200, await warehouse.receive_transfer(uow, transfer_id, receipt.quantity)

    return await write(request, action)


@router.get("/transfers")
async def transfers(
    request: Request,
    sku: str | None = None,
    location: str | None = Query(None, description="Source or destination"),
    in_transit: bool | None = None,
    limit: int = Query(100, ge=1, le=1000),
) -> dict[str, Any]:
    """Transfers, newest first."""
    where = store.TransferFilter(sku, location, in_transit, limit)
    return await queries.transfers(request.app.state.pool, where)


# ----------------------------------------------------------------------------- states

State = Literal["sellable", "damaged", "quality_control", "written_off"]


class StateChange(BaseModel):
    change_id: Identifier
    sku: Sku
    location: LocationCode
    quantity: Quantity
    from_state: State
    to_state: State
    reason: str = Field(min_length=1, max_length=200)

    @model_validator(mode="after")
    def _known_move(self) -> StateChange:
        if (self.from_state, self.to_state) not in warehouse.STATE_MOVES:
            raise ValueError(
                f"to_state: cannot move units from {self.from_state} to {self.to_state}"
            )
        return self


@router.post("/states", dependencies=WAREHOUSE)
async def change_state(change: StateChange, request: Request) -> JSONResponse:
    """Move units between sellable, damaged and quality control, or write them off."""

    async def action(uow: UnitOfWork) -> tuple[int, Any]:
        level = await warehouse.change_state(uow, warehouse.StateMove(**dict(change)))
        return 200, {"change_id": change.change_id, "level": level_json(level)}

    return await write(request, action)


class SafetyStockIn(BaseModel):
    sku: Sku
    location: LocationCode
    safety_stock: int = Field(ge=0, le=1_000_000)


@router.put("/safety-stock", dependencies=WAREHOUSE)
async def set_safety_stock(target: SafetyStockIn, request: Request) -> JSONResponse:
    """Hold `safety_stock` units back from sale at a location (refused if they are sold)."""

    async def action(uow: UnitOfWork) -> tuple[int, Any]:
        where = (target.sku, target.location)
        delta, level = await warehouse.set_safety_stock(uow, where, target.safety_stock)
        return 200, {"changed_by": delta, "level": level_json(level)}

    return await write(request, action)


# ----------------------------------------------------------------------------- announced receipts


class ExpectedReceipt(BaseModel):
    receipt_id: Identifier
    sku: Sku
    location: LocationCode
    quantity: Quantity
    expected_at: Timestamp


@router.post("/incoming", status_code=201, dependencies=WAREHOUSE)
async def announce_receipt(expected: ExpectedReceipt, request: Request) -> JSONResponse:
    """Announce goods on their way from a supplier; backorders take their dates from it. The
    receipt with the same `receipt_id` closes it."""

    async def action(uow: UnitOfWork) -> tuple[int, Any]:
        await warehouse.announce_receipt(uow, warehouse.AnnouncedReceipt(**dict(expected)))
        return 201, expected.model_dump(mode="json")

    return await write(request, action)


@router.get("/incoming")
async def incoming(request: Request, sku: str | None = None) -> dict[str, Any]:
    """Stock still due: announced receipts and transfers in transit, soonest first."""
    return await queries.incoming(request.app.state.pool, sku)
