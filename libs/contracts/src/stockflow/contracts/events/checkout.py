"""Input `checkout.orders.v1` (key order_id): orders, cancellations and payments from checkout."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, ClassVar, Literal

from pydantic import ConfigDict, Field, ValidationError, ValidationInfo, field_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from stockflow.contracts.base import Event, register
from stockflow.contracts.currencies import MINOR_UNITS
from stockflow.contracts.events._shared import (
    MAX_LINES,
    Address,
    BackorderPolicy,
    Part,
    PricedLine,
    Priority,
)
from stockflow.contracts.types import Currency, Identifier, ShortText, Timestamp

TOPIC = "checkout.orders.v1"

FulfillmentExceptionPolicy = Literal["cancel_remainder", "reallocate"]

MAX_LINE_QUANTITY = 10_000
"""Most units of one checkout line.

Lower than the ledger's `MAX_QUANTITY` (1,000,000, which bounds stock movements and levels) on
purpose: a checkout line is one customer's order, and a mistyped 100000 must be answered as
an invalid order before it holds a warehouse's stock. Bulk and B2B moves go through receipts
and transfers, not checkout.
"""


class CheckoutLine(PricedLine):
    """A line of a submitted order: sku, quantity (1..10000) and unit price.

    The unit price has at most the minor digits of the order's currency (checked by the order,
    which knows the currency).
    """

    quantity: Annotated[int, Field(strict=True, gt=0, le=MAX_LINE_QUANTITY)]


class Payment(Part):
    """The payment state at submission; a pending payment must be confirmed by its deadline."""

    model_config = ConfigDict(
        json_schema_extra={
            "if": {"properties": {"status": {"const": "pending"}}, "required": ["status"]},
            "then": {"required": ["deadline"], "properties": {"deadline": {"type": "string"}}},
        }
    )

    status: Literal["authorized", "pending"]
    reference: Identifier
    deadline: Timestamp | None = Field(
        default=None, validate_default=True, description="Required when status is pending."
    )

    @field_validator("deadline")
    @classmethod
    def _pending_needs_deadline(cls, deadline: object, info: ValidationInfo) -> object:
        if deadline is None and info.data.get("status") == "pending":
            raise PydanticCustomError("missing_deadline", "required when payment is pending")
        return deadline


@register
class CheckoutOrderSubmitted(Event):
    """A customer placed an order at the upstream checkout.

    This model is the whole rule set of a submission; the order service adds none. Besides the
    field types: at most 100 lines, 1..10000 units per line (see `MAX_LINE_QUANTITY`), unique
    line ids, unit prices with no more decimals than the currency's minor unit (2 for EUR, 0
    for JPY, 3 for KWD), and a deadline whenever the payment is pending.
    """

    event_type: ClassVar[str] = "checkout.order.submitted.v1"
    topic: ClassVar[str] = TOPIC
    key_field: ClassVar[str] = "order_id"

    order_id: Identifier
    customer_id: Identifier
    currency: Currency
    placed_at: Timestamp
    lines: list[CheckoutLine] = Field(
        min_length=1,
        max_length=MAX_LINES,
        description="Unique line ids; unit prices with at most the currency's minor digits.",
    )
    shipping_address: Address
    payment: Payment
    backorder_policy: BackorderPolicy | None = Field(
        default=None, description="None follows each sku's catalog backorderable flag."
    )
    priority: Priority | None = Field(
        default=None, description="Backorder queue priority 0..9 (e.g. customer tier)."
    )
    fulfillment_exception_policy: FulfillmentExceptionPolicy | None = Field(
        default=None,
        description="What to do with units a warehouse cannot ship (short pick, shipment "
        "cancelled by the warehouse): cancel_remainder cancels them (the customer is told "
        "with order.line_cancelled.v1, the reservation released); reallocate releases them "
        "and puts them back on the line's backorder, served at once from any location with "
        "stock, else when goods arrive (order.backorder.allocated.v1 each time; an order "
        "refusing backorders is cancelled instead). None: the merchant's default "
        "(STOCKFLOW_ORDER_FULFILLMENT_EXCEPTION_POLICY).",
    )

    @field_validator("lines")
    @classmethod
    def _lines_fit_the_order(
        cls, lines: list[CheckoutLine], info: ValidationInfo
    ) -> list[CheckoutLine]:
        # Errors name the line at fault (lines[1].line_id), as a field's own error would.
        minor_digits = MINOR_UNITS.get(info.data.get("currency", ""))
        errors = _line_errors(lines, minor_digits)
        if errors:
            raise ValidationError.from_exception_data(cls.__name__, errors)
        return lines


def _line_errors(lines: list[CheckoutLine], minor_digits: int | None) -> list[InitErrorDetails]:
    """Repeated line ids, and prices with more decimals than the currency has (unchecked when
    the currency is unknown: that is the currency's fault, not the prices')."""
    seen: set[str] = set()
    errors: list[InitErrorDetails] = []
    for index, line in enumerate(lines):
        if line.line_id in seen:
            problem = PydanticCustomError(
                "duplicate_line_id", "duplicate line id {line_id}", {"line_id": repr(line.line_id)}
            )
            errors.append({"type": problem, "loc": (index, "line_id"), "input": line.line_id})
        seen.add(line.line_id)
        if minor_digits is not None and _decimals(line.unit_price) > minor_digits:
            problem = PydanticCustomError(
                "too_many_decimals",
                "at most {digits} decimals for this currency",
                {"digits": minor_digits},
            )
            errors.append({"type": problem, "loc": (index, "unit_price"), "input": line.unit_price})
    return errors


def _decimals(amount: Decimal) -> int:
    exponent = amount.as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


@register
class CheckoutOrderCancelRequested(Event):
    """The customer asked to cancel an order."""

    event_type: ClassVar[str] = "checkout.order.cancel_requested.v1"
    topic: ClassVar[str] = TOPIC
    key_field: ClassVar[str] = "order_id"

    order_id: Identifier
    reason: ShortText


class CancelLine(Part):
    """Units of one order line to cancel."""

    line_id: Identifier
    quantity: Annotated[int, Field(strict=True, gt=0, le=MAX_LINE_QUANTITY)]


@register
class CheckoutOrderLinesCancelRequested(Event):
    """The customer (or support) asked to cancel units of some lines before they ship: one
    line, part of a line, or the unshipped remainder after a partial shipment.

    `request_id` identifies the request: sent again under a new event id, it changes nothing.
    The order answers with `order.line_cancelled.v1` for the units cancelled, or
    `order.cancel_refused.v1` when it cannot cancel them (shipped, or not in a shipment that
    waits to leave).
    """

    event_type: ClassVar[str] = "checkout.order.lines_cancel_requested.v1"
    topic: ClassVar[str] = TOPIC
    key_field: ClassVar[str] = "order_id"

    order_id: Identifier
    request_id: Identifier
    lines: list[CancelLine] = Field(min_length=1, max_length=MAX_LINES)
    reason: ShortText

    @field_validator("lines")
    @classmethod
    def _one_entry_per_line(cls, lines: list[CancelLine]) -> list[CancelLine]:
        ids = [line.line_id for line in lines]
        if len(set(ids)) != len(ids):
            raise PydanticCustomError("duplicate_line_id", "one entry per line id")
        return lines


@register
class CheckoutPaymentConfirmed(Event):
    """A pending payment was captured or authorized."""

    event_type: ClassVar[str] = "checkout.payment.confirmed.v1"
    topic: ClassVar[str] = TOPIC
    key_field: ClassVar[str] = "order_id"

    order_id: Identifier
    reference: Identifier
