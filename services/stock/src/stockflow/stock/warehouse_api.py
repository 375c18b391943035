"""Warehouse operations over HTTP: transfers between locations, stock states, safety stock and
announced receipts. Every change is a ledger movement made through `LevelBook`; units that become
sellable go to waiting backorders first."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, Field, StringConstraints, model_validator

from stockflow.contracts.types import Identifier, LocationCode, Quantity, Sku, Timestamp
from stockflow.runtime.http import idempotent_write
from stockflow.runtime.http import require_role as role
from stockflow.stock.domain import InsufficientStock, Movement, MovementKind
from stockflow.stock.handlers import allocate_waiting_backorders
from stockflow.stock.ledger import LevelBook

router = APIRouter(tags=["warehouse"])
WAREHOUSE = [Depends(role("warehouse", "admin"))]


def _refused(field: str, exc: InsufficientStock) -> HTTPException:
    return HTTPException(409, f"{field}: {exc}")


async def _ensure_location(conn, code: str) -> None:
    await conn.execute(
        "INSERT INTO locations (code, name) VALUES ($1, $1) ON CONFLICT DO NOTHING", code
    )


# ----------------------------------------------------------------------------- locations


class LocationIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    kind: Literal["warehouse", "store"] = "warehouse"
    priority: int = Field(100, ge=0, le=10_000, description="Lower ships first when several can")
    bins: list[Annotated[str, StringConstraints(min_length=1, max_length=64)]] = Field(
        default_factory=list, max_length=10_000
    )


@router.put("/locations/{code}", dependencies=WAREHOUSE)
async def put_location(code: LocationCode, location: LocationIn, request: Request):
    """Create or update a location: its kind, its shipping priority and its bins."""

    async def action(uow):
        row = await uow.conn.fetchrow(
            "INSERT INTO locations (code, name, kind, priority, bins) VALUES ($1, $2, $3, $4, $5)"
            " ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name, kind = EXCLUDED.kind,"
            " priority = EXCLUDED.priority, bins = EXCLUDED.bins"
            " RETURNING code, name, kind, priority, bins",
            code,
            location.name,
            location.kind,
            location.priority,
            sorted(set(location.bins)),
        )
        return 200, dict(row)

    return await idempotent_write(request, action)


@router.get("/locations")
async def locations(request: Request) -> dict:
    """Every location in shipping order (priority, then code)."""
    rows = await request.app.state.pool.fetch(
        "SELECT code, name, kind, priority, bins FROM locations ORDER BY priority, code"
    )
    return {"items": [dict(row) for row in rows]}


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


def _transfer_json(row) -> dict:
    return {
        **dict(row),
        "in_transit": row["quantity"] - row["received"],
        "status": "received" if row["received"] == row["quantity"] else "in_transit",
    }


@router.post("/transfers", status_code=201, dependencies=WAREHOUSE)
async def ship_transfer(transfer: TransferIn, request: Request):
    """Ship units from `source` towards `destination`: they leave the source's on hand and are
    in transit (the destination's incoming) until received."""

    async def action(uow):
        conn = uow.conn
        await _ensure_location(conn, transfer.destination)
        book = await LevelBook.load(conn, [transfer.sku])
        exists = await conn.fetchval(
            "SELECT 1 FROM transfers WHERE transfer_id = $1", transfer.transfer_id
        )
        if exists:
            raise HTTPException(409, f"transfer_id: {transfer.transfer_id} already exists")
        try:
            book.move(
                Movement(
                    MovementKind.TRANSFER_OUT,
                    transfer.sku,
                    transfer.source,
                    transfer.quantity,
                    reference=transfer.transfer_id,
                    destination=transfer.destination,
                ),
                cause_event_id=f"http:transfer:{transfer.transfer_id}",
                reference_type="transfer",
            )
        except InsufficientStock as exc:
            raise _refused("quantity", exc) from exc
        row = await conn.fetchrow(
            "INSERT INTO transfers (transfer_id, sku, source, destination, quantity, expected_at)"
            " VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
            transfer.transfer_id,
            transfer.sku,
            transfer.source,
            transfer.destination,
            transfer.quantity,
            transfer.expected_at,
        )
        await conn.execute(
            "INSERT INTO incoming (sku, location, quantity, expected_at, reference) "
            "VALUES ($1, $2, $3, $4, $5)",
            transfer.sku,
            transfer.destination,
            transfer.quantity,
            transfer.expected_at,
            f"transfer:{transfer.transfer_id}",
        )
        await book.flush(uow)
        return 201, _transfer_json(row)

    return await idempotent_write(request, action)


class TransferReceipt(BaseModel):
    quantity: Quantity | None = Field(None, description="Units received; default all in transit")


@router.post("/transfers/{transfer_id}/receive", dependencies=WAREHOUSE)
async def receive_transfer(transfer_id: str, receipt: TransferReceipt, request: Request):
    """Receive a transfer at its destination, in full or in part."""

    async def action(uow):
        conn = uow.conn
        row = await conn.fetchrow(
            "SELECT * FROM transfers WHERE transfer_id = $1 FOR UPDATE", transfer_id
        )
        if row is None:
            raise HTTPException(404, f"transfer_id: no transfer {transfer_id}")
        in_transit = row["quantity"] - row["received"]
        quantity = receipt.quantity or in_transit
        if in_transit == 0 or quantity > in_transit:
            raise HTTPException(409, f"quantity: {in_transit} in transit, {quantity} received")
        sku, destination = row["sku"], row["destination"]
        book = await LevelBook.load(conn, [sku])
        cause = f"http:transfer:{transfer_id}:received:{row['received'] + quantity}"
        book.move(
            Movement(MovementKind.TRANSFER_IN, sku, destination, quantity, reference=transfer_id),
            cause_event_id=cause,
            reference_type="transfer",
        )
        updated = await conn.fetchrow(
            "UPDATE transfers SET received = received + $2, "
            "received_at = CASE WHEN received + $2 = quantity THEN now() END "
            "WHERE transfer_id = $1 RETURNING *",
            transfer_id,
            quantity,
        )
        await conn.execute(
            "UPDATE incoming SET arrived = quantity <= $2, quantity = greatest(quantity - $2, 1) "
            "WHERE reference = $1",
            f"transfer:{transfer_id}",
            quantity,
        )
        await allocate_waiting_backorders(uow, book, sku, destination, cause)
        await book.flush(uow)
        return 200, _transfer_json(updated)

    return await idempotent_write(request, action)


@router.get("/transfers")
async def transfers(
    request: Request,
    sku: str | None = None,
    location: str | None = Query(None, description="Source or destination"),
    in_transit: bool | None = None,
    limit: int = Query(100, ge=1, le=1000),
) -> dict:
    """Transfers, newest first."""
    rows = await request.app.state.pool.fetch(
        """SELECT * FROM transfers
           WHERE ($1::text IS NULL OR sku = $1)
             AND ($2::text IS NULL OR source = $2 OR destination = $2)
             AND ($3::bool IS NULL OR (received < quantity) = $3)
           ORDER BY shipped_at DESC, transfer_id LIMIT $4""",
        sku,
        location,
        in_transit,
        limit,
    )
    return {"items": [_transfer_json(row) for row in rows]}


# ----------------------------------------------------------------------------- states

State = Literal["sellable", "damaged", "quality_control", "written_off"]

# The movements that take units from one state to another (written off is final).
_STATE_MOVES: dict[tuple[str, str], tuple[MovementKind, ...]] = {
    ("sellable", "damaged"): (MovementKind.TO_DAMAGED,),
    ("sellable", "quality_control"): (MovementKind.TO_QUALITY_CONTROL,),
    ("sellable", "written_off"): (MovementKind.TO_DAMAGED, MovementKind.WRITE_OFF),
    ("damaged", "sellable"): (MovementKind.FROM_DAMAGED,),
    ("damaged", "quality_control"): (
        MovementKind.FROM_DAMAGED,
        MovementKind.TO_QUALITY_CONTROL,
    ),
    ("damaged", "written_off"): (MovementKind.WRITE_OFF,),
    ("quality_control", "sellable"): (MovementKind.FROM_QUALITY_CONTROL,),
    ("quality_control", "damaged"): (
        MovementKind.FROM_QUALITY_CONTROL,
        MovementKind.TO_DAMAGED,
    ),
    ("quality_control", "written_off"): (
        MovementKind.FROM_QUALITY_CONTROL,
        MovementKind.TO_DAMAGED,
        MovementKind.WRITE_OFF,
    ),
}


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
        if (self.from_state, self.to_state) not in _STATE_MOVES:
            raise ValueError(
                f"to_state: cannot move units from {self.from_state} to {self.to_state}"
            )
        return self


@router.post("/states", dependencies=WAREHOUSE)
async def change_state(change: StateChange, request: Request):
    """Move units between sellable, damaged and quality control, or write them off."""

    async def action(uow):
        book = await LevelBook.load(uow.conn, [change.sku])
        cause = f"http:state:{change.change_id}"
        if await uow.conn.fetchval("SELECT 1 FROM movements WHERE cause_event_id = $1", cause):
            raise HTTPException(409, f"change_id: {change.change_id} was already applied")
        try:
            for kind in _STATE_MOVES[(change.from_state, change.to_state)]:
                book.move(
                    Movement(
                        kind,
                        change.sku,
                        change.location,
                        change.quantity,
                        reason=change.reason,
                        reference=change.change_id,
                    ),
                    cause_event_id=cause,
                    reference_type="state_change",
                )
        except InsufficientStock as exc:
            raise _refused("quantity", exc) from exc
        if change.to_state == "sellable":
            await allocate_waiting_backorders(uow, book, change.sku, change.location, cause)
        await book.flush(uow)
        return 200, {"change_id": change.change_id, "level": _level(book, change)}

    return await idempotent_write(request, action)


class SafetyStockIn(BaseModel):
    sku: Sku
    location: LocationCode
    safety_stock: int = Field(ge=0, le=1_000_000)


@router.put("/safety-stock", dependencies=WAREHOUSE)
async def set_safety_stock(target: SafetyStockIn, request: Request):
    """Hold `safety_stock` units back from sale at a location (refused if they are sold)."""

    async def action(uow):
        book = await LevelBook.load(uow.conn, [target.sku])
        delta = target.safety_stock - book.level(target.sku, target.location).safety_stock
        cause = f"http:safety_stock:{uuid.uuid4()}"
        if delta:
            try:
                book.move(
                    Movement(
                        MovementKind.SAFETY_STOCK_SET,
                        target.sku,
                        target.location,
                        delta,
                        reason="safety_stock",
                    ),
                    cause_event_id=cause,
                    reference_type="safety_stock",
                )
            except InsufficientStock as exc:
                raise _refused("safety_stock", exc) from exc
        if delta < 0:
            await allocate_waiting_backorders(uow, book, target.sku, target.location, cause)
        await book.flush(uow)
        return 200, {"changed_by": delta, "level": _level(book, target)}

    return await idempotent_write(request, action)


def _level(book: LevelBook, where) -> dict:
    level = book.level(where.sku, where.location)
    return level.__dict__ | {"available": level.available}


# ----------------------------------------------------------------------------- announced receipts


class ExpectedReceipt(BaseModel):
    receipt_id: Identifier
    sku: Sku
    location: LocationCode
    quantity: Quantity
    expected_at: Timestamp


@router.post("/incoming", status_code=201, dependencies=WAREHOUSE)
async def announce_receipt(expected: ExpectedReceipt, request: Request):
    """Announce goods on their way from a supplier; backorders take their dates from it. The
    receipt with the same `receipt_id` closes it."""

    async def action(uow):
        created = await uow.conn.fetchval(
            "INSERT INTO incoming (sku, location, quantity, expected_at, reference) "
            "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (reference) DO NOTHING RETURNING id",
            expected.sku,
            expected.location,
            expected.quantity,
            expected.expected_at,
            f"receipt:{expected.receipt_id}",
        )
        if created is None:
            raise HTTPException(409, f"receipt_id: {expected.receipt_id} already announced")
        return 201, expected.model_dump(mode="json")

    return await idempotent_write(request, action)


@router.get("/incoming")
async def incoming(request: Request, sku: str | None = None) -> dict:
    """Stock still due: announced receipts and transfers in transit, soonest first."""
    rows = await request.app.state.pool.fetch(
        "SELECT sku, location, quantity, expected_at, reference FROM incoming "
        "WHERE NOT arrived AND ($1::text IS NULL OR sku = $1) "
        "ORDER BY expected_at NULLS LAST, id LIMIT 1000",
        sku,
    )
    return {"items": [dict(row) for row in rows]}
