"""Returns (RMA): authorize, receive, inspect.

A line can be returned up to what has shipped minus what earlier returns claim. An open
(authorized, not yet received) return claims its authorized units, so two RMAs raised at once
cannot together exceed what shipped; once received, a return claims what actually arrived.
Inspection decides per unit whether it goes back on the shelf (restock) or is written off;
one order line may be split between both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from stockflow.fulfillment.domain.common import ShipmentLine, time_from_text, time_to_text
from stockflow.fulfillment.domain.errors import ReturnRefused
from stockflow.fulfillment.domain.shipment import Shipment


class ReturnCondition(StrEnum):
    RESTOCK = "restock"
    WRITE_OFF = "write_off"


class ReturnStatus(StrEnum):
    AUTHORIZED = "authorized"
    RECEIVED = "received"
    INSPECTED = "inspected"


@dataclass(frozen=True)
class Inspection:
    """The inspector's verdict on some units of one returned line."""

    line_id: str
    quantity: int
    condition: ReturnCondition


@dataclass(frozen=True)
class InspectedLine:
    line_id: str
    sku: str
    quantity: int
    condition: ReturnCondition


@dataclass(frozen=True)
class ReturnReceived:
    """An inspected return: stock restocks or writes off each line at `location`."""

    rma_id: str
    order_id: str
    location: str
    received_at: datetime
    lines: tuple[InspectedLine, ...]


