"""Admin repairs of drifted reservations, as audited ledger movements (`stockflow check --repair`).

The operator's checker proposes corrections from what it saw; they are applied under the
levels' locks only if the drift seen is still there (else `Conflict` and nothing changes). Each
correction is a `release` or `reservation` movement with reason `repair:<invariant>`, reference
type `repair` and cause `repair:<repair_id>`, so the ledger, stock.movements.v1 and the levels
stay one story. A level is never written except through LevelBook.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from stockflow.runtime.logging import get_logger
from stockflow.runtime.outbox import UnitOfWork
from stockflow.stock import store
from stockflow.stock.domain import HeldUnits, InsufficientStock, Movement, MovementKind
from stockflow.stock.ledger import LevelBook
from stockflow.stock.usecases.refusals import Conflict

log = get_logger(__name__)

LEVEL_DRIFT = "reserved_is_open_reservations"
HELD_FOR_TERMINAL_ORDER = "reservations_of_terminal_orders"


@dataclass(frozen=True)
class CorrectiveMovement:
    """One corrective movement and the state it was proposed for (see the API's model)."""

    invariant: str
    kind: str
    sku: str
    location: str
    quantity: int
    drift: int | None = None
    order_id: str | None = None
    line_id: str | None = None
    held: int | None = None


@dataclass(frozen=True)
class Repair:
    repair_id: str
    operator: str
    note: str | None
    corrections: Sequence[CorrectiveMovement]


async def repair_reservations(uow: UnitOfWork, repair: Repair) -> dict[str, Any]:
    """Apply corrective movements for drifted reservations; Conflict if any is stale."""
    cause = f"repair:{repair.repair_id}"
    if await store.cause_applied(uow.conn, cause):
        raise Conflict(f"repair_id: {repair.repair_id} was applied already")
    book = await LevelBook.load(uow.conn, {c.sku for c in repair.corrections})
    released_orders: set[str] = set()
    for number, correction in enumerate(repair.corrections):
        where = f"corrections[{number}] {correction.sku}@{correction.location}"
        if correction.invariant == LEVEL_DRIFT:
            await _check_drift(uow, book, correction, where)
        else:
            await _release_line(uow, correction, where)
            released_orders.add(correction.order_id or "")
        try:
            book.move(
                Movement(
                    MovementKind(correction.kind),
                    correction.sku,
                    correction.location,
                    correction.quantity,
                    reason=f"repair:{correction.invariant}",
                    reference=repair.repair_id,
                ),
                cause_event_id=cause,
                order_id=correction.order_id,
                reference_type="repair",
            )
        except InsufficientStock as exc:
            raise Conflict(f"{where}: {exc}") from exc
    # An order whose last held line was released is answered as released from now on, so a
    # late ReleaseStock changes nothing.
    await store.release_emptied_reservations(uow.conn, sorted(released_orders))
    await book.flush(uow)
    movements = await store.movements_of_cause(uow.conn, cause)
    log.warning(
        "reservations repaired",
        repair_id=repair.repair_id,
        operator=repair.operator,
        note=repair.note,
        movements=len(movements),
    )
    return {
        "repair_id": repair.repair_id,
        "cause_event_id": cause,
        "operator": repair.operator,
        "movements": movements,
    }


async def _check_drift(
    uow: UnitOfWork, book: LevelBook, correction: CorrectiveMovement, where: str
) -> None:
    """The level's reserved (as this transaction changed it) minus its open reservations must
    still be the drift the checker saw."""
    held = await store.open_reservations_total(uow.conn, correction.sku, correction.location)
    drift = book.level(correction.sku, correction.location).reserved - held
    if drift != correction.drift:
        raise Conflict(f"{where}: stale, drift is {drift} now, not {correction.drift}")


async def _release_line(uow: UnitOfWork, correction: CorrectiveMovement, where: str) -> None:
    """Take the line's held units off its reservation row, if it still holds what was seen."""
    hold = HeldUnits(
        correction.line_id or "", correction.sku, correction.location, correction.held or 0
    )
    if not await store.release_hold_if_unchanged(uow.conn, correction.order_id or "", hold):
        raise Conflict(
            f"{where}: stale, order {correction.order_id} line {correction.line_id} "
            f"no longer holds {correction.held}"
        )
