"""What the saga hears (inputs), what it asks for (effects) and how it explains itself (timeline).

Every input carries `cause_id`: the id of the event (or timer) that caused it, and
`cause_type`: the name the timeline records for it (kept when a class is renamed, since the
timeline is what operators read). The use cases translate contract events into inputs, and
effects into outbox rows and timer rows; nothing here knows about Kafka or SQL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar

from stockflow.contracts.events.orders import Violation
from stockflow.order.domain.model import (
    BackorderPolicy,
    HeldAtLocation,
    LineQuantity,
    OrderSaga,
    OrderState,
    PaymentStatus,
    SagaLine,
)

# Inputs -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InvalidSubmission:
    """A checkout submission the contract refused that still names a usable order id.

    `fingerprint` is of its JSON data, `currency` whatever it gave (for the record), and
    `violations` the contract's errors in its order.
    """

    cause_id: str
    order_id: str
    fingerprint: str
    currency: str
    violations: tuple[Violation, ...]


@dataclass(frozen=True)
class LineReservation:
    """Stock's answer for one line: units held per location and units put on backorder.

    `untracked` goods (digital, services) are not stock-kept: stock holds nothing for them.
    """

    line_id: str
    allocations: tuple[HeldAtLocation, ...] = ()
    backordered: int = 0
    untracked: bool = False


@dataclass(frozen=True)
class StockHeld:
    cause_type: ClassVar[str] = "StockReserved"
    cause_id: str
    lines: tuple[LineReservation, ...]


@dataclass(frozen=True)
class Shortfall:
    sku: str
    requested: int
    available: int


@dataclass(frozen=True)
class StockRefused:
    """Stock held nothing; `reason` is insufficient_stock, unknown_sku or discontinued."""

    cause_type: ClassVar[str] = "ReservationRejected"
    cause_id: str
    reason: str
    lines: tuple[Shortfall, ...] = ()


@dataclass(frozen=True)
class CancelRequested:
    cause_type: ClassVar[str] = "CancelRequested"
    cause_id: str
    reason: str


@dataclass(frozen=True)
class PaymentConfirmed:
    cause_type: ClassVar[str] = "PaymentConfirmed"
    cause_id: str


@dataclass(frozen=True)
class PaymentDeadlinePassed:
    """The payment-deadline timer fired."""

    cause_type: ClassVar[str] = "PaymentDeadlinePassed"
    cause_id: str


@dataclass(frozen=True)
class StockReplyTimedOut:
    """The stock-reply timer fired; `attempt` echoes `SetTimer.attempt` so stale timers are
    recognised."""

    cause_type: ClassVar[str] = "StockReplyTimedOut"
    cause_id: str
    attempt: int


@dataclass(frozen=True)
class BackorderFilled:
    cause_type: ClassVar[str] = "BackorderAllocated"
    cause_id: str
    line_id: str
    location: str
    quantity: int


@dataclass(frozen=True)
class Shipped:
    cause_type: ClassVar[str] = "Shipped"
    cause_id: str
    shipment_id: str
    lines: tuple[LineQuantity, ...]


@dataclass(frozen=True)
class Delivered:
    cause_type: ClassVar[str] = "Delivered"
    cause_id: str
    shipment_id: str


@dataclass(frozen=True)
class CarrierException:
    """The carrier reported a problem with a shipment on its way (lost, damaged, undeliverable).

    Not final: a delivered scan may still follow."""

    cause_type: ClassVar[str] = "ShipmentException"
    cause_id: str
    shipment_id: str
    detail: str


@dataclass(frozen=True)
class Returned:
    """A return (RMA) received by fulfillment."""

    cause_type: ClassVar[str] = "Returned"
    cause_id: str
    rma_id: str
    lines: tuple[LineQuantity, ...]


@dataclass(frozen=True)
class ShipmentPlanned:
    """Fulfillment created a shipment of these units at `location`."""

    cause_type: ClassVar[str] = "ShipmentCreated"
    cause_id: str
    shipment_id: str
    location: str
    lines: tuple[LineQuantity, ...]


@dataclass(frozen=True)
class ShipmentShortened:
    """A shipment leaves without `removed` units: not found at `location` (a short pick), or
    dropped for the order's lines-cancel request `cancel_request_id` (for `reason`)."""

    cause_type: ClassVar[str] = "ShipmentShortened"
    cause_id: str
    shipment_id: str
    location: str
    removed: tuple[LineQuantity, ...]
    cancel_request_id: str | None = None
    reason: str = ""


