"""The shipment: one parcel set leaving one location, and the steps it must go through.

    created → picking → picked → packed → labelled → shipped → in_transit → delivered
                  ↓  ↑ (re-pick)                                    ↕
               on_hold ──(ship what was picked)──► picked          exception

Cancelling is allowed until the shipment is shipped. A short pick puts the shipment on hold:
nothing leaves short by accident. Someone decides: re-pick (the units turned up) or re-plan
to ship what was picked, which returns the missing units to the order as a shortfall.

Methods change the shipment in place and return the event value the handler publishes (or
None when a duplicate or stale input changed nothing); a refused step raises a
`FulfillmentError` whose message a warehouse user can act on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from stockflow.fulfillment.domain.carriers import Label
from stockflow.fulfillment.domain.common import (
    Address,
    ServiceLevel,
    ShipmentLine,
    time_from_text,
    time_to_text,
)
from stockflow.fulfillment.domain.errors import (
    CancelRefused,
    FulfillmentError,
    IllegalShipmentStep,
    InvalidPick,
    PackingError,
)
from stockflow.fulfillment.domain.packing import Package


class ShipmentStatus(StrEnum):
    CREATED = "created"
    PICKING = "picking"
    ON_HOLD = "on_hold"
    PICKED = "picked"
    PACKED = "packed"
    LABELLED = "labelled"
    SHIPPED = "shipped"
    IN_TRANSIT = "in_transit"
    DELIVERED = "delivered"
    EXCEPTION = "exception"
    CANCELLED = "cancelled"

    @property
    def has_left_the_building(self) -> bool:
        """Shipped or later: stock is committed and the goods are with the carrier or customer."""
        return self in _LEFT_THE_BUILDING


_LEFT_THE_BUILDING = frozenset(
    {
        ShipmentStatus.SHIPPED,
        ShipmentStatus.IN_TRANSIT,
        ShipmentStatus.DELIVERED,
        ShipmentStatus.EXCEPTION,
    }
)

# How a refusal describes where the shipment stands, and what the user should do next.
_WHERE_IT_STANDS = {
    ShipmentStatus.CREATED: "is waiting to be picked",
    ShipmentStatus.PICKING: "is being picked",
    ShipmentStatus.ON_HOLD: "is on hold after a short pick",
    ShipmentStatus.PICKED: "is picked but not packed yet",
    ShipmentStatus.PACKED: "is packed but has no label yet",
    ShipmentStatus.LABELLED: "is labelled and waiting for the carrier",
    ShipmentStatus.SHIPPED: "has already been shipped",
    ShipmentStatus.IN_TRANSIT: "is already in transit",
    ShipmentStatus.DELIVERED: "has already been delivered",
    ShipmentStatus.EXCEPTION: "has been shipped and the carrier reported a problem",
    ShipmentStatus.CANCELLED: "was cancelled",
}
_NEXT_STEP = {
    ShipmentStatus.CREATED: "start picking it",
    ShipmentStatus.PICKING: "confirm its picks",
    ShipmentStatus.ON_HOLD: "re-pick it, or ship what was picked",
    ShipmentStatus.PICKED: "pack it",
    ShipmentStatus.PACKED: "print its label",
    ShipmentStatus.LABELLED: "hand it to the carrier and mark it shipped",
}


class TrackingStatus(StrEnum):
    """What a carrier reports about a shipped parcel."""

    IN_TRANSIT = "in_transit"
    DELIVERED = "delivered"
    EXCEPTION = "exception"


@dataclass(frozen=True)
class TrackingUpdate:
    """One carrier scan, from a tracking topic or webhook."""

    tracking_number: str
    status: TrackingStatus
    occurred_at: datetime
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "tracking_number": self.tracking_number,
            "status": self.status.value,
            "occurred_at": self.occurred_at.isoformat(),
            "detail": self.detail,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrackingUpdate:
        return cls(
            tracking_number=data["tracking_number"],
            status=TrackingStatus(data["status"]),
            occurred_at=datetime.fromisoformat(data["occurred_at"]),
            detail=data.get("detail", ""),
        )


@dataclass(frozen=True)
class ShipmentShipped:
    """The goods left the building: stock commits the reservation, the order follows."""

    order_id: str
    shipment_id: str
    location: str
    lines: tuple[ShipmentLine, ...]
    carrier: str
    tracking_number: str
    service_level: ServiceLevel
    shipped_at: datetime


@dataclass(frozen=True)
class ShipmentShortened:
    """A short-picked shipment will ship without `removed`; the order must re-plan those units."""

    order_id: str
    shipment_id: str
    location: str
    removed: tuple[ShipmentLine, ...]


@dataclass(frozen=True)
class TrackingStatusChanged:
    """The carrier moved the shipment to in transit, delivered or exception."""

    order_id: str
    shipment_id: str
    tracking_number: str
    status: ShipmentStatus
    occurred_at: datetime
    detail: str


@dataclass(frozen=True)
class ShipmentCancelled:
    """The shipment will not leave; `void_tracking_number` is a bought label to void, if any."""

    order_id: str
    shipment_id: str
    location: str
    lines: tuple[ShipmentLine, ...]
    reason: str
    void_tracking_number: str | None


def plan_unit_drops(
    shipments: Sequence[Shipment], wanted: Mapping[str, int]
) -> dict[str, dict[str, int]]:
    """Where to take cancelled units from (per shipment id, units per line id): the order's
    shipments that have not left, newest first. A whole shipment may be dropped until it
    ships (it is cancelled); part of one only while nobody has started picking it. Units
    that fit nowhere are not dropped: they ship as planned."""
    left = dict(wanted)
    plan: dict[str, dict[str, int]] = {}
    for shipment in reversed(shipments):
        if shipment.status.has_left_the_building or shipment.status is ShipmentStatus.CANCELLED:
            continue
        take = {
            line.line_id: min(line.quantity, left.get(line.line_id, 0)) for line in shipment.lines
        }
        take = {line_id: units for line_id, units in take.items() if units}
        whole = all(take.get(line.line_id) == line.quantity for line in shipment.lines)
        if not take or (not whole and shipment.status is not ShipmentStatus.CREATED):
            continue
        plan[shipment.shipment_id] = take
        for line_id, units in take.items():
            left[line_id] -= units
    return plan


@dataclass
class Shipment:
    """Units of one order that leave one location together, under one tracking number."""

    shipment_id: str
    order_id: str
    location: str
    ship_to: Address
    lines: tuple[ShipmentLine, ...]
    service_level: ServiceLevel = ServiceLevel.STANDARD
    status: ShipmentStatus = ShipmentStatus.CREATED
    picked: dict[str, int] = field(default_factory=dict)
    """Units picked per line_id, once the picks are confirmed."""
    packages: tuple[Package, ...] = ()
    label: Label | None = None
    shipped_at: datetime | None = None
    last_tracking: TrackingUpdate | None = None
    cancel_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The shipment as JSON-able data; the label's document is left out (stored apart)."""
        return {
            "shipment_id": self.shipment_id,
            "order_id": self.order_id,
            "location": self.location,
            "ship_to": self.ship_to.to_dict(),
            "lines": [line.to_dict() for line in self.lines],
            "service_level": self.service_level.value,
            "status": self.status.value,
            "picked": dict(self.picked),
            "packages": [package.to_dict() for package in self.packages],
            "label": self.label.to_dict() if self.label else None,
            "shipped_at": time_to_text(self.shipped_at),
            "last_tracking": self.last_tracking.to_dict() if self.last_tracking else None,
            "cancel_reason": self.cancel_reason,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], label_document: bytes = b"") -> Shipment:
        """The shipment `to_dict` described; `label_document` is the label's stored PDF."""
        return cls(
            shipment_id=data["shipment_id"],
            order_id=data["order_id"],
            location=data["location"],
            ship_to=Address.from_dict(data["ship_to"]),
            lines=tuple(ShipmentLine.from_dict(line) for line in data["lines"]),
            service_level=ServiceLevel(data["service_level"]),
            status=ShipmentStatus(data["status"]),
            picked=dict(data["picked"]),
            packages=tuple(Package.from_dict(package) for package in data["packages"]),
            label=Label.from_dict(data["label"], label_document) if data["label"] else None,
            shipped_at=time_from_text(data["shipped_at"]),
            last_tracking=(
                TrackingUpdate.from_dict(data["last_tracking"]) if data["last_tracking"] else None
            ),
            cancel_reason=data["cancel_reason"],
        )

    @property
    def short_lines(self) -> tuple[ShipmentLine, ...]:
        """Units requested but not found by the picker (empty unless picks are confirmed)."""
        if not self.picked:
            return ()
        return tuple(
            replace(line, quantity=line.quantity - self.picked[line.line_id])
            for line in self.lines
            if self.picked[line.line_id] < line.quantity
        )

    def start_picking(self) -> None:
        """A picker took the shipment's pick list."""
        self._require("start picking", ShipmentStatus.CREATED)
        self.status = ShipmentStatus.PICKING

    def record_picks(self, picked: Mapping[str, int]) -> tuple[ShipmentLine, ...]:
        """Confirm units picked per line_id; every line needs a count.

        All found: the shipment is picked. Anything short: it goes on hold and the short
        lines are returned (the pick list reports the bin's stock discrepancy).
        """
        self._require("confirm picks for", ShipmentStatus.PICKING)
        for line_id in picked.keys() - {line.line_id for line in self.lines}:
            raise InvalidPick(f"Shipment {self.shipment_id} has no line {line_id}.")
        for line in self.lines:
            count = picked.get(line.line_id)
            if count is None:
                raise InvalidPick(
                    f"Enter how many units of {line.sku} (line {line.line_id}) were picked "
                    f"for shipment {self.shipment_id}."
                )
            if not 0 <= count <= line.quantity:
                raise InvalidPick(
                    f"Shipment {self.shipment_id} needs {line.quantity} × {line.sku}; "
                    f"a pick of {count} is not possible."
                )
        self.picked = {line.line_id: picked[line.line_id] for line in self.lines}
        short = self.short_lines
        self.status = ShipmentStatus.ON_HOLD if short else ShipmentStatus.PICKED
        return short

    def repick(self) -> None:
        """Pick a held shipment again (the missing units turned up); earlier counts are dropped."""
        self._require("re-pick", ShipmentStatus.ON_HOLD)
        self.picked = {}
        self.status = ShipmentStatus.PICKING

    def ship_what_was_picked(self) -> ShipmentShortened:
        """Re-plan a held shipment down to the units actually picked."""
        self._require("ship what was picked for", ShipmentStatus.ON_HOLD)
        if not any(self.picked.values()):
            raise IllegalShipmentStep(
                f"Nothing was picked for shipment {self.shipment_id}; cancel it instead."
            )
        removed = self.short_lines
        self.lines = tuple(
            replace(line, quantity=self.picked[line.line_id])
            for line in self.lines
            if self.picked[line.line_id] > 0
        )
        self.picked = {line.line_id: line.quantity for line in self.lines}
        self.status = ShipmentStatus.PICKED
        return ShipmentShortened(
            order_id=self.order_id,
            shipment_id=self.shipment_id,
            location=self.location,
            removed=removed,
        )

    def drop_units(self, units: Mapping[str, int]) -> ShipmentShortened:
        """Take `units` (per line id) out of a shipment nobody has started to pick: the
        customer cancelled them. To drop every unit, cancel the shipment instead."""
        self._require("drop units from", ShipmentStatus.CREATED)
        removed = tuple(
            replace(line, quantity=min(line.quantity, units[line.line_id]))
            for line in self.lines
            if units.get(line.line_id, 0) > 0
        )
        kept = tuple(
            replace(line, quantity=line.quantity - units.get(line.line_id, 0))
            for line in self.lines
            if line.quantity > units.get(line.line_id, 0)
        )
        if not removed or not kept:
            raise IllegalShipmentStep(
                f"Dropping {dict(units)} from shipment {self.shipment_id} leaves "
                + ("nothing; cancel it instead." if removed else "it as it is.")
            )
        self.lines = kept
        return ShipmentShortened(
            order_id=self.order_id,
            shipment_id=self.shipment_id,
            location=self.location,
            removed=removed,
        )

    def pack(self, packages: Sequence[Package]) -> None:
        """Record the packages the picked goods went into."""
        self._require("pack", ShipmentStatus.PICKED)
        if not packages:
            raise PackingError(f"Shipment {self.shipment_id} needs at least one package.")
        self.packages = tuple(packages)
        self.status = ShipmentStatus.PACKED

    def record_label(self, label: Label) -> None:
        """Attach the carrier label bought for the packages."""
        self._require("label", ShipmentStatus.PACKED)
        self.label = label
        self.status = ShipmentStatus.LABELLED

    def ship(self, at: datetime) -> ShipmentShipped:
        """The carrier collected the packages."""
        self._require("ship", ShipmentStatus.LABELLED)
        assert self.label is not None  # labelled implies a label
        self.shipped_at = at
        self.status = ShipmentStatus.SHIPPED
        return ShipmentShipped(
            order_id=self.order_id,
            shipment_id=self.shipment_id,
            location=self.location,
            lines=self.lines,
            carrier=self.label.carrier,
            tracking_number=self.label.tracking_number,
            service_level=self.service_level,
            shipped_at=at,
        )

    def apply_tracking(self, update: TrackingUpdate) -> TrackingStatusChanged | None:
        """Move a shipped shipment by a carrier scan; duplicate and stale scans return None.

        Delivered is final: nothing after it moves the shipment. Otherwise the newest scan
        wins, so a late in-transit scan cannot undo a newer exception.
        """
        self._require("track", *_LEFT_THE_BUILDING)
        if self.label is None or update.tracking_number != self.label.tracking_number:
            raise FulfillmentError(
                f"Tracking number {update.tracking_number} does not belong to shipment "
                f"{self.shipment_id}."
            )
        if self.status is ShipmentStatus.DELIVERED:
            return None
        newest = self.last_tracking
        if (
            newest is not None
            and update.occurred_at <= newest.occurred_at
            and update.status is not TrackingStatus.DELIVERED
        ):
            return None
        self.last_tracking = update
        status = ShipmentStatus(update.status.value)
        if status is self.status:
            return None
        self.status = status
        return TrackingStatusChanged(
            order_id=self.order_id,
            shipment_id=self.shipment_id,
            tracking_number=update.tracking_number,
            status=status,
            occurred_at=update.occurred_at,
            detail=update.detail,
        )

    def cancel(self, reason: str) -> ShipmentCancelled | None:
        """Cancel before shipping; None if already cancelled. After shipping, raise
        `CancelRefused`: the goods are gone and only a return brings them back."""
        if self.status is ShipmentStatus.CANCELLED:
            return None
        if self.status.has_left_the_building:
            raise CancelRefused(
                f"Cannot cancel shipment {self.shipment_id}: it {_WHERE_IT_STANDS[self.status]}"
                f" ({self._carrier_reference()}). Authorize a return instead."
            )
        self.status = ShipmentStatus.CANCELLED
        self.cancel_reason = reason
        return ShipmentCancelled(
            order_id=self.order_id,
            shipment_id=self.shipment_id,
            location=self.location,
            lines=self.lines,
            reason=reason,
            void_tracking_number=self.label.tracking_number if self.label else None,
        )

    def _carrier_reference(self) -> str:
        assert self.label is not None  # shipped implies a label
        return f"{self.label.carrier} {self.label.tracking_number}"

    def _require(self, action: str, *allowed: ShipmentStatus) -> None:
        if self.status in allowed:
            return
        message = (
            f"Cannot {action} shipment {self.shipment_id}: it {_WHERE_IT_STANDS[self.status]}."
        )
        if next_step := _NEXT_STEP.get(self.status):
            message += f" Next step: {next_step}."
        raise IllegalShipmentStep(message)
