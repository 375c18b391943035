"""Deterministic allocation of an order's lines to stock across locations.

Rules, in order:

1. Untracked skus (digital goods, services) are reported as untracked and never reserved.
2. A bundle line is expanded into its components; every unit of a bundle takes all its
   components from one location, so a bundle's availability at a location is
   min(component available // component quantity), and lines sharing a component draw on one
   pool — nothing is ever oversold.
3. Prefer one location that ships the whole order; otherwise cover lines whole with as few
   locations as possible (greedy set cover: most whole lines, then most units, then location
   priority, then name); a line is split across locations only when no location can serve it
   whole, drawing first on locations already used, then on one that covers the rest, then on
   the one holding the most.
4. A line still short is backordered when allowed; if any short line may not be backordered,
   the whole order is rejected and nothing is held.

Greedy cover can, with components shared between lines, miss an allocation an exhaustive
search would find; it never oversells and always answers the same way for the same input.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from stockflow.stock.domain.levels import LevelKey


@dataclass(frozen=True)
class LineToAllocate:
    """A line to reserve; `backorder_allowed` is the order's or the sku's policy for it."""

    line_id: str
    sku: str
    quantity: int
    backorder_allowed: bool = False


@dataclass(frozen=True)
class BundleComponent:
    """`quantity` units of `sku` go into one unit of a bundle."""

    sku: str
    quantity: int


@dataclass(frozen=True)
class LocationAllocation:
    """Units of a line (bundle units for a bundle line) reserved at one location."""

    location: str
    quantity: int


@dataclass(frozen=True)
class Hold:
    """Units of a stocked sku to reserve at a location (a bundle's components, expanded)."""

    sku: str
    location: str
    quantity: int


@dataclass(frozen=True)
class LineAllocation:
    """How one line is served: reserved per location, backordered, or untracked.

    ``components`` is set for a bundle line: its tracked components per bundle unit.
    """

    line_id: str
    sku: str
    requested: int
    allocations: tuple[LocationAllocation, ...] = ()
    backordered: int = 0
    untracked: bool = False
    components: tuple[BundleComponent, ...] = ()

    @property
    def reserved(self) -> int:
        """Units of the line reserved, over all locations."""
        return sum(allocation.quantity for allocation in self.allocations)

    @property
    def holds(self) -> tuple[Hold, ...]:
        """What to reserve in stock for this line: the line's sku, or its bundle's components."""
        if not self.components:
            return tuple(Hold(self.sku, a.location, a.quantity) for a in self.allocations)
        return tuple(
            Hold(component.sku, a.location, component.quantity * a.quantity)
            for a in self.allocations
            for component in self.components
        )

    @property
    def backorders(self) -> tuple[tuple[str, int], ...]:
        """(sku, units) to queue as backorders: the line's sku, or its bundle's components."""
        if not self.backordered:
            return ()
        if not self.components:
            return ((self.sku, self.backordered),)
        return tuple((c.sku, c.quantity * self.backordered) for c in self.components)


@dataclass(frozen=True)
class Allocated:
    """Every line is reserved, backordered or untracked; lines keep the order's order."""

    lines: tuple[LineAllocation, ...]

    @property
    def complete(self) -> bool:
        """True when nothing is backordered."""
        return all(line.backordered == 0 for line in self.lines)

    @property
    def holds(self) -> tuple[Hold, ...]:
        """Every hold of every line."""
        return tuple(hold for line in self.lines for hold in line.holds)


@dataclass(frozen=True)
class UnservedLine:
    """A line that could not be served: `available` is its total over all locations."""

    line_id: str
    sku: str
    requested: int
    available: int


@dataclass(frozen=True)
class Rejection:
    """Nothing is held; `lines` are the short lines that may not be backordered."""

    lines: tuple[UnservedLine, ...]
    reason: Literal["insufficient_stock"] = "insufficient_stock"


AllocationResult = Allocated | Rejection


def bundle_available(
    components: Sequence[BundleComponent], location: str, available: Mapping[LevelKey, int]
) -> int:
    """Whole bundles that `location` can assemble: min(component available // quantity).

    Also serves a plain sku, as the single component (sku, 1).
    """
    return min(
        (max(available.get((c.sku, location), 0), 0) // c.quantity for c in components),
        default=0,
    )


def allocate_order(
    lines: Sequence[LineToAllocate],
    available: Mapping[LevelKey, int],
    *,
    location_priority: Sequence[str] = (),
    untracked: Collection[str] = frozenset(),
    bundles: Mapping[str, Sequence[BundleComponent]] | None = None,
) -> AllocationResult:
    """Allocate every line of an order at once (see the module rules).

    Args:
        lines: the order's lines; line ids must be unique and quantities positive.
        available: units available per (sku, location), before this order.
        location_priority: preferred locations first; unlisted ones come after, by name.
        untracked: skus whose stock is not tracked.
        bundles: bundle sku → its components (one level: a component is not a bundle).

    Returns:
        `Allocated` with one `LineAllocation` per line, in the input order, or a `Rejection`
        when a short line may not be backordered.
    """
    bundles = bundles or {}
    _validate(lines, bundles)
    units = {line.line_id: _units_of(line.sku, untracked, bundles) for line in lines}
    tracked = [line for line in lines if units[line.line_id]]
    stock = {key: quantity for key, quantity in available.items() if quantity > 0}
    rank = {location: index for index, location in enumerate(location_priority)}
    locations = sorted(
        {location for _, location in stock} | set(location_priority),
        key=lambda location: (rank.get(location, len(rank)), location),
    )
    # Bundles need every component in one place, so they get first pick of each location.
    fill_order = sorted(tracked, key=lambda line: line.sku not in bundles)
    allocator = _Allocator(stock, units, locations, fill_order)
    allocator.cover_whole_lines()
    allocator.split_remaining()

    at_fault = [
        line for line in tracked if allocator.need[line.line_id] and not line.backorder_allowed
    ]
    if at_fault:
        return Rejection(
            tuple(
                UnservedLine(
                    line.line_id,
                    line.sku,
                    line.quantity,
                    sum(bundle_available(units[line.line_id], loc, stock) for loc in locations),
                )
                for line in at_fault
            )
        )
    return Allocated(
        tuple(_served(line, units[line.line_id], allocator, bundles) for line in lines)
    )


def _served(
    line: LineToAllocate,
    units: tuple[BundleComponent, ...],
    allocator: _Allocator,
    bundles: Mapping[str, Sequence[BundleComponent]],
) -> LineAllocation:
    """How `line` is served once the allocator is done (untracked when it takes no stock)."""
    if not units:
        return LineAllocation(line.line_id, line.sku, line.quantity, untracked=True)
    return LineAllocation(
        line.line_id,
        line.sku,
        line.quantity,
        allocations=tuple(allocator.taken[line.line_id]),
        backordered=allocator.need[line.line_id],
        components=units if line.sku in bundles else (),
    )


def _validate(
    lines: Sequence[LineToAllocate], bundles: Mapping[str, Sequence[BundleComponent]]
) -> None:
    line_ids = Counter(line.line_id for line in lines)
    if any(count > 1 for count in line_ids.values()):
        raise ValueError("line ids must be unique")
    if any(line.quantity <= 0 for line in lines):
        raise ValueError("line quantities must be positive")
    for bundle, components in bundles.items():
        if not components or any(c.quantity <= 0 for c in components):
            raise ValueError(f"bundle {bundle} needs components with positive quantities")
        if any(c.sku in bundles for c in components):
            raise ValueError(f"bundle {bundle} contains a bundle; nesting is not supported")


def _units_of(
    sku: str, untracked: Collection[str], bundles: Mapping[str, Sequence[BundleComponent]]
) -> tuple[BundleComponent, ...]:
    """The tracked stock one unit of `sku` takes; empty when nothing is tracked."""
    if sku in untracked:
        return ()
    components = bundles.get(sku, (BundleComponent(sku, 1),))
    merged = Counter[str]()
    for component in components:
        if component.sku not in untracked:
            merged[component.sku] += component.quantity
    return tuple(BundleComponent(name, quantity) for name, quantity in merged.items())


class _Allocator:
    """Mutable working state of one `allocate_order` call."""

    def __init__(
        self,
        stock: Mapping[LevelKey, int],
        units: Mapping[str, tuple[BundleComponent, ...]],
        locations: Sequence[str],
        lines: Sequence[LineToAllocate],
    ) -> None:
        self.pool = dict(stock)
        self.units = units
        self.locations = locations
        self.lines = lines
        self.used: set[str] = set()
        self.need = {line.line_id: line.quantity for line in lines}
        self.taken: dict[str, list[LocationAllocation]] = {line.line_id: [] for line in lines}

    def cover_whole_lines(self) -> None:
        """Greedy set cover: repeatedly use the location serving the most lines whole."""
        waiting = list(self.lines)
        while waiting:
            best: tuple[int, int] = (0, 0)
            best_location, best_lines = None, []
            for location in self.locations:
                if location in self.used:
                    continue  # it already served every waiting line it could
                served = self._whole_lines_at(location, waiting)
                score = (len(served), sum(line.quantity for line in served))
                if score > best:
                    best, best_location, best_lines = score, location, served
            if best_location is None:
                return
            self.used.add(best_location)
            for line in best_lines:
                self._take(line, best_location, line.quantity)
            waiting = [line for line in waiting if line not in best_lines]

    def split_remaining(self) -> None:
        """Split each line no location could serve whole, used locations first."""
        for line in self.lines:
            while self.need[line.line_id]:
                location = self._next_location_for(line)
                if location is None:
                    break
                capacity = bundle_available(self.units[line.line_id], location, self.pool)
                self.used.add(location)
                self._take(line, location, min(capacity, self.need[line.line_id]))

    def _next_location_for(self, line: LineToAllocate) -> str | None:
        """A used location with stock for the line, else the first covering the rest of it,
        else the one holding the most; None when no location has any."""
        units = self.units[line.line_id]
        capacity = {
            location: bundle_available(units, location, self.pool) for location in self.locations
        }
        for location in self.locations:
            if location in self.used and capacity[location]:
                return location
        for location in self.locations:
            if capacity[location] >= self.need[line.line_id]:
                return location
        most = max(self.locations, key=lambda location: capacity[location], default=None)
        return most if most is not None and capacity[most] else None

    def _whole_lines_at(
        self, location: str, lines: Sequence[LineToAllocate]
    ) -> list[LineToAllocate]:
        left = Counter[str]()
        for (sku, at), quantity in self.pool.items():
            if at == location:
                left[sku] = quantity
        served = []
        for line in lines:
            wanted = {c.sku: c.quantity * line.quantity for c in self.units[line.line_id]}
            if all(left[sku] >= quantity for sku, quantity in wanted.items()):
                left.subtract(wanted)
                served.append(line)
        return served

    def _take(self, line: LineToAllocate, location: str, quantity: int) -> None:
        for component in self.units[line.line_id]:
            self.pool[(component.sku, location)] -= component.quantity * quantity
        self.need[line.line_id] -= quantity
        self.taken[line.line_id].append(LocationAllocation(location, quantity))
