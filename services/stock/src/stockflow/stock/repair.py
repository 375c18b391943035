"""Admin repairs of drifted reservations, as audited ledger movements (`stockflow check --repair`).

The operator's checker proposes corrections from what it saw; this endpoint applies them under
the levels' locks, only if the drift it saw is still there (else 409 and nothing changes). Each
correction is a `release` or `reservation` movement with reason `repair:<invariant>`,
reference type `repair` and cause `repair:<repair_id>`, so the ledger, stock.movements.v1 and
the levels stay one story. A level is never written except through LevelBook.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, Field, model_validator

from stockflow.contracts.types import Identifier, LocationCode, Quantity, ShortText, Sku
from stockflow.runtime.http import idempotent_write, require_role
from stockflow.runtime.logging import get_logger
from stockflow.stock.domain import InsufficientStock, Movement, MovementKind
from stockflow.stock.ledger import LevelBook

log = get_logger(__name__)
router = APIRouter(tags=["admin"])

LEVEL_DRIFT = "reserved_is_open_reservations"
HELD_FOR_TERMINAL_ORDER = "reservations_of_terminal_orders"


class Correction(BaseModel):
    """One corrective movement and the state it was proposed for.

    `reserved_is_open_reservations`: `drift` is the level's reserved minus its open
    reservations as seen; a positive drift is released, a negative one reserved.
    `reservations_of_terminal_orders`: the line (`order_id`, `line_id`) of a terminal order
    still holds `held` units; they are released.
    """

    invariant: Literal["reserved_is_open_reservations", "reservations_of_terminal_orders"]
    kind: Literal["release", "reservation"]
    sku: Sku
    location: LocationCode
    quantity: Quantity
    drift: int | None = None
    order_id: Identifier | None = None
    line_id: Identifier | None = None
    held: int | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Correction:
        if self.invariant == LEVEL_DRIFT:
            if self.drift is None or self.drift == 0 or abs(self.drift) != self.quantity:
                raise ValueError("a level correction moves exactly its drift (drift != 0)")
            if self.kind != ("release" if self.drift > 0 else "reservation"):
                raise ValueError("a positive drift is released, a negative one reserved")
        elif (
            self.kind != "release"
            or not (self.order_id and self.line_id)
            or (self.held != self.quantity)
        ):
            raise ValueError("a terminal order's line is released whole: order_id, line_id, held")
        return self


class RepairIn(BaseModel):
    repair_id: Identifier = Field(
        description="The repair's id: its movements' cause is repair:<id>"
    )
    operator: ShortText = Field(min_length=1, description="Who confirmed it")
    note: ShortText | None = None
    corrections: list[Correction] = Field(min_length=1, max_length=1000)


@router.post("/admin/repairs", dependencies=[Depends(require_role("admin"))])
async def repair(body: RepairIn, request: Request):
    """Apply corrective movements for drifted reservations; 409 if any proposal is stale."""

    async def action(uow):
        cause = f"repair:{body.repair_id}"
        if await uow.conn.fetchval("SELECT 1 FROM movements WHERE cause_event_id = $1", cause):
            raise HTTPException(409, f"repair_id: {body.repair_id} was applied already")
        book = await LevelBook.load(uow.conn, {c.sku for c in body.corrections})
        released_orders: set[str] = set()
        for number, correction in enumerate(body.corrections):
            where = f"corrections[{number}] {correction.sku}@{correction.location}"
            if correction.invariant == LEVEL_DRIFT:
                drift = await _drift(uow.conn, book, correction.sku, correction.location)
                if drift != correction.drift:
                    raise HTTPException(
                        409, f"{where}: stale, drift is {drift} now, not {correction.drift}"
                    )
            else:
                await _release_line(uow.conn, correction, where)
                released_orders.add(correction.order_id or "")
            try:
                book.move(
                    Movement(
                        MovementKind(correction.kind),
                        correction.sku,
                        correction.location,
                        correction.quantity,
                        reason=f"repair:{correction.invariant}",
                        reference=body.repair_id,
                    ),
                    cause_event_id=cause,
                    order_id=correction.order_id,
                    reference_type="repair",
                )
            except InsufficientStock as exc:
                raise HTTPException(409, f"{where}: {exc}") from exc
        # An order whose last held line was released is answered as released from now on, so
        # a late ReleaseStock changes nothing.
        await uow.conn.execute(
            "UPDATE order_reservations o SET status = 'released', updated_at = now() "
            "WHERE o.order_id = ANY($1::text[]) AND o.status = 'held' AND NOT EXISTS "
            "(SELECT 1 FROM reservations r WHERE r.order_id = o.order_id AND r.quantity > 0)",
            sorted(released_orders),
        )
        await book.flush(uow)
        rows = await uow.conn.fetch(
            "SELECT movement_id, sku, location, kind, quantity, reason, order_id FROM movements "
            "WHERE cause_event_id = $1 ORDER BY id",
            cause,
        )
        log.warning(
            "reservations repaired",
            repair_id=body.repair_id,
            operator=body.operator,
            note=body.note,
            movements=len(rows),
        )
        return 200, {
            "repair_id": body.repair_id,
            "cause_event_id": cause,
            "operator": body.operator,
            "movements": [dict(r) | {"movement_id": str(r["movement_id"])} for r in rows],
        }

    return await idempotent_write(request, action)


async def _drift(conn, book: LevelBook, sku: str, location: str) -> int:
    """The level's reserved (as this transaction changed it) minus its open reservations."""
    held = await conn.fetchval(
        "SELECT coalesce(sum(quantity), 0) FROM reservations WHERE sku = $1 AND location = $2",
        sku,
        location,
    )
    return book.level(sku, location).reserved - held


async def _release_line(conn, correction: Correction, where: str) -> None:
    """Take the line's held units off its reservation row, if it still holds what was seen."""
    released = await conn.fetchval(
        "UPDATE reservations SET released = released + quantity, quantity = 0 "
        "WHERE order_id = $1 AND line_id = $2 AND sku = $3 AND location = $4 AND quantity = $5 "
        "RETURNING true",
        correction.order_id,
        correction.line_id,
        correction.sku,
        correction.location,
        correction.held,
    )
    if not released:
        raise HTTPException(
            409,
            f"{where}: stale, order {correction.order_id} line {correction.line_id} "
            f"no longer holds {correction.held}",
        )
