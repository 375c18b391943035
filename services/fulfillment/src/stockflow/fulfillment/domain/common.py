"""Small values shared by planning, picking, shipping and returns."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True)
class Address:
    """A postal address; `country` is ISO 3166-1 alpha-2."""

    name: str
    line1: str
    city: str
    postal_code: str
    country: str
    line2: str | None = None

    def lines(self) -> tuple[str, ...]:
        """The address as printed on a label, one entry per line."""
        street = (self.line1, self.line2) if self.line2 else (self.line1,)
        return (self.name, *street, f"{self.postal_code} {self.city}", self.country)


@dataclass(frozen=True)
class ShipmentLine:
    """Units of one order line in a shipment (or taken out of one)."""

    line_id: str
    sku: str
    quantity: int


class ServiceLevel(StrEnum):
    """What the customer paid for; a carrier's rate meets it if it is at least this fast."""

    STANDARD = "standard"
    EXPRESS = "express"

    @property
    def max_transit_days(self) -> int:
        """Longest transit time (in days) that still honours the level."""
        return _MAX_TRANSIT_DAYS[self]


_MAX_TRANSIT_DAYS = {ServiceLevel.STANDARD: 5, ServiceLevel.EXPRESS: 2}
