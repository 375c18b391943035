"""Packages: measured or computed from variant data, and their dimensional weight."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from stockflow.fulfillment.domain import (
    Dimensions,
    Package,
    PackingError,
    ShipmentLine,
    VariantSpec,
    build_package,
)

VARIANTS = {
    "MUG": VariantSpec("MUG", weight_grams=350, dimensions=Dimensions(120, 90, 100)),
    "TEA": VariantSpec("TEA", weight_grams=1000, dimensions=Dimensions(200, 100, 60)),
    "POSTER": VariantSpec("POSTER", weight_grams=200),
}


def test_defaults_from_variant_data_stack_the_items() -> None:
    package = build_package(
        [ShipmentLine("L1", "MUG", 2), ShipmentLine("L2", "TEA", 1)], VARIANTS, tare_grams=150
    )

    assert package.weight_grams == 150 + 2 * 350 + 1000
    assert package.dimensions == Dimensions(200, 100, 2 * 100 + 60)


def test_measured_values_win_over_defaults() -> None:
    package = build_package(
        [ShipmentLine("L1", "POSTER", 1)],
        VARIANTS,
        weight_grams=260,
        dimensions=Dimensions(800, 80, 80),
    )

    assert package == Package(260, Dimensions(800, 80, 80))


def test_missing_variant_data_asks_the_packer_to_measure() -> None:
    with pytest.raises(
        PackingError, match="no dimensions for POSTER; enter the package's dimensions as measured"
    ):
        build_package([ShipmentLine("L1", "POSTER", 1)], VARIANTS)
    with pytest.raises(PackingError, match="no weight for GLOBE, LAMP"):
        build_package(
            [ShipmentLine("L1", "LAMP", 1), ShipmentLine("L2", "GLOBE", 1)],
            VARIANTS,
            dimensions=Dimensions(100, 100, 100),
        )


def test_only_the_missing_measurement_needs_variant_data() -> None:
    package = build_package(
        [ShipmentLine("L1", "POSTER", 2)], VARIANTS, dimensions=Dimensions(1, 1, 1)
    )

    assert package.weight_grams == 2 * 200 + 150


def test_dimensional_weight() -> None:
    # 40 x 30 x 20 cm = 24,000 cm³; / 5000 = 4.8 kg.
    box = Package(weight_grams=1_000, dimensions=Dimensions(400, 300, 200))

    assert box.dimensional_weight_grams() == 4_800
    assert box.dimensional_weight_grams(divisor=6000) == 4_000
    assert box.billable_weight_grams() == 4_800


def test_dense_package_bills_its_actual_weight() -> None:
    brick = Package(weight_grams=3_000, dimensions=Dimensions(200, 100, 60))

    assert brick.dimensional_weight_grams() == 240
    assert brick.billable_weight_grams() == 3_000


def test_dimensional_weight_rounds_up_to_the_gram() -> None:
    assert Package(1, Dimensions(1, 1, 1)).dimensional_weight_grams() == 1


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Dimensions(0, 10, 10), "longer than 0 mm"),
        (lambda: Package(0, Dimensions(10, 10, 10)), "weigh more than 0 g"),
        (lambda: build_package([], VARIANTS), "at least one item"),
    ],
)
def test_impossible_packages_are_refused(build: Callable[[], object], message: str) -> None:
    with pytest.raises(PackingError, match=message):
        build()
