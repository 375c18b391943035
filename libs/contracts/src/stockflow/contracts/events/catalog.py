"""`catalog.products.v1` (key sku, compacted): the full state of every variant."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, StrictBool, StringConstraints

from stockflow.contracts.base import Event, register
from stockflow.contracts.events._shared import Count, Part, Text, Version
from stockflow.contracts.types import (
    Currency,
    Identifier,
    NonNegativeMoney,
    Quantity,
    ShortText,
    Sku,
    Timestamp,
)

TOPIC = "catalog.products.v1"

Handle = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,199}$")]
OptionName = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Dimension = Annotated[int, Field(strict=True, gt=0, le=100_000)]


class Price(Part):
    """An amount in one currency."""

    amount: NonNegativeMoney
    currency: Currency


class Dimensions(Part):
    """Package dimensions in millimetres."""

    length: Dimension
    width: Dimension
    height: Dimension


class BundleComponent(Part):
    """One component of a bundle sku: selling the bundle takes `quantity` of `sku`."""

    sku: Sku
    quantity: Quantity


@register
class CatalogVariantUpserted(Event):
    """The full current state of a variant (sku) after any change."""

    event_type: ClassVar[str] = "catalog.variant.upserted.v1"
    topic: ClassVar[str] = TOPIC
    key_field: ClassVar[str] = "sku"

    sku: Sku
    product_id: Identifier
    handle: Handle
    title: Text
    status: Literal["draft", "active", "discontinued"]
    vendor: ShortText | None = None
    product_type: ShortText | None = None
    option_values: dict[OptionName, ShortText] = Field(default_factory=dict, max_length=20)
    barcode: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    prices: list[Price] = Field(default_factory=list, max_length=50)
    compare_at_prices: list[Price] = Field(default_factory=list, max_length=50)
    weight_grams: Count | None = None
    dimensions_mm: Dimensions | None = None
    tracked: StrictBool
    backorderable: StrictBool
    requires_shipping: StrictBool = True
    """False for downloads and services: nothing to pick, pack or ship."""
    taxable: StrictBool = True
    preorder_available_at: Timestamp | None = None
    bundle_components: list[BundleComponent] = Field(default_factory=list, max_length=50)
    version: Version
    updated_at: Timestamp


@register
class CatalogVariantRemoved(Event):
    """A variant was deleted; consumers drop it."""

    event_type: ClassVar[str] = "catalog.variant.removed.v1"
    topic: ClassVar[str] = TOPIC
    key_field: ClassVar[str] = "sku"

    sku: Sku
    version: Version
