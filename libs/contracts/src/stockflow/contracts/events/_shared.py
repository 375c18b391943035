"""Building blocks shared by several event modules: nested objects, bounded numbers, checks."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from stockflow.contracts.types import (
    Identifier,
    LocationCode,
    NonNegativeMoney,
    Quantity,
    Sku,
)

MAX_LINES = 100
"""Most lines in an order, a reservation, a shipment or a return."""

MAX_ALLOCATIONS = 50
MAX_JOURNAL_LINES = 1000

Priority = Annotated[int, Field(strict=True, ge=0, le=9)]
"""Backorder queue priority (0 lowest, 9 highest), e.g. from the customer tier."""

Attempt = Annotated[int, Field(strict=True, ge=1, le=10_000)]
Count = Annotated[int, Field(strict=True, ge=0)]
"""A non-negative count without the per-message quantity cap (levels, attempts, days)."""

Version = Annotated[int, Field(strict=True, ge=1)]
Text = Annotated[str, StringConstraints(min_length=1, max_length=200)]
"""Non-empty short text."""

CountryCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]
"""ISO 3166-1 alpha-2 country code."""

BackorderPolicy = Literal["allow", "reject"]
RejectionReason = Literal[
    "insufficient_stock", "unknown_sku", "discontinued", "invalid_order", "not_sellable"
]
"""Why stock or the order service refused an order. `not_sellable`: a line's variant is draft or
discontinued (archived) in the catalog; `discontinued` is no longer sent by stock (kept so older
records stay valid)."""


class Part(BaseModel):
    """Base of nested objects: immutable, unknown fields ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class Allocation(Part):
    """Units held or taken at one location."""

    location: LocationCode
    quantity: Quantity


class LineItem(Part):
    """An order line's sku and quantity."""

    line_id: Identifier
    sku: Sku
    quantity: Quantity


class LocatedLine(Part):
    """An order line's units at one location (released, committed, shipped)."""

    line_id: Identifier
    sku: Sku
    location: LocationCode
    quantity: Quantity


class PricedLine(Part):
    """An order line with its unit price (in the order's currency)."""

    line_id: Identifier
    sku: Sku
    quantity: Quantity
    unit_price: NonNegativeMoney


class Address(Part):
    """A postal address."""

    name: Text
    line1: Text
    line2: Annotated[str, StringConstraints(max_length=200)] | None = None
    city: Text
    postal_code: Annotated[str, StringConstraints(min_length=1, max_length=32)]
    country: CountryCode


class Reference(Part):
    """What caused something: a document type and its id."""

    type: Identifier
    id: Identifier


def require_unique_lines(lines: Iterable[LineItem | PricedLine | LocatedLine]) -> None:
    seen: set[str] = set()
    for line in lines:
        if line.line_id in seen:
            raise ValueError(f"line_id {line.line_id!r} appears twice")
        seen.add(line.line_id)
