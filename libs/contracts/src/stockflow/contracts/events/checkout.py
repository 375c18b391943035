"""Input `checkout.orders.v1` (key order_id): orders, cancellations and payments from checkout."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from stockflow.contracts.base import Event, register
from stockflow.contracts.events._shared import (
    MAX_LINES,
    Address,
    BackorderPolicy,
    Part,
    PricedLine,
    Priority,
    require_unique_lines,
)
from stockflow.contracts.types import Currency, Identifier, ShortText, Timestamp

TOPIC = "checkout.orders.v1"


class CheckoutLine(PricedLine):
    """A line of a submitted order: sku, quantity and unit price."""


class Payment(Part):
    """The payment state at submission; a pending payment must be confirmed by its deadline."""

    status: Literal["authorized", "pending"]
    reference: Identifier
    deadline: Timestamp | None = None


@register
class CheckoutOrderSubmitted(Event):
    """A customer placed an order at the upstream checkout."""

    event_type: ClassVar[str] = "checkout.order.submitted.v1"
    topic: ClassVar[str] = TOPIC
    key_field: ClassVar[str] = "order_id"

    order_id: Identifier
    customer_id: Identifier
    currency: Currency
    placed_at: Timestamp
    lines: list[CheckoutLine] = Field(min_length=1, max_length=MAX_LINES)
    shipping_address: Address
    payment: Payment
    backorder_policy: BackorderPolicy | None = Field(
        default=None, description="None follows each sku's catalog backorderable flag."
    )
    priority: Priority | None = Field(
        default=None, description="Backorder queue priority 0..9 (e.g. customer tier)."
    )

    @model_validator(mode="after")
    def _unique_lines(self) -> CheckoutOrderSubmitted:
        require_unique_lines(self.lines)
        return self


@register
class CheckoutOrderCancelRequested(Event):
    """The customer asked to cancel an order."""

    event_type: ClassVar[str] = "checkout.order.cancel_requested.v1"
    topic: ClassVar[str] = TOPIC
    key_field: ClassVar[str] = "order_id"

    order_id: Identifier
    reason: ShortText


@register
class CheckoutPaymentConfirmed(Event):
    """A pending payment was captured or authorized."""

    event_type: ClassVar[str] = "checkout.payment.confirmed.v1"
    topic: ClassVar[str] = TOPIC
    key_field: ClassVar[str] = "order_id"

    order_id: Identifier
    reference: Identifier
