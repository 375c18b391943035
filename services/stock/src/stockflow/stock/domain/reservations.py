"""An order's reservation as a small state machine, safe against repeated and late commands.

    (none)    reserve  -> HELD (RESERVED) or REJECTED (REJECTED)
    any       reserve  -> unchanged (REPEATED: the first answer again)
    HELD      commit   -> HELD while units remain, else COMMITTED (COMMITTED)
    HELD      release  -> RELEASED, the units still held are freed (RELEASED)
    COMMITTED release  -> unchanged (ALREADY_COMMITTED); commit -> unchanged (ALREADY_COMMITTED)
    RELEASED  release  -> unchanged (ALREADY_RELEASED); commit -> unchanged (ALREADY_RELEASED)
    REJECTED  release  -> unchanged (ALREADY_RELEASED); commit -> (UNKNOWN_RESERVATION)
    (none)    release  -> (ALREADY_RELEASED); commit -> (UNKNOWN_RESERVATION)

A commit repeated for a shipment already committed is ALREADY_COMMITTED in every state.
Releasing says nothing about backorders: the order's open backorders leave the queue with it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

from stockflow.stock.domain.allocation import Allocated, AllocationResult
from stockflow.stock.domain.errors import CommitExceedsReservation


class ReservationStatus(StrEnum):
    """Where an order's reservation stands; values match ``order_reservations.status``."""

    HELD = "held"
    COMMITTED = "committed"
    RELEASED = "released"
    REJECTED = "rejected"


class ReserveOutcome(StrEnum):
    """What a reserve command did."""

    RESERVED = "reserved"
    REJECTED = "rejected"
    REPEATED = "repeated"


class ReleaseOutcome(StrEnum):
    """What a release command did; values match `stock.released.v1`'s outcome."""

    RELEASED = "released"
    ALREADY_RELEASED = "already_released"
    ALREADY_COMMITTED = "already_committed"


class CommitOutcome(StrEnum):
    """What a commit command did; values match `stock.committed.v1`'s outcome."""

    COMMITTED = "committed"
    ALREADY_COMMITTED = "already_committed"
    ALREADY_RELEASED = "already_released"
    UNKNOWN_RESERVATION = "unknown_reservation"


@dataclass(frozen=True)
class LocatedLine:
    """Units of an order line's sku at one location (released or committed)."""

    line_id: str
    sku: str
    location: str
    quantity: int

    def __post_init__(self) -> None:
        if self.quantity <= 0:
            raise ValueError("a located line has a positive quantity")


@dataclass(frozen=True)
class HeldLine:
    """An order line's units at one location: still `held`, and how many left either way."""

    line_id: str
    sku: str
    location: str
    held: int
    committed: int = 0
    released: int = 0

    @property
    def key(self) -> tuple[str, str, str]:
        """(line_id, sku, location)."""
        return (self.line_id, self.sku, self.location)


@dataclass(frozen=True)
class OrderReservation:
    """Everything stock holds for one order, and the answer first given to its reserve."""

    order_id: str
    status: ReservationStatus
    reply: AllocationResult
    lines: tuple[HeldLine, ...] = ()
    shipments: frozenset[str] = frozenset()

    @property
    def held(self) -> int:
        """Units still held over all lines and locations."""
        return sum(line.held for line in self.lines)


@dataclass(frozen=True)
class ReserveDecision:
    """The reservation to store (unchanged on REPEATED) and what happened."""

    outcome: ReserveOutcome
    reservation: OrderReservation


@dataclass(frozen=True)
class ReleaseDecision:
    """The reservation after a release (None if there was none) and the units freed."""

    outcome: ReleaseOutcome
    reservation: OrderReservation | None
    released: tuple[LocatedLine, ...] = ()


@dataclass(frozen=True)
class CommitDecision:
    """The reservation after a commit (None if there was none) and the units that shipped."""

    outcome: CommitOutcome
    reservation: OrderReservation | None
    committed: tuple[LocatedLine, ...] = ()


