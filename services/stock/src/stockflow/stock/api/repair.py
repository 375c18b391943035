"""Admin repairs of drifted reservations, as audited ledger movements (`stockflow check --repair`).

The operator's checker proposes corrections from what it saw; this endpoint applies them under
the levels' locks, only if the drift it saw is still there (else 409 and nothing changes). Each
correction is a `release` or `reservation` movement with reason `repair:<invariant>`,
reference type `repair` and cause `repair:<repair_id>`, so the ledger, stock.movements.v1 and
the levels stay one story. A level is never written except through LevelBook.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, model_validator

from stockflow.contracts.types import Identifier, LocationCode, Quantity, ShortText, Sku
from stockflow.runtime.http import require_role
from stockflow.runtime.outbox import UnitOfWork
from stockflow.stock.api.refusals import write
from stockflow.stock.usecases import repair as repairs
from stockflow.stock.usecases.repair import LEVEL_DRIFT

router = APIRouter(tags=["admin"])


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
async def repair(body: RepairIn, request: Request) -> JSONResponse:
    """Apply corrective movements for drifted reservations; 409 if any proposal is stale."""

    async def action(uow: UnitOfWork) -> tuple[int, Any]:
        corrections = [repairs.CorrectiveMovement(**dict(c)) for c in body.corrections]
        applied = repairs.Repair(body.repair_id, body.operator, body.note, corrections)
        return 200, await repairs.repair_reservations(uow, applied)

    return await write(request, action)
