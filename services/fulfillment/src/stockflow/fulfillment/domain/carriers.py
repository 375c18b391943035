"""Carriers: quotes, labels and rate shopping, plus the built-in carrier "stockflow-post".

Rate shopping rule: among the configured carriers that quote every package of the shipment
within the service level's transit time, take the lowest total; ties go to the faster carrier,
then to the carrier name in alphabetical order, so the same input always picks the same carrier.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from stockflow.fulfillment.domain.common import Address, ServiceLevel
from stockflow.fulfillment.domain.errors import NoCarrierAvailable
from stockflow.fulfillment.domain.packing import DEFAULT_DIM_DIVISOR, Package
from stockflow.fulfillment.domain.s10 import format_s10


@dataclass(frozen=True)
class Rate:
    """A carrier's price and promised transit time for one package."""

    carrier: str
    service_level: ServiceLevel
    amount: Decimal
    currency: str
    transit_days: int


@dataclass(frozen=True)
class LabelRequest:
    """Everything a carrier needs to label a shipment's packages."""

    order_id: str
    shipment_id: str
    ship_from: Address
    ship_to: Address
    packages: tuple[Package, ...]
    service_level: ServiceLevel


@dataclass(frozen=True)
class LabelContent:
    """What is printed on a label: the request plus the carrier and its tracking number."""

    request: LabelRequest
    carrier: str
    tracking_number: str


@dataclass(frozen=True)
class Label:
    """A carrier's label for a shipment: one tracking number, a printable document."""

    carrier: str
    tracking_number: str
    service_level: ServiceLevel
    document: bytes = field(repr=False)
    media_type: str = "application/pdf"

    def to_dict(self) -> dict[str, Any]:
        """Everything but the document, which is stored apart as bytes."""
        return {
            "carrier": self.carrier,
            "tracking_number": self.tracking_number,
            "service_level": self.service_level.value,
            "media_type": self.media_type,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], document: bytes = b"") -> Label:
        return cls(
            carrier=data["carrier"],
            tracking_number=data["tracking_number"],
            service_level=ServiceLevel(data["service_level"]),
            document=document,
            media_type=data["media_type"],
        )


class Carrier(Protocol):
    """A carrier adapter. Real carriers call their API; the built-in one works offline."""

    @property
    def name(self) -> str: ...

    def quote(
        self, package: Package, service_level: ServiceLevel, destination: Address
    ) -> Rate | None:
        """The rate for `package`, or None when the carrier cannot take it there at this level."""
        ...

    def create_label(self, request: LabelRequest) -> Label:
        """Buy the label: allocate a tracking number and produce the printable document."""
        ...


@dataclass(frozen=True)
class CarrierChoice:
    """The winner of rate shopping, with one rate per package."""

    carrier: Carrier
    rates: tuple[Rate, ...]
    total: Decimal
    currency: str
    transit_days: int


def shop_rates(
    carriers: Sequence[Carrier],
    packages: Sequence[Package],
    service_level: ServiceLevel,
    destination: Address,
) -> CarrierChoice:
    """The cheapest carrier that meets `service_level` for all `packages` (see module docstring).

    All packages of a shipment go with one carrier, under one tracking number.
    """
    if not packages:
        raise NoCarrierAvailable("There are no packages to quote; pack the shipment first.")
    offers = [
        offer
        for carrier in carriers
        if (offer := _offer(carrier, packages, service_level, destination)) is not None
    ]
    if not offers:
        names = ", ".join(sorted(carrier.name for carrier in carriers)) or "none configured"
        raise NoCarrierAvailable(
            f"No carrier ({names}) can deliver {len(packages)} package(s) to "
            f"{destination.country} within {service_level.max_transit_days} day(s) "
            f"({service_level} service)."
        )
    if len({offer.currency for offer in offers}) > 1:
        raise ValueError("Carriers quote in different currencies; rates cannot be compared")
    return min(offers, key=lambda offer: (offer.total, offer.transit_days, offer.carrier.name))


