"""The warehouse's HTTP API: open work, pick lists, pack, ship, labels, tracking, returns.

Writes need the `warehouse` role and go through `idempotent_write` (one transaction, an
`Idempotency-Key` replays the first answer). Refusals carry the domain's message: 404 for
something unknown, 409 for a step the current state does not allow, 422 for a request the
rules refuse (quantities, missing measurements, no carrier).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field, StringConstraints

from stockflow.fulfillment import domain, store, usecases
from stockflow.fulfillment.domain import CancelRefused, FulfillmentError, IllegalShipmentStep
from stockflow.fulfillment.settings import FulfillmentSettings
from stockflow.runtime.http import idempotent_write, require_role
from stockflow.runtime.outbox import UnitOfWork

router = APIRouter(tags=["fulfillment"])
WAREHOUSE = Depends(require_role("warehouse"))
READER = Depends(require_role("warehouse", "read"))

Code = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Count = Annotated[int, Field(ge=0, le=1_000_000)]
Units = Annotated[int, Field(gt=0, le=1_000_000)]


def fulfillment_settings(request: Request) -> FulfillmentSettings:
    """Read once per process from STOCKFLOW_FULFILLMENT_* variables."""
    state = request.app.state
    if getattr(state, "fulfillment_settings", None) is None:
        state.fulfillment_settings = FulfillmentSettings()
    return state.fulfillment_settings


async def _write(
    request: Request, action: Callable[[UnitOfWork], Awaitable[tuple[int, Any]]]
) -> JSONResponse:
    async def guarded(uow: UnitOfWork) -> tuple[int, Any]:
        try:
            return await action(uow)
        except usecases.NotFound as exc:
            raise HTTPException(404, str(exc)) from exc
        except (IllegalShipmentStep, CancelRefused, usecases.PickListClosed) as exc:
            raise HTTPException(409, str(exc)) from exc
        except FulfillmentError as exc:
            raise HTTPException(422, str(exc)) from exc

    return await idempotent_write(request, guarded)


def shipment_view(shipment: domain.Shipment) -> dict[str, Any]:
    view = shipment.to_dict()
    view["label_url"] = usecases.label_ref(shipment.shipment_id) if shipment.label else None
    view["short_lines"] = [line.to_dict() for line in shipment.short_lines]
    return view


def pick_list_view(
    pick_list_id: str, pick_list: domain.PickList, status: str = "open", **extra: Any
) -> dict[str, Any]:
    data = pick_list.to_dict()
    for number, line in enumerate(data["lines"], start=1):
        line["step"] = number
    return {"pick_list_id": pick_list_id, "status": status, **data, **extra}


# --- reads ----------------------------------------------------------------------------------


@router.get("/work", dependencies=[READER])
async def open_work(request: Request, location: Code = Query(...)) -> dict[str, Any]:
    """Shipments at `location` that have not left yet, grouped by status, oldest first."""
    async with request.app.state.pool.acquire() as conn:
        rows = await store.open_work(conn, location)
    by_status: dict[str, list[dict[str, Any]]] = {status: [] for status in store.OPEN_STATUSES}
    for row in rows:
        by_status[row.pop("status")].append(row)
    return {
        "location": location,
        "counts": {status: len(items) for status, items in by_status.items()},
        "by_status": by_status,
    }


@router.get("/shipments/{shipment_id}", dependencies=[READER])
async def get_shipment(request: Request, shipment_id: str) -> dict[str, Any]:
    async with request.app.state.pool.acquire() as conn:
        shipment = await store.load_shipment(conn, shipment_id)
        if shipment is None:
            raise HTTPException(404, f"There is no shipment {shipment_id}.")
        tracking = await store.tracking_history(conn, shipment_id)
    return {**shipment_view(shipment), "tracking": tracking}


@router.get("/orders/{order_id}/shipments", dependencies=[READER])
async def order_shipments(request: Request, order_id: str) -> dict[str, Any]:
    async with request.app.state.pool.acquire() as conn:
        shipments = await store.shipments_of_order(conn, order_id)
        returns = await store.returns_of_order(conn, order_id)
    return {
        "order_id": order_id,
        "shipments": [shipment_view(s) for s in shipments],
        "returns": [r.to_dict() for r in returns],
    }


@router.get("/shipments/{shipment_id}/label.pdf", dependencies=[READER])
async def label_pdf(request: Request, shipment_id: str) -> Response:
    """The printable 4x6-inch label (one page per package)."""
    async with request.app.state.pool.acquire() as conn:
        row = await store.label_document(conn, shipment_id)
    if row is None:
        raise HTTPException(404, f"Shipment {shipment_id} has no label yet; ship it first.")
    return Response(
        row["document"],
        media_type=row["media_type"],
        headers={"Content-Disposition": f'inline; filename="{shipment_id}.pdf"'},
    )


@router.get("/pick-lists/{pick_list_id}", dependencies=[READER])
async def get_pick_list(request: Request, pick_list_id: str) -> dict[str, Any]:
    """The list's lines in bin-walk order, each with the shipments its units go to."""
    async with request.app.state.pool.acquire() as conn:
        loaded = await store.load_pick_list(conn, pick_list_id)
    if loaded is None:
        raise HTTPException(404, f"There is no pick list {pick_list_id}.")
    pick_list, status, created_at, found = loaded
    return pick_list_view(pick_list_id, pick_list, status, created_at=created_at, found=found)


