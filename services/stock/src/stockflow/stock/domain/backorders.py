"""The backorder queue of one sku: highest priority first, then first come, first served.

Arriving stock goes to waiting backorders before it becomes available; the head of the queue
is filled first, partially if that is all there is. Expected dates come from incoming stock
(in-transit transfers, announced receipts): a backorder's date is when cumulative incoming
stock first covers everything queued up to and including it.

A backordered bundle line waits as one backorder per component, all at one location; the
bundle is allocated in whole units only, as its components' fills there make them whole.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Backorder:
    """An order line's units still waiting for stock.

    ``sequence`` is the arrival order (e.g. the row id); a higher ``priority`` goes first.
    """

    order_id: str
    line_id: str
    sku: str
    open_quantity: int
    sequence: int
    priority: int = 0

    def __post_init__(self) -> None:
        if self.open_quantity <= 0:
            raise ValueError("a waiting backorder has a positive open quantity")


@dataclass(frozen=True)
class BackorderFill:
    """Units of arriving stock allocated to one backorder."""

    backorder: Backorder
    quantity: int

    @property
    def remaining(self) -> int:
        """Units the backorder still waits for after this fill."""
        return self.backorder.open_quantity - self.quantity


@dataclass(frozen=True)
class IncomingStock:
    """Units on their way (transfer in transit, announced receipt); None: date unknown."""

    quantity: int
    expected_at: datetime | None = None

    def __post_init__(self) -> None:
        if self.quantity <= 0:
            raise ValueError("incoming stock has a positive quantity")


@dataclass(frozen=True)
class BundleBackorder:
    """A bundle line's backordered units: `quantity` bundles, of which `allocated` are whole
    (every component filled) and announced; `components` are (sku, units per bundle)."""

    order_id: str
    line_id: str
    sku: str
    location: str
    quantity: int
    allocated: int
    components: tuple[tuple[str, int], ...]

    def newly_whole(self, filled: Mapping[str, int]) -> int:
        """Bundle units that `filled` (component units allocated so far, per sku) makes
        whole beyond those already allocated."""
        whole = min(
            (filled.get(sku, 0) // per_bundle for sku, per_bundle in self.components),
            default=0,
        )
        return max(min(whole, self.quantity) - self.allocated, 0)


def queue_order(backorders: Iterable[Backorder]) -> list[Backorder]:
    """`backorders` in service order: higher priority first, then earlier sequence."""
    return sorted(backorders, key=lambda backorder: (-backorder.priority, backorder.sequence))


def allocate_backorders(
    queue: Iterable[Backorder], quantity_arriving: int
) -> tuple[tuple[BackorderFill, ...], int]:
    """Allocate arriving units to the queue of one sku.

    Returns:
        The fills in service order (the last may be partial) and the units left over, which
        become available stock.

    Raises:
        ValueError: a negative quantity, or backorders of more than one sku.
    """
    if quantity_arriving < 0:
        raise ValueError("arriving quantity cannot be negative")
    ordered = _single_sku_queue(queue)
    fills = []
    left = quantity_arriving
    for backorder in ordered:
        if not left:
            break
        quantity = min(backorder.open_quantity, left)
        fills.append(BackorderFill(backorder, quantity))
        left -= quantity
    return tuple(fills), left


def expected_dates(
    queue: Iterable[Backorder], incoming: Iterable[IncomingStock]
) -> dict[Backorder, datetime | None]:
    """The date each backorder can expect its units, or None if incoming stock never covers it.

    Args:
        queue: the waiting backorders of one sku (any order; service order is applied).
        incoming: stock on its way for that sku; entries without a date are not counted.
    """
    arrivals = iter(
        sorted(
            (item.expected_at, item.quantity) for item in incoming if item.expected_at is not None
        )
    )
    dates: dict[Backorder, datetime | None] = {}
    covered, queued = 0, 0
    covered_at: datetime | None = None
    for backorder in _single_sku_queue(queue):
        queued += backorder.open_quantity
        while covered < queued and (arrival := next(arrivals, None)):
            covered_at, quantity = arrival
            covered += quantity
        dates[backorder] = covered_at if covered >= queued else None
    return dates


def _single_sku_queue(queue: Iterable[Backorder]) -> Sequence[Backorder]:
    ordered = queue_order(queue)
    if len({backorder.sku for backorder in ordered}) > 1:
        raise ValueError("a backorder queue holds one sku")
    return ordered
