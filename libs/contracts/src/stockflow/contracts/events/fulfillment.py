"""`fulfillment.events.v1` (key order_id): shipments, tracking, returns and discrepancies."""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from stockflow.contracts.base import Event, register
from stockflow.contracts.events._shared import MAX_LINES, Count, Part, Text
from stockflow.contracts.types import (
    Currency,
    Identifier,
    LocationCode,
    LongText,
    NonNegativeMoney,
    Quantity,
    ShortText,
    Sku,
    Timestamp,
)

TOPIC = "fulfillment.events.v1"


class ShipmentLine(Part):
    """Units of an order line in a shipment; `unit_price` when the shipper knows it."""

    line_id: Identifier
    sku: Sku
    quantity: Quantity
    unit_price: NonNegativeMoney | None = None


class ReturnLine(Part):
    """Returned units of an order line and what happens to them."""

    line_id: Identifier
    sku: Sku
    location: LocationCode
    quantity: Quantity
    condition: Literal["restock", "write_off"]
    unit_price: NonNegativeMoney | None = None


def _priced_lines_need_currency(
    lines: Iterable[ShipmentLine | ReturnLine], currency: str | None
) -> None:
    if currency is None and any(line.unit_price is not None for line in lines):
        raise ValueError("currency is required when a line carries a unit_price")


@register
class ShipmentCreated(Event):
    """A shipment was planned for reserved lines at one location."""

    event_type: ClassVar[str] = "fulfillment.shipment.created.v1"
    topic: ClassVar[str] = TOPIC
    key_field: ClassVar[str] = "order_id"

    shipment_id: Identifier
    order_id: Identifier
    location: LocationCode
    lines: list[ShipmentLine] = Field(min_length=1, max_length=MAX_LINES)


@register
class ShipmentShipped(Event):
    """A shipment left the warehouse with a carrier."""

    event_type: ClassVar[str] = "fulfillment.shipment.shipped.v1"
    topic: ClassVar[str] = TOPIC
    key_field: ClassVar[str] = "order_id"

    shipment_id: Identifier
    order_id: Identifier
    location: LocationCode
    lines: list[ShipmentLine] = Field(min_length=1, max_length=MAX_LINES)
    currency: Currency | None = Field(default=None, description="Required when lines carry prices.")
    carrier: Text
    service_level: Text
    tracking_number: Text
    label_ref: Text
    shipped_at: Timestamp
    shipping_cost: NonNegativeMoney | None = Field(
        default=None, description="What the label cost the merchant: the carrier's rate."
    )
    shipping_currency: Currency | None = Field(
        default=None, description="The rate's currency; given with shipping_cost."
    )

    @model_validator(mode="after")
    def _currency(self) -> ShipmentShipped:
        _priced_lines_need_currency(self.lines, self.currency)
        if (self.shipping_cost is None) != (self.shipping_currency is None):
            raise ValueError("shipping_cost and shipping_currency go together")
        return self


@register
class ShipmentShortened(Event):
    """A short-picked shipment will leave without `removed`; the order must re-plan those units."""

    event_type: ClassVar[str] = "fulfillment.shipment.shortened.v1"
    topic: ClassVar[str] = TOPIC
    key_field: ClassVar[str] = "order_id"

    shipment_id: Identifier
    order_id: Identifier
    location: LocationCode
    removed: list[ShipmentLine] = Field(min_length=1, max_length=MAX_LINES)
    reason: ShortText | None = Field(default=None, description="None: a short pick.")
    cancel_request_id: Identifier | None = Field(
        default=None, description="The order's lines-cancel request the units were dropped for."
    )


@register
class ShipmentDelivered(Event):
    """The carrier delivered a shipment."""

    event_type: ClassVar[str] = "fulfillment.shipment.delivered.v1"
    topic: ClassVar[str] = TOPIC
    key_field: ClassVar[str] = "order_id"

    shipment_id: Identifier
    order_id: Identifier
    delivered_at: Timestamp


@register
class ShipmentException(Event):
    """Something went wrong with a shipment (lost, damaged, undeliverable)."""

    event_type: ClassVar[str] = "fulfillment.shipment.exception.v1"
    topic: ClassVar[str] = TOPIC
    key_field: ClassVar[str] = "order_id"

    shipment_id: Identifier
    order_id: Identifier
    detail: LongText


@register
class ShipmentCancelled(Event):
    """A shipment was cancelled before it left."""

    event_type: ClassVar[str] = "fulfillment.shipment.cancelled.v1"
    topic: ClassVar[str] = TOPIC
    key_field: ClassVar[str] = "order_id"

    shipment_id: Identifier
    order_id: Identifier
    reason: ShortText | None = None
    cancel_request_id: Identifier | None = Field(
        default=None, description="The order's lines-cancel request it was cancelled for."
    )


@register
class ReturnReceived(Event):
    """Returned goods arrived and were inspected (restock or write off)."""

    event_type: ClassVar[str] = "fulfillment.return.received.v1"
    topic: ClassVar[str] = TOPIC
    key_field: ClassVar[str] = "order_id"

    rma_id: Identifier
    order_id: Identifier
    lines: list[ReturnLine] = Field(min_length=1, max_length=MAX_LINES)
    currency: Currency | None = Field(default=None, description="Required when lines carry prices.")
    received_at: Timestamp

    @model_validator(mode="after")
    def _currency(self) -> ReturnReceived:
        _priced_lines_need_currency(self.lines, self.currency)
        return self


@register
class StockDiscrepancyFound(Event):
    """A picker found a different count in a bin than the system expected."""

    event_type: ClassVar[str] = "fulfillment.stock.discrepancy.v1"
    topic: ClassVar[str] = TOPIC
    key_field: ClassVar[str] = "order_id"

    order_id: Identifier = Field(description="The order being picked; the topic's key.")
    shipment_id: Identifier
    sku: Sku
    location: LocationCode
    bin: Text
    expected: Count
    found: Count
