"""An order's reservation as a small state machine, safe against repeated and late commands.

    (none)     reserve  -> HELD (allocated) or REJECTED; a repeat gets the first answer again
    HELD       release  -> RELEASED, every unit still held is freed (RELEASED)
    HELD       commit   -> HELD while units are held or backorders wait, else COMMITTED
    COMMITTED  release  -> unchanged (ALREADY_COMMITTED) unless units are held again
    COMMITTED  commit   -> COMMITTED (a later shipment of the order commits what it finds)
    RELEASED   release  -> unchanged (ALREADY_RELEASED); commit -> unchanged (ALREADY_RELEASED)
    REJECTED   release  -> unchanged (ALREADY_RELEASED); commit -> (UNKNOWN_RESERVATION)
    (none)     release  -> (UNKNOWN_RESERVATION);     commit -> (UNKNOWN_RESERVATION)

A commit repeated for a shipment already committed is ALREADY_COMMITTED in every state.
Releasing says nothing about backorders: the order's open backorders leave the queue with it.
A shipment takes its units from what the order holds of that sku at that location, whichever
line held them (a bundle line holds its components); what it cannot find is reported, not
refused, because the goods have left the building.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

from stockflow.stock.domain.allocation import Allocated, AllocationResult


class ReservationStatus(StrEnum):
    """Where an order's reservation stands; values match ``order_reservations.status``."""

    HELD = "held"
    COMMITTED = "committed"
    RELEASED = "released"
    REJECTED = "rejected"


class ReleaseOutcome(StrEnum):
    """What a release command did; values match `stock.released.v1`'s outcome."""

    RELEASED = "released"
    ALREADY_RELEASED = "already_released"
    ALREADY_COMMITTED = "already_committed"
    UNKNOWN_RESERVATION = "unknown_reservation"


class CommitOutcome(StrEnum):
    """What a commit command did; values match `stock.committed.v1`'s outcome."""

    COMMITTED = "committed"
    ALREADY_COMMITTED = "already_committed"
    ALREADY_RELEASED = "already_released"
    UNKNOWN_RESERVATION = "unknown_reservation"


def status_after_reserve(result: AllocationResult) -> ReservationStatus:
    """A first reserve holds what was allocated, or holds nothing and is rejected."""
    return ReservationStatus.HELD if isinstance(result, Allocated) else ReservationStatus.REJECTED


def release_outcome(status: ReservationStatus | None, holds_units: bool) -> ReleaseOutcome:
    """What a release does to a reservation in `status` (None: the order never reserved)."""
    if status is None:
        return ReleaseOutcome.UNKNOWN_RESERVATION
    if status in (ReservationStatus.RELEASED, ReservationStatus.REJECTED):
        return ReleaseOutcome.ALREADY_RELEASED
    if status is ReservationStatus.COMMITTED and not holds_units:
        return ReleaseOutcome.ALREADY_COMMITTED
    return ReleaseOutcome.RELEASED


def commit_outcome(status: ReservationStatus | None, shipment_committed: bool) -> CommitOutcome:
    """What a shipment's commit does to a reservation in `status`.

    Args:
        status: the order's reservation status; None when the order never reserved.
        shipment_committed: the ledger already holds this shipment (a repeated commit).
    """
    if shipment_committed:
        return CommitOutcome.ALREADY_COMMITTED
    if status is None or status is ReservationStatus.REJECTED:
        return CommitOutcome.UNKNOWN_RESERVATION
    if status is ReservationStatus.RELEASED:
        return CommitOutcome.ALREADY_RELEASED
    return CommitOutcome.COMMITTED


def status_after_commit(holds_units: bool, backorders_wait: bool) -> ReservationStatus:
    """An order stays HELD while it holds units or waits for backorders, else it is done."""
    if holds_units or backorders_wait:
        return ReservationStatus.HELD
    return ReservationStatus.COMMITTED


@dataclass(frozen=True)
class HeldUnits:
    """Units an order line still holds of a sku at a location."""

    line_id: str
    sku: str
    location: str
    quantity: int


@dataclass(frozen=True)
class ShipmentTake:
    """What a shipment of `wanted` units of a sku at a location takes from the order's holds.

    ``taken`` pairs each hold drawn on (as it was) with the units taken from it; ``holds`` is
    every hold afterwards; ``missing`` counts units shipped that were not held.
    """

    taken: tuple[tuple[HeldUnits, int], ...]
    holds: tuple[HeldUnits, ...]
    missing: int


def take_for_shipment(
    holds: Sequence[HeldUnits], sku: str, location: str, wanted: int, line_id: str | None = None
) -> ShipmentTake:
    """Take `wanted` units of `sku` at `location` from `holds`, in their order (only from the
    holds of `line_id` when given: a partial release names the line)."""
    if wanted <= 0:
        raise ValueError("a shipment takes a positive quantity")
    remaining = wanted
    taken: list[tuple[HeldUnits, int]] = []
    after: list[HeldUnits] = []
    for hold in holds:
        ours = line_id is None or hold.line_id == line_id
        if remaining and ours and (hold.sku, hold.location) == (sku, location) and hold.quantity:
            take = min(hold.quantity, remaining)
            remaining -= take
            taken.append((hold, take))
            hold = replace(hold, quantity=hold.quantity - take)
        after.append(hold)
    return ShipmentTake(tuple(taken), tuple(after), remaining)