@dataclass
class ReturnAuthorization:
    """An RMA: units of shipped order lines the customer may send back."""

    rma_id: str
    order_id: str
    lines: tuple[ShipmentLine, ...]
    reason: str
    status: ReturnStatus = ReturnStatus.AUTHORIZED
    received: tuple[ShipmentLine, ...] = ()
    location: str | None = None
    """Where the return arrived (and where restocked units go)."""
    received_at: datetime | None = None
    inspections: tuple[Inspection, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The return as JSON-able data."""
        return {
            "rma_id": self.rma_id,
            "order_id": self.order_id,
            "lines": [line.to_dict() for line in self.lines],
            "reason": self.reason,
            "status": self.status.value,
            "received": [line.to_dict() for line in self.received],
            "location": self.location,
            "received_at": time_to_text(self.received_at),
            "inspections": [
                {"line_id": i.line_id, "quantity": i.quantity, "condition": i.condition.value}
                for i in self.inspections
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReturnAuthorization:
        return cls(
            rma_id=data["rma_id"],
            order_id=data["order_id"],
            lines=tuple(ShipmentLine.from_dict(line) for line in data["lines"]),
            reason=data["reason"],
            status=ReturnStatus(data["status"]),
            received=tuple(ShipmentLine.from_dict(line) for line in data["received"]),
            location=data["location"],
            received_at=time_from_text(data["received_at"]),
            inspections=tuple(
                Inspection(i["line_id"], i["quantity"], ReturnCondition(i["condition"]))
                for i in data["inspections"]
            ),
        )

    def claimed(self, line_id: str) -> int:
        """Units of `line_id` this return counts against what was shipped."""
        lines = self.lines if self.status is ReturnStatus.AUTHORIZED else self.received
        return sum(line.quantity for line in lines if line.line_id == line_id)

    def receive(
        self, location: str, at: datetime, quantities: Mapping[str, int] | None = None
    ) -> None:
        """The parcel arrived at `location`; `quantities` per line_id if not all authorized units
        came back (lines left out count as 0)."""
        if self.status is not ReturnStatus.AUTHORIZED:
            raise ReturnRefused(f"Return {self.rma_id} was already received.")
        if quantities is None:
            received = self.lines
        else:
            authorized = {line.line_id: line for line in self.lines}
            for line_id, quantity in quantities.items():
                line = authorized.get(line_id)
                if line is None:
                    raise ReturnRefused(f"Line {line_id} is not on return {self.rma_id}.")
                if not 0 <= quantity <= line.quantity:
                    raise ReturnRefused(
                        f"Return {self.rma_id} authorizes {line.quantity} × {line.sku}; "
                        f"{quantity} cannot be received against it."
                    )
            received = tuple(
                ShipmentLine(line.line_id, line.sku, quantities.get(line.line_id, 0))
                for line in self.lines
                if quantities.get(line.line_id, 0) > 0
            )
        if not received:
            raise ReturnRefused(
                f"Nothing was received for return {self.rma_id}; leave it open until goods arrive."
            )
        self.received = received
        self.location = location
        self.received_at = at
        self.status = ReturnStatus.RECEIVED

    def inspect(self, inspections: Sequence[Inspection]) -> ReturnReceived:
        """Record restock or write-off for every received unit and produce ReturnReceived."""
        if self.status is not ReturnStatus.RECEIVED:
            state = "already inspected" if self.status is ReturnStatus.INSPECTED else "not received"
            raise ReturnRefused(f"Cannot inspect return {self.rma_id}: it is {state}.")
        received = {line.line_id: line for line in self.received}
        judged: dict[str, int] = {}
        for inspection in inspections:
            if inspection.line_id not in received:
                raise ReturnRefused(
                    f"Line {inspection.line_id} was not received on return {self.rma_id}."
                )
            if inspection.quantity <= 0:
                raise ReturnRefused("Each inspection covers at least one unit.")
            judged[inspection.line_id] = judged.get(inspection.line_id, 0) + inspection.quantity
        for line in self.received:
            if judged.get(line.line_id, 0) != line.quantity:
                raise ReturnRefused(
                    f"{line.quantity} × {line.sku} (line {line.line_id}) arrived on return "
                    f"{self.rma_id}; inspect exactly {line.quantity}, not "
                    f"{judged.get(line.line_id, 0)}."
                )
        assert self.location is not None and self.received_at is not None  # set by receive
        self.inspections = tuple(inspections)
        self.status = ReturnStatus.INSPECTED
        return ReturnReceived(
            rma_id=self.rma_id,
            order_id=self.order_id,
            location=self.location,
            received_at=self.received_at,
            lines=tuple(
                InspectedLine(
                    inspection.line_id,
                    received[inspection.line_id].sku,
                    inspection.quantity,
                    inspection.condition,
                )
                for inspection in inspections
            ),
        )


def returnable(
    shipments: Sequence[Shipment], returns: Sequence[ReturnAuthorization]
) -> dict[str, ShipmentLine]:
    """Per line_id: units shipped (shipped or later) minus units earlier returns claim."""
    return {
        line_id: ShipmentLine(
            line_id, line.sku, line.quantity - sum(rma.claimed(line_id) for rma in returns)
        )
        for line_id, line in _shipped(shipments).items()
    }


def _shipped(shipments: Sequence[Shipment]) -> dict[str, ShipmentLine]:
    shipped: dict[str, ShipmentLine] = {}
    for shipment in shipments:
        if not shipment.status.has_left_the_building:
            continue
        for line in shipment.lines:
            so_far = shipped.get(line.line_id)
            shipped[line.line_id] = ShipmentLine(
                line.line_id, line.sku, line.quantity + (so_far.quantity if so_far else 0)
            )
    return shipped


def authorize_return(
    rma_id: str,
    order_id: str,
    requested: Mapping[str, int],
    shipments: Sequence[Shipment],
    earlier_returns: Sequence[ReturnAuthorization],
    reason: str,
) -> ReturnAuthorization:
    """Authorize returning `requested` units per line_id of the order's shipped lines.

    Raises `ReturnRefused` for a line that never shipped or a quantity above what is left to
    return (shipped - already returned or on an open return).
    """
    if not requested or any(quantity <= 0 for quantity in requested.values()):
        raise ReturnRefused("A return needs at least one line, each with one unit or more.")
    shipped = {line_id: line.quantity for line_id, line in _shipped(shipments).items()}
    left = returnable(shipments, earlier_returns)
    lines: list[ShipmentLine] = []
    for line_id, quantity in requested.items():
        line = left.get(line_id)
        if line is None:
            raise ReturnRefused(
                f"Line {line_id} of order {order_id} has not been shipped; nothing to return."
            )
        if quantity > line.quantity:
            raise ReturnRefused(
                f"Cannot return {quantity} × {line.sku} (line {line_id}): "
                f"{shipped[line_id]} shipped, {shipped[line_id] - line.quantity} already "
                f"returned or on an open return, so at most {line.quantity} can be returned."
            )
        lines.append(ShipmentLine(line_id, line.sku, quantity))
    return ReturnAuthorization(rma_id=rma_id, order_id=order_id, lines=tuple(lines), reason=reason)
