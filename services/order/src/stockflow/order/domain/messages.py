"""What the saga hears (inputs), what it asks for (effects) and how it explains itself (timeline).

Every input carries `cause_id`: the id of the event (or timer) that caused it, so the timeline
can name it. Handlers translate wire messages into inputs and effects into outbox rows and
timer rows; nothing here knows about Kafka or SQL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from stockflow.order.domain.intake import Violation
from stockflow.order.domain.model import (
    Allocation,
    BackorderPolicy,
    LineQuantity,
    OrderSaga,
    OrderState,
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
    allocations: tuple[Allocation, ...] = ()
    backordered: int = 0
    untracked: bool = False


@dataclass(frozen=True)
class StockReserved:
    cause_id: str
    lines: tuple[LineReservation, ...]


@dataclass(frozen=True)
class Shortfall:
    sku: str
    requested: int
    available: int


@dataclass(frozen=True)
class ReservationRejected:
    """Stock held nothing; `reason` is insufficient_stock, unknown_sku or discontinued."""

    cause_id: str
    reason: str
    lines: tuple[Shortfall, ...] = ()


@dataclass(frozen=True)
class CancelRequested:
    cause_id: str
    reason: str


@dataclass(frozen=True)
class PaymentConfirmed:
    cause_id: str


@dataclass(frozen=True)
class PaymentDeadlinePassed:
    """The payment-deadline timer fired."""

    cause_id: str


@dataclass(frozen=True)
class StockReplyTimedOut:
    """The stock-reply timer fired; `attempt` echoes `SetTimer.attempt` so stale timers are
    recognised."""

    cause_id: str
    attempt: int


@dataclass(frozen=True)
class BackorderAllocated:
    cause_id: str
    line_id: str
    location: str
    quantity: int


@dataclass(frozen=True)
class Shipped:
    cause_id: str
    shipment_id: str
    lines: tuple[LineQuantity, ...]


@dataclass(frozen=True)
class Delivered:
    cause_id: str
    shipment_id: str


@dataclass(frozen=True)
class Returned:
    """A return (RMA) received by fulfillment."""

    cause_id: str
    rma_id: str
    lines: tuple[LineQuantity, ...]


SagaInput = (
    StockReserved
    | ReservationRejected
    | CancelRequested
    | PaymentConfirmed
    | PaymentDeadlinePassed
    | StockReplyTimedOut
    | BackorderAllocated
    | Shipped
    | Delivered
    | Returned
)

# Effects ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReserveLine:
    line_id: str
    sku: str
    quantity: int


@dataclass(frozen=True)
class ReserveStock:
    """Command to stock: hold every line (all or nothing, unless backorders are allowed).

    Re-sent on timeout with the same content; stock must treat it idempotently per order.
    """

    order_id: str
    lines: tuple[ReserveLine, ...]
    backorder_policy: BackorderPolicy
    attempt: int


@dataclass(frozen=True)
class ReleaseReservation:
    """Command to stock: release whatever is held (or queued on backorder) for the order."""

    order_id: str
    reason: str


class OrderEventType(StrEnum):
    ACCEPTED = "order.accepted.v1"
    CONFIRMED = "order.confirmed.v1"
    REJECTED = "order.rejected.v1"
    CANCELLED = "order.cancelled.v1"
    CANCEL_REFUSED = "order.cancel_refused.v1"
    BACKORDER_ALLOCATED = "order.backorder.allocated.v1"
    SHIPPED = "order.shipped.v1"
    DELIVERED = "order.delivered.v1"
    RETURNED = "order.returned.v1"
    STUCK = "order.stuck.v1"


@dataclass(frozen=True)
class PublishEvent:
    """An integration event for orders.events.v1, keyed by `data["order_id"]`.

    `data` is JSON-ready (decimal strings, integers) and always contains `order_id`.
    """

    type: OrderEventType
    data: dict[str, Any]


class TimerKind(StrEnum):
    STOCK_REPLY = "stock_reply"
    PAYMENT_DEADLINE = "payment_deadline"


@dataclass(frozen=True)
class SetTimer:
    """Arm (or re-arm, replacing) the order's timer of this kind.

    `attempt` is the ReserveStock attempt a stock-reply timer guards (0 for the payment
    deadline); hand it back in `StockReplyTimedOut`.
    """

    kind: TimerKind
    fire_at: datetime
    attempt: int = 0


@dataclass(frozen=True)
class CancelTimer:
    kind: TimerKind


Effect = ReserveStock | ReleaseReservation | PublishEvent | SetTimer | CancelTimer

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