@router.get("/returns/{rma_id}", dependencies=[READER])
async def get_return(request: Request, rma_id: str) -> dict[str, Any]:
    async with request.app.state.pool.acquire() as conn:
        rma = await store.load_return(conn, rma_id)
    if rma is None:
        raise HTTPException(404, f"There is no return {rma_id}.")
    return rma.to_dict()


@router.get("/bins", dependencies=[READER])
async def list_bins(request: Request, location: Code = Query(...)) -> dict[str, Any]:
    async with request.app.state.pool.acquire() as conn:
        return {"location": location, "bins": await store.list_bins(conn, location)}


# --- writes ---------------------------------------------------------------------------------


class BinAssignment(BaseModel):
    location: Code
    sku: Annotated[str, StringConstraints(min_length=1, max_length=64)] = Field(
        description="The sku, or '*' for the location's default bin."
    )
    bin: Code


@router.put("/bins", dependencies=[WAREHOUSE])
async def set_bin(request: Request, body: BinAssignment) -> JSONResponse:
    """Say where a sku lives in a location (bin codes like A-03-2 walk in aisle order)."""

    async def action(uow: UnitOfWork) -> tuple[int, Any]:
        await store.set_bin(uow.conn, body.location, body.sku, body.bin)
        return 200, body.model_dump()

    return await _write(request, action)


class NewPickList(BaseModel):
    location: Code
    shipment_ids: list[str] | None = Field(
        default=None, max_length=200, description="Which shipments; default the oldest waiting."
    )
    max_shipments: int = Field(default=20, ge=1, le=200)


@router.post("/pick-lists", dependencies=[WAREHOUSE], status_code=201)
async def create_pick_list(request: Request, body: NewPickList) -> JSONResponse:
    """Batch waiting shipments of one location into one walk through the aisles."""

    async def action(uow: UnitOfWork) -> tuple[int, Any]:
        created = await usecases.create_pick_list(
            uow, body.location, shipment_ids=body.shipment_ids, max_shipments=body.max_shipments
        )
        return 201, pick_list_view(created.pick_list_id, created.pick_list)

    return await _write(request, action)


class PickCounts(BaseModel):
    found: dict[str, Count] = Field(description="Units found per sku.")


@router.post("/pick-lists/{pick_list_id}/confirm", dependencies=[WAREHOUSE])
async def confirm_pick_list(request: Request, pick_list_id: str, body: PickCounts) -> JSONResponse:
    """Units found per sku; a short bin raises a stock discrepancy and holds its shipment."""

    async def action(uow: UnitOfWork) -> tuple[int, Any]:
        outcome = await usecases.confirm_pick_list(uow, pick_list_id, body.found)
        return 200, {
            "pick_list_id": pick_list_id,
            "picked": outcome.picked,
            "on_hold": outcome.on_hold,
            "skipped": outcome.skipped,
            "discrepancies": [
                {"sku": d.sku, "bin": d.bin, "expected": d.expected, "found": d.found}
                for d in outcome.discrepancies
            ],
        }

    return await _write(request, action)


@router.post("/shipments/{shipment_id}/repick", dependencies=[WAREHOUSE])
async def repick(request: Request, shipment_id: str) -> JSONResponse:
    """A held shipment goes back to the pickers (the missing units turned up)."""

    async def action(uow: UnitOfWork) -> tuple[int, Any]:
        return 200, shipment_view(await usecases.repick(uow, shipment_id))

    return await _write(request, action)


@router.post("/shipments/{shipment_id}/ship-picked", dependencies=[WAREHOUSE])
async def ship_what_was_picked(request: Request, shipment_id: str) -> JSONResponse:
    """A held shipment continues with what was picked; the order re-plans the rest."""

    async def action(uow: UnitOfWork) -> tuple[int, Any]:
        return 200, shipment_view(await usecases.ship_what_was_picked(uow, shipment_id))

    return await _write(request, action)


class DimensionsIn(BaseModel):
    length: Annotated[int, Field(gt=0, le=100_000)]
    width: Annotated[int, Field(gt=0, le=100_000)]
    height: Annotated[int, Field(gt=0, le=100_000)]


class PackageIn(BaseModel):
    weight_grams: Annotated[int, Field(gt=0, le=1_000_000)] | None = None
    dimensions_mm: DimensionsIn | None = None


class PackRequest(BaseModel):
    packages: list[PackageIn] = Field(
        default_factory=list,
        max_length=50,
        description="As measured; empty: one package from the catalog's weights and sizes.",
    )


