"""The saga's value: an order, where it stands, and what has been reserved, shipped and returned.

Everything here is immutable; `decide` returns a new `OrderSaga` with `version` bumped.
`to_dict`/`from_dict` give the plain-JSON form the store keeps as JSONB.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any


class OrderState(StrEnum):
    RECEIVED = "received"
    RESERVING = "reserving"
    AWAITING_PAYMENT = "awaiting_payment"
    CONFIRMED = "confirmed"
    PARTIALLY_SHIPPED = "partially_shipped"
    SHIPPED = "shipped"
    DELIVERED = "delivered"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    RETURNED = "returned"

    @property
    def is_terminal(self) -> bool:
        """No further progress is expected (returns may still arrive after delivery)."""
        return self in TERMINAL_STATES

    @property
    def is_settled(self) -> bool:
        """The reservation saga is over: confirmed, or any state after or beyond it."""
        return self in SETTLED_STATES


TERMINAL_STATES = frozenset(
    {OrderState.REJECTED, OrderState.CANCELLED, OrderState.DELIVERED, OrderState.RETURNED}
)
SETTLED_STATES = TERMINAL_STATES | {
    OrderState.CONFIRMED,
    OrderState.PARTIALLY_SHIPPED,
    OrderState.SHIPPED,
}
SHIPPING_STARTED = frozenset(
    {
        OrderState.PARTIALLY_SHIPPED,
        OrderState.SHIPPED,
        OrderState.DELIVERED,
        OrderState.RETURNED,
    }
)


class PaymentStatus(StrEnum):
    AUTHORIZED = "authorized"
    PENDING = "pending"


class BackorderPolicy(StrEnum):
    ALLOW = "allow"
    REJECT = "reject"
    # Not given by the checkout: each SKU's catalog flag decides (stock knows it).
    PER_SKU = "per_sku"

    @property
    def wire(self) -> str | None:
        """The contract's value: "allow", "reject", or None for per-SKU."""
        return None if self is BackorderPolicy.PER_SKU else self.value


class FulfillmentExceptionPolicy(StrEnum):
    """What happens to units the warehouse cannot ship (short pick, shipment it cancelled)."""

    CANCEL_REMAINDER = "cancel_remainder"
    """The units are cancelled: the customer is told, the reservation released."""
    REALLOCATE = "reallocate"
    """The units are released where they were and wait on the line's backorder: stock serves
    them at once from any location that has them, else when goods arrive; each allocation
    becomes a new shipment. An order that refuses backorders is cancelled instead."""


@dataclass(frozen=True)
class HeldAtLocation:
    """Units of a line held at one stock location."""

    location: str
    quantity: int


@dataclass(frozen=True)
class LineQuantity:
    """A quantity of one order line (in a shipment or a return)."""

    line_id: str
    quantity: int


@dataclass(frozen=True)
class SagaLine:
    """An ordered line and its progress: held stock, outstanding backorder, shipped, returned."""

    line_id: str
    sku: str
    quantity: int
    unit_price: Decimal
    allocations: tuple[HeldAtLocation, ...] = ()
    backordered: int = 0
    untracked: bool = False
    shipped: int = 0
    returned: int = 0
    cancelled: int = 0

    @property
    def outstanding(self) -> int:
        """Units still to ship: ordered, less shipped and cancelled (none for untracked goods)."""
        return 0 if self.untracked else self.quantity - self.shipped - self.cancelled

    @property
    def reserved(self) -> int:
        """Units held for this line; goods that are not stock-tracked count as held in full."""
        if self.untracked:
            return self.quantity
        return sum(allocation.quantity for allocation in self.allocations)


@dataclass(frozen=True)
class SagaShipment:
    shipment_id: str
    lines: tuple[LineQuantity, ...]
    delivered: bool = False


@dataclass(frozen=True)
class PlannedShipment:
    """A shipment fulfillment created and has not shipped: its location and units per line."""

    shipment_id: str
    location: str
    lines: tuple[LineQuantity, ...]


