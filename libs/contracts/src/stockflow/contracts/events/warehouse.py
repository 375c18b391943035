"""Input `warehouse.receipts.v1` (key sku): goods received at a location, with unit cost."""

from __future__ import annotations

from typing import ClassVar

from stockflow.contracts.base import Event, register
from stockflow.contracts.types import (
    Currency,
    Identifier,
    LocationCode,
    NonNegativeMoney,
    Quantity,
    Sku,
    Timestamp,
)


@register
class WarehouseGoodsReceived(Event):
    """Units of a sku arrived at a location at a unit cost.

    `receipt_id` names the receipt: stock applies it once, so a retry under a new event id
    changes nothing, and the same `receipt_id` with other values is dead-lettered with why.
    """

    event_type: ClassVar[str] = "warehouse.goods.received.v1"
    topic: ClassVar[str] = "warehouse.receipts.v1"
    key_field: ClassVar[str] = "sku"

    receipt_id: Identifier
    sku: Sku
    location: LocationCode
    quantity: Quantity
    unit_cost: NonNegativeMoney
    currency: Currency
    received_at: Timestamp
