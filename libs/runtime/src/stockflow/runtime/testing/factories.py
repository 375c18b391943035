"""Events tests build again and again, with plain defaults; a test overrides what it is about."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from stockflow.contracts.events.catalog import CatalogVariantUpserted
from stockflow.contracts.events.warehouse import WarehouseGoodsReceived


def variant(
    sku: str,
    *,
    backorderable: bool = False,
    components: Sequence[tuple[str, int]] = (),
    **fields: Any,
) -> CatalogVariantUpserted:
    """An active variant at 10.00 USD; a bundle (with `components`) is not tracked itself."""
    values: dict[str, Any] = {
        "sku": sku,
        "product_id": sku.lower(),
        "handle": sku.lower(),
        "title": f"Product {sku}",
        "status": "active",
        "tracked": not components,
        "backorderable": backorderable,
        "prices": [{"amount": "10.00", "currency": "USD"}],
        "weight_grams": 300,
        "version": 1,
        "updated_at": datetime.now(UTC),
        "bundle_components": [{"sku": c, "quantity": q} for c, q in components],
    }
    return CatalogVariantUpserted.model_validate(values | fields)


def goods_received(
    sku: str,
    location: str,
    quantity: int,
    *,
    unit_cost: str = "2.50",
    receipt_id: str | None = None,
    **fields: Any,
) -> WarehouseGoodsReceived:
    """A warehouse receipt in USD, received now, with a fresh receipt id unless given."""
    values: dict[str, Any] = {
        "receipt_id": receipt_id or f"r-{uuid.uuid4().hex[:12]}",
        "sku": sku,
        "location": location,
        "quantity": quantity,
        "unit_cost": unit_cost,
        "currency": "USD",
        "received_at": datetime.now(UTC),
    }
    return WarehouseGoodsReceived.model_validate(values | fields)
