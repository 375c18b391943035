"""Events tests build again and again, with plain defaults; a test overrides what it is about."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from stockflow.contracts.events.catalog import CatalogVariantUpserted


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