@dataclass(frozen=True)
class ShipmentCancelled:
    """A shipment will not leave: the warehouse cancelled it, the order's cancel did, or the
    order's lines-cancel request `cancel_request_id` took every unit it had."""

    cause_type: ClassVar[str] = "ShipmentCancelled"
    cause_id: str
    shipment_id: str
    reason: str
    cancel_request_id: str | None = None


@dataclass(frozen=True)
class LinesCancelRequested:
    """The customer or support asked to cancel units of lines (request `request_id`)."""

    cause_type: ClassVar[str] = "LinesCancelRequested"
    cause_id: str
    request_id: str
    lines: tuple[LineQuantity, ...]
    reason: str


SagaInput = (
    StockHeld
    | StockRefused
    | CancelRequested
    | PaymentConfirmed
    | PaymentDeadlinePassed
    | StockReplyTimedOut
    | BackorderFilled
    | Shipped
    | Delivered
    | CarrierException
    | Returned
    | ShipmentPlanned
    | ShipmentShortened
    | ShipmentCancelled
    | LinesCancelRequested
)

# Effects ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReservationLine:
    line_id: str
    sku: str
    quantity: int


@dataclass(frozen=True)
class RequestReservation:
    """Command to stock: hold every line (all or nothing, unless backorders are allowed).

    Re-sent on timeout with the same content; stock must treat it idempotently per order.
    """

    order_id: str
    lines: tuple[ReservationLine, ...]
    backorder_policy: BackorderPolicy
    attempt: int


@dataclass(frozen=True)
class ReleaseUnits:
    """Units of a line held at a location; `not_found` when the picker did not find them;
    `backorder` when the line waits for them again (stock queues them)."""

    line_id: str
    sku: str
    location: str
    quantity: int
    not_found: bool = False
    backorder: bool = False


@dataclass(frozen=True)
class RequestRelease:
    """Command to stock: release whatever is held (or queued on backorder) for the order, or
    only `lines` when given."""

    order_id: str
    reason: str
    lines: tuple[ReleaseUnits, ...] = ()


# What the order publishes on orders.events.v1 (key order_id); `publications` builds each
# contract event from one of these and the facts the saga does not keep.


@dataclass(frozen=True)
class AnnounceAccepted:
    """order.accepted.v1: the submission passed the contract; stock is being asked."""

    order_id: str
    currency: str
    payment: PaymentStatus
    backorder_policy: BackorderPolicy
    lines: tuple[SagaLine, ...]


@dataclass(frozen=True)
class AnnounceConfirmed:
    """order.confirmed.v1: every line held or backordered, payment authorized."""

    order_id: str
    currency: str
    lines: tuple[SagaLine, ...]


@dataclass(frozen=True)
class AnnounceRejected:
    """order.rejected.v1: stock refused (`shortfalls`) or the submission was invalid
    (`violations`, reason invalid_order)."""

    order_id: str
    reason: str
    shortfalls: tuple[Shortfall, ...] = ()
    violations: tuple[Violation, ...] = ()


@dataclass(frozen=True)
class AnnounceCancelled:
    """order.cancelled.v1."""

    order_id: str
    reason: str


@dataclass(frozen=True)
class AnnounceLineCancelled:
    """order.line_cancelled.v1: `quantity` units of a line will not ship; `remaining` not
    cancelled."""

    order_id: str
    line_id: str
    sku: str
    quantity: int
    reason: str
    remaining: int