@router.post("/shipments/{shipment_id}/pack", dependencies=[WAREHOUSE])
async def pack(request: Request, shipment_id: str, body: PackRequest | None = None) -> JSONResponse:
    specs = [
        usecases.PackageSpec(
            p.weight_grams,
            domain.Dimensions(p.dimensions_mm.length, p.dimensions_mm.width, p.dimensions_mm.height)
            if p.dimensions_mm
            else None,
        )
        for p in (body.packages if body else [])
    ]

    async def action(uow: UnitOfWork) -> tuple[int, Any]:
        return 200, shipment_view(await usecases.pack(uow, shipment_id, specs))

    return await _write(request, action)


@router.post("/shipments/{shipment_id}/ship", dependencies=[WAREHOUSE])
async def ship(request: Request, shipment_id: str) -> JSONResponse:
    """Rate shopping → label → shipped; stock commits the reservation on the event."""
    settings = fulfillment_settings(request)

    async def action(uow: UnitOfWork) -> tuple[int, Any]:
        shipment = await usecases.ship(uow, shipment_id, settings, datetime.now(UTC))
        return 200, shipment_view(shipment)

    return await _write(request, action)


class CancelRequest(BaseModel):
    reason: Annotated[str, StringConstraints(min_length=1, max_length=200)] = "cancelled"


@router.post("/shipments/{shipment_id}/cancel", dependencies=[WAREHOUSE])
async def cancel(
    request: Request, shipment_id: str, body: CancelRequest | None = None
) -> JSONResponse:
    """Before shipping only; afterwards 409 with the reason (authorize a return instead)."""
    reason = body.reason if body else "cancelled"

    async def action(uow: UnitOfWork) -> tuple[int, Any]:
        return 200, shipment_view(await usecases.cancel_shipment(uow, shipment_id, reason))

    return await _write(request, action)


class TrackingScan(BaseModel):
    tracking_number: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    status: Literal["in_transit", "delivered", "exception"]
    occurred_at: datetime | None = Field(default=None, description="Default: now.")
    detail: Annotated[str, StringConstraints(max_length=2000)] = ""


@router.post("/tracking", dependencies=[WAREHOUSE])
async def tracking_webhook(request: Request, body: TrackingScan) -> JSONResponse:
    """A carrier's scan: in transit, delivered or exception (the order follows the event)."""
    occurred_at = body.occurred_at or datetime.now(UTC)
    if occurred_at.tzinfo is None:
        raise HTTPException(422, "occurred_at needs a time zone offset, e.g. 2025-03-01T09:00:00Z")
    update = usecases.tracking_update(body.tracking_number, body.status, occurred_at, body.detail)

    async def action(uow: UnitOfWork) -> tuple[int, Any]:
        return 200, shipment_view(await usecases.record_tracking(uow, update))

    return await _write(request, action)


class ReturnLineIn(BaseModel):
    line_id: Code
    quantity: Units


class ReturnRequest(BaseModel):
    order_id: Code
    lines: list[ReturnLineIn] = Field(min_length=1, max_length=100)
    reason: Annotated[str, StringConstraints(min_length=1, max_length=500)] = "customer return"


@router.post("/returns", dependencies=[WAREHOUSE], status_code=201)
async def authorize_return(request: Request, body: ReturnRequest) -> JSONResponse:
    """Authorize returning shipped units (at most shipped minus already returned)."""
    requested: dict[str, int] = {}
    for line in body.lines:
        requested[line.line_id] = requested.get(line.line_id, 0) + line.quantity

    async def action(uow: UnitOfWork) -> tuple[int, Any]:
        rma = await usecases.authorize_return(uow, body.order_id, requested, body.reason)
        return 201, rma.to_dict()

    return await _write(request, action)


class ReceiveRequest(BaseModel):
    location: Code | None = Field(
        default=None, description="Default: where the goods shipped from."
    )
    quantities: dict[str, Count] | None = Field(
        default=None, description="Units that arrived per line_id; default all authorized."
    )


@router.post("/returns/{rma_id}/receive", dependencies=[WAREHOUSE])
async def receive_return(
    request: Request, rma_id: str, body: ReceiveRequest | None = None
) -> JSONResponse:
    body = body or ReceiveRequest()

    async def action(uow: UnitOfWork) -> tuple[int, Any]:
        rma = await usecases.receive_return(
            uow, rma_id, datetime.now(UTC), location=body.location, quantities=body.quantities
        )
        return 200, rma.to_dict()

    return await _write(request, action)


class InspectionIn(BaseModel):
    line_id: Code
    quantity: Units
    condition: Literal["restock", "write_off"]


class InspectRequest(BaseModel):
    lines: list[InspectionIn] = Field(min_length=1, max_length=200)


@router.post("/returns/{rma_id}/inspect", dependencies=[WAREHOUSE])
async def inspect_return(request: Request, rma_id: str, body: InspectRequest) -> JSONResponse:
    """Restock or write off every received unit → fulfillment.return.received.v1."""
    inspections = [
        domain.Inspection(line.line_id, line.quantity, domain.ReturnCondition(line.condition))
        for line in body.lines
    ]

    async def action(uow: UnitOfWork) -> tuple[int, Any]:
        return 200, (await usecases.inspect_return(uow, rma_id, inspections)).to_dict()

    return await _write(request, action)