def _offer(
    carrier: Carrier,
    packages: Sequence[Package],
    service_level: ServiceLevel,
    destination: Address,
) -> CarrierChoice | None:
    rates: list[Rate] = []
    for package in packages:
        rate = carrier.quote(package, service_level, destination)
        if rate is None or rate.transit_days > service_level.max_transit_days:
            return None
        rates.append(rate)
    return CarrierChoice(
        carrier=carrier,
        rates=tuple(rates),
        total=sum((rate.amount for rate in rates), Decimal(0)),
        currency=rates[0].currency,
        transit_days=max(rate.transit_days for rate in rates),
    )


@dataclass(frozen=True)
class Tariff:
    """A price list for one service level: base price plus a price per started kilogram."""

    base: Decimal
    per_kg: Decimal
    transit_days: int


STOCKFLOW_POST_TARIFFS: Mapping[ServiceLevel, Tariff] = {
    ServiceLevel.STANDARD: Tariff(base=Decimal("3.95"), per_kg=Decimal("0.90"), transit_days=3),
    ServiceLevel.EXPRESS: Tariff(base=Decimal("8.50"), per_kg=Decimal("1.60"), transit_days=1),
}

# UPU S10 service indicators: C* is parcel post, E* is EMS (express).
_SERVICE_INDICATORS = {ServiceLevel.STANDARD: "CP", ServiceLevel.EXPRESS: "EE"}

LabelRenderer = Callable[[LabelContent], bytes]


@dataclass(frozen=True)
class CarrierReach:
    """Where a carrier issues tracking numbers from, the currency it bills in, where it delivers
    (none given: its own country only)."""

    country: str = "GB"
    currency: str = "GBP"
    destinations: frozenset[str] | None = None

    def delivers_to(self, country: str) -> bool:
        return country in (self.destinations if self.destinations is not None else {self.country})


@dataclass(frozen=True)
class ParcelLimits:
    """The largest parcel a carrier takes, and how it turns size into billable weight."""

    max_weight_grams: int = 30_000
    max_side_mm: int = 1_200
    dim_divisor: int = DEFAULT_DIM_DIVISOR


class StockflowPost:
    """The built-in carrier: table rates by billable weight and S10 tracking numbers.

    `next_serial` hands out unique serials (in production a database sequence); `render_label`
    turns a label's content into a PDF (`stockflow.fulfillment.labels.render_label`). A
    deployment may configure it more than once under other names and tariffs.
    """

    def __init__(
        self,
        *,
        name: str = "stockflow-post",
        next_serial: Callable[[], int],
        render_label: LabelRenderer,
        reach: CarrierReach = CarrierReach(),
        tariffs: Mapping[ServiceLevel, Tariff] = STOCKFLOW_POST_TARIFFS,
        limits: ParcelLimits = ParcelLimits(),
    ) -> None:
        self.name = name
        self._next_serial = next_serial
        self._render_label = render_label
        self.reach = reach
        self.tariffs = tariffs
        self.limits = limits

    def quote(
        self, package: Package, service_level: ServiceLevel, destination: Address
    ) -> Rate | None:
        """Base price plus per started kg of billable weight; None outside the carrier's limits."""
        tariff = self.tariffs.get(service_level)
        billable_grams = package.billable_weight_grams(self.limits.dim_divisor)
        if (
            tariff is None
            or not self.reach.delivers_to(destination.country)
            or billable_grams > self.limits.max_weight_grams
            or package.dimensions.longest_side_mm > self.limits.max_side_mm
        ):
            return None
        started_kg = math.ceil(billable_grams / 1000)
        return Rate(
            carrier=self.name,
            service_level=service_level,
            amount=tariff.base + tariff.per_kg * started_kg,
            currency=self.reach.currency,
            transit_days=tariff.transit_days,
        )

    def create_label(self, request: LabelRequest) -> Label:
        """Allocate an S10 tracking number and render the 4x6-inch label PDF."""
        tracking_number = format_s10(
            _SERVICE_INDICATORS[request.service_level], self._next_serial(), self.reach.country
        )
        content = LabelContent(request=request, carrier=self.name, tracking_number=tracking_number)
        return Label(
            carrier=self.name,
            tracking_number=tracking_number,
            service_level=request.service_level,
            document=self._render_label(content),
        )
