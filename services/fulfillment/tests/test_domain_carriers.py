"""Carriers: S10 tracking numbers, stockflow-post rates and labels, rate shopping."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from decimal import Decimal

import pytest

from stockflow.fulfillment.domain import (
    Address,
    Carrier,
    CarrierReach,
    Dimensions,
    Label,
    LabelContent,
    LabelRequest,
    NoCarrierAvailable,
    Package,
    Rate,
    ServiceLevel,
    StockflowPost,
    format_s10,
    is_valid_s10,
    s10_check_digit,
    shop_rates,
)

LONDON = Address("Ada Lovelace", "12 St James's Square", "London", "SW1Y 4JH", "GB")
LEEDS = Address("Stockflow Warehouse", "Unit 4, Dock Road", "Leeds", "LS1 4AB", "GB")
PARIS = Address("Marie Curie", "1 Rue Pierre et Marie Curie", "Paris", "75005", "FR")
SMALL = Package(weight_grams=1_200, dimensions=Dimensions(300, 200, 100))
BULKY = Package(weight_grams=500, dimensions=Dimensions(600, 400, 400))  # billed as 19.2 kg


# S10 -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("serial", "check"),
    [
        ("47312482", 9),  # the worked example of the UPU S10 standard (RR473124829GB)
        ("12345678", 5),
        ("00000001", 4),
        ("00000000", 5),  # 11 - 0 = 11, which the standard maps to 5
        ("00000008", 0),  # 8 x 7 = 56, 56 mod 11 = 1, 11 - 1 = 10, which maps to 0
    ],
)
def test_s10_check_digit(serial: str, check: int) -> None:
    assert s10_check_digit(serial) == check


@pytest.mark.parametrize("number", ["RR473124829GB", "RR123456785GB", "EE000000080US"])
def test_valid_s10_numbers(number: str) -> None:
    assert is_valid_s10(number)


@pytest.mark.parametrize(
    "number",
    [
        "RR473124828GB",  # wrong check digit
        "RR473124289GB",  # two digits swapped
        "RR47312482GB",  # a digit missing
        "rr473124829gb",  # S10 letters are capitals
        "R1473124829GB",
        "RR473124829G",
        "",
    ],
)
def test_invalid_s10_numbers(number: str) -> None:
    assert not is_valid_s10(number)


def test_format_s10() -> None:
    assert format_s10("RR", 47312482, "GB") == "RR473124829GB"
    assert format_s10("CP", 1, "GB") == "CP000000014GB"


@pytest.mark.parametrize(
    ("indicator", "serial", "country"),
    [("R", 1, "GB"), ("RR", 1, "gb"), ("RR", -1, "GB"), ("RR", 100_000_000, "GB")],
)
def test_format_s10_refuses_malformed_parts(indicator: str, serial: int, country: str) -> None:
    with pytest.raises(ValueError):
        format_s10(indicator, serial, country)


def test_check_digit_needs_eight_digits() -> None:
    with pytest.raises(ValueError, match="exactly 8 digits"):
        s10_check_digit("1234567")


# stockflow-post ------------------------------------------------------------------------------


def rendered(content: LabelContent) -> bytes:
    return f"label {content.tracking_number} for {content.request.shipment_id}".encode()


def stockflow_post(destinations: frozenset[str] | None = None) -> StockflowPost:
    serials = itertools.count(41)
    return StockflowPost(
        next_serial=lambda: next(serials),
        render_label=rendered,
        reach=CarrierReach(destinations=destinations),
    )


def test_stockflow_post_charges_base_plus_started_kilograms_of_billable_weight() -> None:
    post = stockflow_post()

    small = post.quote(SMALL, ServiceLevel.STANDARD, LONDON)
    bulky = post.quote(BULKY, ServiceLevel.EXPRESS, LONDON)

    assert small == Rate("stockflow-post", ServiceLevel.STANDARD, Decimal("5.75"), "GBP", 3)
    assert bulky is not None
    assert bulky.amount == Decimal("8.50") + 20 * Decimal("1.60")
    assert bulky.transit_days == 1


@pytest.mark.parametrize(
    ("package", "destination"),
    [
        (SMALL, PARIS),  # serves its home country only unless configured
        (Package(30_001, Dimensions(100, 100, 100)), LONDON),  # too heavy
        (Package(1_000, Dimensions(1_300, 100, 100)), LONDON),  # too long
    ],
)
def test_stockflow_post_declines_what_it_cannot_carry(
    package: Package, destination: Address
) -> None:
    assert stockflow_post().quote(package, ServiceLevel.STANDARD, destination) is None


def test_stockflow_post_serves_configured_destinations() -> None:
    post = stockflow_post(destinations=frozenset({"GB", "FR"}))

    assert post.quote(SMALL, ServiceLevel.STANDARD, PARIS) is not None


def test_stockflow_post_labels_carry_valid_s10_numbers_per_service_level() -> None:
    post = stockflow_post()
    request = LabelRequest("ORD-1", "ORD-1-S1", LEEDS, LONDON, (SMALL,), ServiceLevel.STANDARD)

    standard = post.create_label(request)
    express = post.create_label(
        LabelRequest("ORD-1", "ORD-1-S2", LEEDS, LONDON, (SMALL,), ServiceLevel.EXPRESS)
    )

    assert standard.tracking_number == format_s10("CP", 41, "GB")
    assert express.tracking_number == format_s10("EE", 42, "GB")
    assert all(is_valid_s10(label.tracking_number) for label in (standard, express))
    assert standard.carrier == "stockflow-post"
    assert standard.service_level is ServiceLevel.STANDARD
    assert standard.document == f"label {standard.tracking_number} for ORD-1-S1".encode()
    assert standard.media_type == "application/pdf"


# Rate shopping -------------------------------------------------------------------------------


@dataclass
class FlatRateCarrier:
    """A test carrier: one price and transit time per service level, anywhere."""

    name: str
    prices: dict[ServiceLevel, tuple[str, int]]
    currency: str = "GBP"

    def quote(
        self, package: Package, service_level: ServiceLevel, destination: Address
    ) -> Rate | None:
        if service_level not in self.prices:
            return None
        amount, days = self.prices[service_level]
        return Rate(self.name, service_level, Decimal(amount), self.currency, days)

    def create_label(self, request: LabelRequest) -> Label:
        raise NotImplementedError("rate shopping never buys a label")


def test_cheapest_carrier_wins() -> None:
    cheap = FlatRateCarrier("cheap", {ServiceLevel.STANDARD: ("3.00", 4)})
    dear = FlatRateCarrier("dear", {ServiceLevel.STANDARD: ("9.00", 1)})

    choice = shop_rates([dear, cheap], [SMALL, SMALL], ServiceLevel.STANDARD, LONDON)

    assert choice.carrier is cheap
    assert choice.total == Decimal("6.00")
    assert choice.currency == "GBP"
    assert choice.transit_days == 4
    assert len(choice.rates) == 2


def test_a_rate_too_slow_for_the_service_level_is_skipped() -> None:
    slow = FlatRateCarrier("slow", {ServiceLevel.EXPRESS: ("2.00", 3)})
    fast = FlatRateCarrier("fast", {ServiceLevel.EXPRESS: ("12.00", 1)})

    choice = shop_rates([slow, fast], [SMALL], ServiceLevel.EXPRESS, LONDON)

    assert choice.carrier is fast


def test_stockflow_post_competes_with_other_carriers() -> None:
    post = stockflow_post()
    rival = FlatRateCarrier("rival", {ServiceLevel.STANDARD: ("5.00", 2)})

    configured: list[Carrier] = [post, rival]

    small = shop_rates(configured, [SMALL], ServiceLevel.STANDARD, LONDON)
    bulky = shop_rates(configured, [BULKY], ServiceLevel.STANDARD, LONDON)

    assert small.carrier is rival  # 5.00 beats 3.95 + 2 x 0.90
    assert bulky.carrier is rival  # flat rate beats 20 started kg
    assert shop_rates([post], [SMALL], ServiceLevel.STANDARD, LONDON).total == Decimal("5.75")


def test_ties_go_to_the_faster_carrier_then_by_name() -> None:
    slower = FlatRateCarrier("aardvark", {ServiceLevel.STANDARD: ("5.00", 3)})
    faster = FlatRateCarrier("zebra", {ServiceLevel.STANDARD: ("5.00", 2)})
    twin = FlatRateCarrier("yak", {ServiceLevel.STANDARD: ("5.00", 2)})

    assert shop_rates([slower, faster], [SMALL], ServiceLevel.STANDARD, LONDON).carrier is faster
    for order in itertools.permutations([faster, twin, slower]):
        choice = shop_rates(order, [SMALL], ServiceLevel.STANDARD, LONDON)
        assert choice.carrier is twin


def test_a_carrier_must_take_every_package() -> None:
    post = stockflow_post()  # cannot take the heavy one
    heavy = Package(31_000, Dimensions(300, 300, 300))
    rival = FlatRateCarrier("rival", {ServiceLevel.STANDARD: ("50.00", 2)})

    configured: list[Carrier] = [post, rival]

    choice = shop_rates(configured, [SMALL, heavy], ServiceLevel.STANDARD, LONDON)

    assert choice.carrier is rival


def test_no_carrier_for_the_service_level_is_a_clear_error() -> None:
    post = stockflow_post()

    with pytest.raises(NoCarrierAvailable) as refused:
        shop_rates([post], [SMALL], ServiceLevel.EXPRESS, PARIS)
    assert str(refused.value) == (
        "No carrier (stockflow-post) can deliver 1 package(s) to FR within 2 day(s) "
        "(express service)."
    )


def test_shopping_needs_packages_and_one_currency() -> None:
    pounds = FlatRateCarrier("pounds", {ServiceLevel.STANDARD: ("5.00", 2)})
    euros = FlatRateCarrier("euros", {ServiceLevel.STANDARD: ("5.00", 2)}, currency="EUR")

    with pytest.raises(NoCarrierAvailable, match="pack the shipment first"):
        shop_rates([pounds], [], ServiceLevel.STANDARD, LONDON)
    with pytest.raises(ValueError, match="different currencies"):
        shop_rates([pounds, euros], [SMALL], ServiceLevel.STANDARD, LONDON)
