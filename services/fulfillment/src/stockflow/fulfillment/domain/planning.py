"""Shipment planning: which units leave from where, and when.

A confirmed order's reserved units become one shipment per location holding them. Backordered
units wait; when stock allocates them (BackorderAllocated) they become later shipments, again
one per location. Shipment ids are the order id plus a sequence number ("ORD-7-S2"), so
re-planning the same input yields the same ids.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from stockflow.fulfillment.domain.common import Address, ServiceLevel, ShipmentLine
from stockflow.fulfillment.domain.shipment import Shipment


@dataclass(frozen=True)
class LocationQuantity:
    """Units of a line held at one stock location."""

    location: str
    quantity: int


@dataclass(frozen=True)
class ConfirmedLine:
    """A line of order.confirmed.v1: units reserved per location, units left on backorder."""

    line_id: str
    sku: str
    allocations: tuple[LocationQuantity, ...] = ()
    backordered: int = 0


@dataclass(frozen=True)
class AllocatedUnits:
    """Units of a line that stock holds at a location (a reservation or a backorder fill)."""

    line_id: str
    sku: str
    location: str
    quantity: int


@dataclass(frozen=True)
class ShipmentPlan:
    """Shipments to create now, and the units that will follow once stock arrives."""

    shipments: tuple[Shipment, ...]
    backordered: tuple[ShipmentLine, ...]


def shipment_id_for(order_id: str, sequence: int) -> str:
    """The id of an order's `sequence`-th shipment (1-based)."""
    return f"{order_id}-S{sequence}"


def plan_confirmed_order(
    order_id: str,
    ship_to: Address,
    lines: Sequence[ConfirmedLine],
    service_level: ServiceLevel = ServiceLevel.STANDARD,
) -> ShipmentPlan:
    """One shipment per location holding reserved units; backordered units are listed apart.

    Lines with nothing reserved and nothing backordered (goods that are not stock-kept, such as
    gift cards) need no shipment.
    """
    reserved = (
        AllocatedUnits(line.line_id, line.sku, allocation.location, allocation.quantity)
        for line in lines
        for allocation in line.allocations
    )
    return ShipmentPlan(
        shipments=_one_per_location(order_id, ship_to, reserved, 1, service_level),
        backordered=tuple(
            ShipmentLine(line.line_id, line.sku, line.backordered)
            for line in lines
            if line.backordered > 0
        ),
    )


def plan_backorder_shipments(
    order_id: str,
    ship_to: Address,
    allocated: Sequence[AllocatedUnits],
    shipments_so_far: int,
    service_level: ServiceLevel = ServiceLevel.STANDARD,
) -> tuple[Shipment, ...]:
    """Later shipment(s) for backordered units stock has now allocated, one per location.

    `shipments_so_far` is how many shipments the order already has, so the ids continue.
    """
    return _one_per_location(order_id, ship_to, allocated, shipments_so_far + 1, service_level)


def _one_per_location(
    order_id: str,
    ship_to: Address,
    units: Iterable[AllocatedUnits],
    first_sequence: int,
    service_level: ServiceLevel,
) -> tuple[Shipment, ...]:
    # location → line_id → units; a line held twice at one location ships as one line.
    by_location: dict[str, dict[str, ShipmentLine]] = {}
    for unit in units:
        if unit.quantity < 0:
            raise ValueError(f"Line {unit.line_id} has a negative quantity at {unit.location}")
        if unit.quantity == 0:
            continue
        lines = by_location.setdefault(unit.location, {})
        held = lines.get(unit.line_id)
        lines[unit.line_id] = ShipmentLine(
            unit.line_id, unit.sku, unit.quantity + (held.quantity if held else 0)
        )
    return tuple(
        Shipment(
            shipment_id=shipment_id_for(order_id, sequence),
            order_id=order_id,
            location=location,
            ship_to=ship_to,
            lines=tuple(by_location[location].values()),
            service_level=service_level,
        )
        for sequence, location in enumerate(sorted(by_location), start=first_sequence)
    )