def reserve(
    existing: OrderReservation | None, order_id: str, allocate: Callable[[], AllocationResult]
) -> ReserveDecision:
    """Reserve an order once: a repeat gets the first answer and holds nothing more.

    Args:
        existing: the order's stored reservation, if any.
        order_id: the order asking.
        allocate: computes the allocation; called only when there is no reservation yet.
    """
    if existing is not None:
        if existing.order_id != order_id:
            raise ValueError("the existing reservation belongs to another order")
        return ReserveDecision(ReserveOutcome.REPEATED, existing)
    reply = allocate()
    if not isinstance(reply, Allocated):
        rejected = OrderReservation(order_id, ReservationStatus.REJECTED, reply)
        return ReserveDecision(ReserveOutcome.REJECTED, rejected)
    lines = tuple(
        HeldLine(line.line_id, hold.sku, hold.location, hold.quantity)
        for line in reply.lines
        for hold in line.holds
    )
    held = OrderReservation(order_id, ReservationStatus.HELD, reply, lines)
    return ReserveDecision(ReserveOutcome.RESERVED, held)


def release(existing: OrderReservation | None) -> ReleaseDecision:
    """Free every unit the order still holds; repeats and late releases change nothing."""
    if existing is None or existing.status in (
        ReservationStatus.RELEASED,
        ReservationStatus.REJECTED,
    ):
        return ReleaseDecision(ReleaseOutcome.ALREADY_RELEASED, existing)
    if existing.status is ReservationStatus.COMMITTED:
        return ReleaseDecision(ReleaseOutcome.ALREADY_COMMITTED, existing)
    freed = tuple(
        LocatedLine(line.line_id, line.sku, line.location, line.held)
        for line in existing.lines
        if line.held
    )
    lines = tuple(
        replace(line, held=0, released=line.released + line.held) for line in existing.lines
    )
    released = replace(existing, status=ReservationStatus.RELEASED, lines=lines)
    return ReleaseDecision(ReleaseOutcome.RELEASED, released, freed)


def commit(
    existing: OrderReservation | None, shipment_id: str, lines: Sequence[LocatedLine]
) -> CommitDecision:
    """Turn a shipment's held units into shipped ones; part of what is held may ship.

    Raises:
        CommitExceedsReservation: a line commits more than the order holds at that location
            (nothing is committed then).
    """
    if not lines:
        raise ValueError("a commit names at least one line")
    if existing is None or existing.status is ReservationStatus.REJECTED:
        return CommitDecision(CommitOutcome.UNKNOWN_RESERVATION, existing)
    if shipment_id in existing.shipments or existing.status is ReservationStatus.COMMITTED:
        return CommitDecision(CommitOutcome.ALREADY_COMMITTED, existing)
    if existing.status is ReservationStatus.RELEASED:
        return CommitDecision(CommitOutcome.ALREADY_RELEASED, existing)

    wanted = Counter[tuple[str, str, str]]()
    for line in lines:
        wanted[(line.line_id, line.sku, line.location)] += line.quantity
    held = {line.key: line.held for line in existing.lines}
    over = [key for key, quantity in wanted.items() if quantity > held.get(key, 0)]
    if over:
        raise CommitExceedsReservation(
            f"order {existing.order_id}, shipment {shipment_id}: "
            f"commits more than is held for (line, sku, location) {over}"
        )
    updated = tuple(
        replace(
            line, held=line.held - wanted[line.key], committed=line.committed + wanted[line.key]
        )
        for line in existing.lines
    )
    status = (
        ReservationStatus.HELD
        if any(line.held for line in updated)
        else (ReservationStatus.COMMITTED)
    )
    after = replace(
        existing, status=status, lines=updated, shipments=existing.shipments | {shipment_id}
    )
    committed = tuple(LocatedLine(*key, quantity) for key, quantity in wanted.items())
    return CommitDecision(CommitOutcome.COMMITTED, after, committed)


def hold_allocated_backorder(reservation: OrderReservation, line: LocatedLine) -> OrderReservation:
    """Add units a backorder was just allocated to the order's holds, so they can be committed.

    Raises:
        ValueError: the reservation was released or rejected (its backorders are gone).
    """
    if reservation.status in (ReservationStatus.RELEASED, ReservationStatus.REJECTED):
        raise ValueError(f"order {reservation.order_id} is {reservation.status}; nothing to hold")
    key = (line.line_id, line.sku, line.location)
    if any(held.key == key for held in reservation.lines):
        lines = tuple(
            replace(held, held=held.held + line.quantity) if held.key == key else held
            for held in reservation.lines
        )
    else:
        lines = (*reservation.lines, HeldLine(*key, line.quantity))
    return replace(reservation, status=ReservationStatus.HELD, lines=lines)
