"""`orders.events.v1` (key order_id): the life of every order."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, StrictBool, StringConstraints, model_validator

from stockflow.contracts.base import Event, register
from stockflow.contracts.events._shared import (
    MAX_ALLOCATIONS,
    MAX_LINES,
    Address,
    Allocation,
    BackorderPolicy,
    Count,
    LineItem,
    LocatedLine,
    Part,
    PricedLine,
    RejectionReason,
    Text,
)
from stockflow.contracts.events.fulfillment import ReturnLine
from stockflow.contracts.types import (
    Currency,
    Identifier,
    LocationCode,
    LongText,
    NonNegativeMoney,
    NonNegativeQuantity,
    Quantity,
    ShortText,
    Sku,
    Timestamp,
)

TOPIC = "orders.events.v1"


class OrderLine(PricedLine):
    """A line of an accepted order."""


class ConfirmedLine(Part):
    """A confirmed line: how much is reserved (where) and how much waits on a backorder.

    An `untracked` line (digital goods, services) is not stock-kept: it counts as reserved in
    full and has no allocations. It never ships: confirmation delivers it, so accounting
    recognises its revenue on this event.
    """

    line_id: Identifier
    sku: Sku
    quantity: Quantity
    reserved: NonNegativeQuantity
    backordered: NonNegativeQuantity
    unit_price: NonNegativeMoney
    allocations: list[Allocation] = Field(default_factory=list, max_length=MAX_ALLOCATIONS)
    untracked: StrictBool = False
    expected_date: Timestamp | None = Field(
        default=None, description="When the backordered units are expected, if stock knows."
    )

    @model_validator(mode="after")
    def _adds_up(self) -> ConfirmedLine:
        if self.reserved + self.backordered != self.quantity:
            raise ValueError("reserved + backordered must equal quantity")
        return self


class RejectedLine(Part):
    """A line at fault: requested versus available.

    Deliberately loose (any text sku, requested >= 0) so an invalid order can still be reported.
    """

    sku: Annotated[str, StringConstraints(max_length=200)]
    requested: Count
    available: Count


class Violation(Part):
    """One rule an invalid order breaks: the field at fault (e.g. `lines[0].quantity`) and why."""

    field: ShortText
    message: LongText


@register
class OrderAccepted(Event):
    """The order passed validation and its reservation was requested."""

    event_type: ClassVar[str] = "order.accepted.v1"
    topic: ClassVar[str] = TOPIC
    key_field: ClassVar[str] = "order_id"

    order_id: Identifier
    customer_id: Identifier
    currency: Currency
    lines: list[OrderLine] = Field(min_length=1, max_length=MAX_LINES)
    accepted_at: Timestamp
    payment_status: Literal["authorized", "pending"] | None = None
    backorder_policy: BackorderPolicy | None = None


@register
class OrderConfirmed(Event):
    """Stock is reserved (some lines possibly backordered); fulfillment may ship."""

    event_type: ClassVar[str] = "order.confirmed.v1"
    topic: ClassVar[str] = TOPIC
    key_field: ClassVar[str] = "order_id"

    order_id: Identifier
    lines: list[ConfirmedLine] = Field(min_length=1, max_length=MAX_LINES)
    currency: Currency
    shipping_address: Address
    confirmed_at: Timestamp


@register
class OrderRejected(Event):
    """The order cannot be served; nothing is held for it."""

    event_type: ClassVar[str] = "order.rejected.v1"
    topic: ClassVar[str] = TOPIC
    key_field: ClassVar[str] = "order_id"

    order_id: Identifier
    reason: RejectionReason
    field: ShortText | None = Field(
        default=None, description="For invalid_order: the field at fault, e.g. lines.0.quantity."
    )
    detail: LongText | None = None
    lines: list[RejectedLine] = Field(default_factory=list, max_length=MAX_LINES)
    violations: list[Violation] = Field(
        default_factory=list,
        max_length=MAX_LINES * 5,
        description="For invalid_order: every rule broken; `field` repeats the first one's.",
    )


@register
class OrderCancelled(Event):
    """The order was cancelled (customer request, payment timeout, ...)."""

    event_type: ClassVar[str] = "order.cancelled.v1"
    topic: ClassVar[str] = TOPIC
    key_field: ClassVar[str] = "order_id"

    order_id: Identifier
    reason: ShortText


@register
class OrderLineCancelled(Event):
    """Units of one line will not ship: the customer or support cancelled them, or the
    warehouse could not ship them and the order's policy cancels the remainder. Their
    reservation is released; `remaining` units of the line are still to ship (or shipped)."""

    event_type: ClassVar[str] = "order.line_cancelled.v1"
    topic: ClassVar[str] = TOPIC
    key_field: ClassVar[str] = "order_id"

    order_id: Identifier
    line_id: Identifier
    sku: Sku
    quantity: Quantity = Field(description="Units cancelled now.")
    reason: ShortText = Field(description="e.g. short_pick, warehouse_cancelled, customer.")
    remaining: NonNegativeQuantity = Field(
        description="Units of the line not cancelled (ordered minus every cancellation)."
    )


@register
class OrderLinesCancelRequested(Event):
    """The order accepted a request to cancel units of some lines: fulfillment drops them from
    the shipments that have not left (`fulfillment.shipment.shortened.v1` or `.cancelled.v1`
    with this `request_id`); the order cancels what was dropped (`order.line_cancelled.v1`)."""

    event_type: ClassVar[str] = "order.lines_cancel_requested.v1"
    topic: ClassVar[str] = TOPIC
    key_field: ClassVar[str] = "order_id"

    order_id: Identifier
    request_id: Identifier
    lines: list[LineItem] = Field(min_length=1, max_length=MAX_LINES)
    reason: ShortText


@register
class OrderCancelRefused(Event):
    """A cancel request came too late (e.g. already shipped); the order goes on."""

    event_type: ClassVar[str] = "order.cancel_refused.v1"
    topic: ClassVar[str] = TOPIC
    key_field: ClassVar[str] = "order_id"

    order_id: Identifier
    reason: ShortText = Field(description="Why it was refused, e.g. already_shipped.")
    requested_reason: ShortText | None = Field(
        default=None, description="The reason the customer gave for cancelling."
    )


@register
class OrderBackorderAllocated(Event):
    """Stock arrived for a backordered line; it can ship now."""

    event_type: ClassVar[str] = "order.backorder.allocated.v1"
    topic: ClassVar[str] = TOPIC
    key_field: ClassVar[str] = "order_id"

    order_id: Identifier
    line_id: Identifier
    sku: Sku
    location: LocationCode
    quantity: Quantity
    backordered: NonNegativeQuantity | None = Field(
        default=None, description="Units of the line still waiting on the backorder."
    )
    expected_date: Timestamp | None = Field(
        default=None, description="When the units still waiting are expected, if stock knows."
    )


@register
class OrderBackorderEtaChanged(Event):
    """The expected date of a backordered line moved: tell the customer."""

    event_type: ClassVar[str] = "order.backorder.eta_changed.v1"
    topic: ClassVar[str] = TOPIC
    key_field: ClassVar[str] = "order_id"

    order_id: Identifier
    line_id: Identifier
    sku: Sku
    expected_date: Timestamp | None = Field(
        default=None, description="None: no announced stock covers the line any more."
    )
    previous_expected_date: Timestamp | None = None


@register
class OrderShipped(Event):
    """A shipment of the order left; `fully_shipped` when nothing remains to ship."""

    event_type: ClassVar[str] = "order.shipped.v1"
    topic: ClassVar[str] = TOPIC
    key_field: ClassVar[str] = "order_id"

    order_id: Identifier
    shipment_id: Identifier
    lines: list[LocatedLine] = Field(min_length=1, max_length=MAX_LINES)
    fully_shipped: StrictBool


@register
class OrderDelivered(Event):
    """The order (or its last shipment) was delivered."""

    event_type: ClassVar[str] = "order.delivered.v1"
    topic: ClassVar[str] = TOPIC
    key_field: ClassVar[str] = "order_id"

    order_id: Identifier
    shipment_id: Identifier | None = None
    delivered_at: Timestamp
    shipment_ids: list[Identifier] = Field(
        default_factory=list, max_length=MAX_LINES, description="Every shipment of the order."
    )


@register
class OrderReturned(Event):
    """Goods of the order came back under an RMA."""

    event_type: ClassVar[str] = "order.returned.v1"
    topic: ClassVar[str] = TOPIC
    key_field: ClassVar[str] = "order_id"

    order_id: Identifier
    rma_id: Identifier
    lines: list[ReturnLine] = Field(min_length=1, max_length=MAX_LINES)
    fully_returned: StrictBool = Field(
        default=False, description="Every unit of the order has come back."
    )


@register
class OrderStuck(Event):
    """The saga gave up waiting in a state after repeated attempts; an operator must look."""

    event_type: ClassVar[str] = "order.stuck.v1"
    topic: ClassVar[str] = TOPIC
    key_field: ClassVar[str] = "order_id"

    order_id: Identifier
    state: Text
    attempts: Count
    detail: LongText
    reason: ShortText | None = Field(default=None, description="e.g. no_stock_reply")