@dataclass(frozen=True)
class OrderSaga:
    """One order's reservation saga and lifecycle.

    `fingerprint` identifies the submitted payload (see `submission_fingerprint`).
    `reason` says why a rejected or cancelled order ended. `stock_reply_due_at` is when the
    current RequestReservation attempt times out; `stuck` is set once the attempts are used up.
    `planned` are the shipments waiting to leave; `handled` the business keys of warehouse
    reports and change requests already applied (`shortened:S1`, `cancelled:S2`,
    `cancel:REQ-1`), so the same fact again under a new event id changes nothing.
    """

    order_id: str
    fingerprint: str
    state: OrderState = OrderState.RECEIVED
    version: int = 0
    currency: str = ""
    lines: tuple[SagaLine, ...] = ()
    payment: PaymentStatus = PaymentStatus.AUTHORIZED
    payment_deadline: datetime | None = None
    backorder_policy: BackorderPolicy = BackorderPolicy.ALLOW
    reserve_attempts: int = 0
    stock_reply_due_at: datetime | None = None
    stuck: bool = False
    reason: str | None = None
    shipments: tuple[SagaShipment, ...] = ()
    return_ids: tuple[str, ...] = ()
    exception_policy: FulfillmentExceptionPolicy = FulfillmentExceptionPolicy.CANCEL_REMAINDER
    planned: tuple[PlannedShipment, ...] = ()
    handled: tuple[str, ...] = ()

    def line(self, line_id: str) -> SagaLine | None:
        return next((line for line in self.lines if line.line_id == line_id), None)

    def shipment(self, shipment_id: str) -> SagaShipment | None:
        return next((s for s in self.shipments if s.shipment_id == shipment_id), None)

    def planned_shipment(self, shipment_id: str) -> PlannedShipment | None:
        return next((s for s in self.planned if s.shipment_id == shipment_id), None)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready form: decimals as strings, times as RFC 3339."""
        return {
            "order_id": self.order_id,
            "fingerprint": self.fingerprint,
            "state": self.state.value,
            "version": self.version,
            "currency": self.currency,
            "lines": [
                {
                    "line_id": line.line_id,
                    "sku": line.sku,
                    "quantity": line.quantity,
                    "unit_price": str(line.unit_price),
                    "allocations": [
                        {"location": a.location, "quantity": a.quantity} for a in line.allocations
                    ],
                    "backordered": line.backordered,
                    "untracked": line.untracked,
                    "shipped": line.shipped,
                    "returned": line.returned,
                    "cancelled": line.cancelled,
                }
                for line in self.lines
            ],
            "payment": self.payment.value,
            "payment_deadline": _time_to_json(self.payment_deadline),
            "backorder_policy": self.backorder_policy.value,
            "reserve_attempts": self.reserve_attempts,
            "stock_reply_due_at": _time_to_json(self.stock_reply_due_at),
            "stuck": self.stuck,
            "reason": self.reason,
            "shipments": [
                {
                    "shipment_id": s.shipment_id,
                    "lines": [{"line_id": q.line_id, "quantity": q.quantity} for q in s.lines],
                    "delivered": s.delivered,
                }
                for s in self.shipments
            ],
            "return_ids": list(self.return_ids),
            "exception_policy": self.exception_policy.value,
            "planned": [
                {
                    "shipment_id": s.shipment_id,
                    "location": s.location,
                    "lines": [{"line_id": q.line_id, "quantity": q.quantity} for q in s.lines],
                }
                for s in self.planned
            ],
            "handled": list(self.handled),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OrderSaga:
        """Inverse of `to_dict`."""
        return cls(
            order_id=data["order_id"],
            fingerprint=data["fingerprint"],
            state=OrderState(data["state"]),
            version=data["version"],
            currency=data["currency"],
            lines=tuple(
                SagaLine(
                    line_id=line["line_id"],
                    sku=line["sku"],
                    quantity=line["quantity"],
                    unit_price=Decimal(line["unit_price"]),
                    allocations=tuple(
                        HeldAtLocation(a["location"], a["quantity"]) for a in line["allocations"]
                    ),
                    backordered=line["backordered"],
                    untracked=line["untracked"],
                    shipped=line["shipped"],
                    returned=line["returned"],
                    cancelled=line.get("cancelled", 0),
                )
                for line in data["lines"]
            ),
            payment=PaymentStatus(data["payment"]),
            payment_deadline=_time_from_json(data["payment_deadline"]),
            backorder_policy=BackorderPolicy(data["backorder_policy"]),
            reserve_attempts=data["reserve_attempts"],
            stock_reply_due_at=_time_from_json(data["stock_reply_due_at"]),
            stuck=data["stuck"],
            reason=data["reason"],
            shipments=tuple(
                SagaShipment(
                    shipment_id=s["shipment_id"],
                    lines=tuple(LineQuantity(q["line_id"], q["quantity"]) for q in s["lines"]),
                    delivered=s["delivered"],
                )
                for s in data["shipments"]
            ),
            return_ids=tuple(data["return_ids"]),
            # Sagas saved before these fields existed read with the defaults.
            exception_policy=FulfillmentExceptionPolicy(
                data.get("exception_policy", FulfillmentExceptionPolicy.CANCEL_REMAINDER)
            ),
            planned=tuple(
                PlannedShipment(
                    s["shipment_id"],
                    s["location"],
                    tuple(LineQuantity(q["line_id"], q["quantity"]) for q in s["lines"]),
                )
                for s in data.get("planned", ())
            ),
            handled=tuple(data.get("handled", ())),
        )


def _time_to_json(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _time_from_json(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)
