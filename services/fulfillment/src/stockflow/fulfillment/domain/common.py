"""Small values shared by planning, picking, shipping and returns."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any


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

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "line1": self.line1,
            "line2": self.line2,
            "city": self.city,
            "postal_code": self.postal_code,
            "country": self.country,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Address:
        return cls(
            name=data["name"],
            line1=data["line1"],
            city=data["city"],
            postal_code=data["postal_code"],
            country=data["country"],
            line2=data.get("line2"),
        )


@dataclass(frozen=True)
class ShipmentLine:
    """Units of one order line in a shipment (or taken out of one)."""

    line_id: str
    sku: str
    quantity: int

    def to_dict(self) -> dict[str, Any]:
        return {"line_id": self.line_id, "sku": self.sku, "quantity": self.quantity}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ShipmentLine:
        return cls(data["line_id"], data["sku"], data["quantity"])


class ServiceLevel(StrEnum):
    """What the customer paid for; a carrier's rate meets it if it is at least this fast."""

    STANDARD = "standard"
    EXPRESS = "express"

    @property
    def max_transit_days(self) -> int:
        """Longest transit time (in days) that still honours the level."""
        return _MAX_TRANSIT_DAYS[self]


_MAX_TRANSIT_DAYS = {ServiceLevel.STANDARD: 5, ServiceLevel.EXPRESS: 2}


def time_to_text(moment: datetime | None) -> str | None:
    """A time as ISO 8601 text for stored state (None stays None)."""
    return moment.isoformat() if moment is not None else None


def time_from_text(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text is not None else None