@dataclass(frozen=True)
class AnnounceLinesCancelRequested:
    """order.lines_cancel_requested.v1: fulfillment is to drop these units (`ShippedUnits`:
    line, sku, quantity) from the shipments that have not left."""

    order_id: str
    request_id: str
    lines: tuple[ShippedUnits, ...]
    reason: str


@dataclass(frozen=True)
class AnnounceCancelRefused:
    """order.cancel_refused.v1: too late to cancel (`reason`); `requested_reason` is the
    customer's."""

    order_id: str
    reason: str
    requested_reason: str


@dataclass(frozen=True)
class AnnounceBackorderFilled:
    """order.backorder.allocated.v1: `quantity` units of a backordered line are held at
    `location`; `backordered` still wait."""

    order_id: str
    line_id: str
    sku: str
    location: str
    quantity: int
    backordered: int


@dataclass(frozen=True)
class ShippedUnits:
    """Units of one line in a shipment."""

    line_id: str
    sku: str
    quantity: int


@dataclass(frozen=True)
class AnnounceShipped:
    """order.shipped.v1 (the location comes from fulfillment's event)."""

    order_id: str
    shipment_id: str
    lines: tuple[ShippedUnits, ...]
    fully_shipped: bool


@dataclass(frozen=True)
class AnnounceDelivered:
    """order.delivered.v1: every shipment arrived (none, for an order of untracked goods)."""

    order_id: str
    shipment_ids: tuple[str, ...]


@dataclass(frozen=True)
class AnnounceReturned:
    """order.returned.v1 (the returned lines as fulfillment reported them)."""

    order_id: str
    rma_id: str
    fully_returned: bool


@dataclass(frozen=True)
class AnnounceStuck:
    """order.stuck.v1: the saga gave up waiting; an operator must look."""

    order_id: str
    state: OrderState
    attempts: int
    reason: str


Announcement = (
    AnnounceAccepted
    | AnnounceConfirmed
    | AnnounceRejected
    | AnnounceCancelled
    | AnnounceCancelRefused
    | AnnounceLineCancelled
    | AnnounceLinesCancelRequested
    | AnnounceBackorderFilled
    | AnnounceShipped
    | AnnounceDelivered
    | AnnounceReturned
    | AnnounceStuck
)


class TimerKind(StrEnum):
    STOCK_REPLY = "stock_reply"
    PAYMENT_DEADLINE = "payment_deadline"


@dataclass(frozen=True)
class SetTimer:
    """Arm (or re-arm, replacing) the order's timer of this kind.

    `attempt` is the RequestReservation attempt a stock-reply timer guards (0 for the payment
    deadline); hand it back in `StockReplyTimedOut`.
    """

    kind: TimerKind
    fire_at: datetime
    attempt: int = 0


@dataclass(frozen=True)
class CancelTimer:
    kind: TimerKind


Effect = RequestReservation | RequestRelease | Announcement | SetTimer | CancelTimer

# Outcome ------------------------------------------------------------------------------------


class Outcome(StrEnum):
    APPLIED = "applied"
    """The saga changed (state or data) and its version was bumped."""
    IGNORED = "ignored"
    """A duplicate, stale or late input: harmless, nothing changed."""
    REFUSED = "refused"
    """An input the saga does not allow in its state, or that contradicts what it knows."""


@dataclass(frozen=True)
class TimelineEntry:
    at: datetime
    from_state: OrderState
    to_state: OrderState
    cause_type: str
    cause_id: str
    outcome: Outcome
    note: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "from_state": self.from_state.value,
            "to_state": self.to_state.value,
            "cause_type": self.cause_type,
            "cause_id": self.cause_id,
            "outcome": self.outcome.value,
            "note": self.note,
        }


@dataclass(frozen=True)
class Decision:
    """The saga after one input, the effects to stage in the same transaction, and the
    one timeline entry that records why."""

    saga: OrderSaga
    timeline: TimelineEntry
    effects: tuple[Effect, ...] = field(default=())

    @property
    def changed(self) -> bool:
        """True when the store must write the saga (its version was bumped)."""
        return self.timeline.outcome is Outcome.APPLIED
