"""LocationAllocation of an order across locations: one location first, fewest splits, backorder or
reject, untracked skus and bundles that never oversell a shared component."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from stockflow.stock.domain import (
    Allocated,
    BundleComponent,
    Hold,
    LineToAllocate,
    LocationAllocation,
    Rejection,
    UnservedLine,
    allocate_order,
    bundle_available,
)


def _allocated(result: Allocated | Rejection) -> Allocated:
    assert isinstance(result, Allocated), result
    return result


def _where(result: Allocated | Rejection) -> dict[str, list[tuple[str, int]]]:
    return {
        line.line_id: [(a.location, a.quantity) for a in line.allocations]
        for line in _allocated(result).lines
    }


def test_one_location_ships_the_whole_order_even_if_a_preferred_one_has_part() -> None:
    lines = [LineToAllocate("1", "A", 2), LineToAllocate("2", "B", 1)]
    stock = {("A", "WH-1"): 5, ("A", "WH-2"): 2, ("B", "WH-2"): 1}
    result = allocate_order(lines, stock, location_priority=["WH-1", "WH-2"])
    assert _where(result) == {"1": [("WH-2", 2)], "2": [("WH-2", 1)]}
    assert _allocated(result).complete


def test_several_whole_order_locations_tie_break_by_priority_then_name() -> None:
    lines = [LineToAllocate("1", "A", 1)]
    stock = {("A", "WH-C"): 1, ("A", "WH-B"): 1, ("A", "WH-A"): 1}
    assert _where(allocate_order(lines, stock)) == {"1": [("WH-A", 1)]}
    by_priority = allocate_order(lines, stock, location_priority=["WH-C"])
    assert _where(by_priority) == {"1": [("WH-C", 1)]}
    both = allocate_order(lines, stock, location_priority=["WH-B", "WH-C"])
    assert _where(both) == {"1": [("WH-B", 1)]}


def test_a_location_with_more_stock_does_not_beat_priority_when_both_ship_it_whole() -> None:
    stock = {("A", "BIG"): 100, ("A", "SMALL"): 3}
    result = allocate_order(
        [LineToAllocate("1", "A", 3)], stock, location_priority=["SMALL", "BIG"]
    )
    assert _where(result) == {"1": [("SMALL", 3)]}


def test_otherwise_split_across_the_fewest_locations() -> None:
    lines = [LineToAllocate("1", "A", 1), LineToAllocate("2", "B", 1), LineToAllocate("3", "C", 1)]
    stock = {
        ("A", "WH-1"): 1,
        ("B", "WH-2"): 1,
        ("C", "WH-3"): 1,
        ("A", "WH-4"): 1,
        ("B", "WH-4"): 1,
    }
    result = allocate_order(lines, stock, location_priority=["WH-1", "WH-2", "WH-3", "WH-4"])
    assert _where(result) == {"1": [("WH-4", 1)], "2": [("WH-4", 1)], "3": [("WH-3", 1)]}


def test_a_line_is_not_split_when_another_location_holds_it_whole() -> None:
    lines = [LineToAllocate("1", "A", 4), LineToAllocate("2", "B", 1)]
    stock = {("A", "WH-1"): 3, ("B", "WH-1"): 1, ("A", "WH-2"): 4}
    result = allocate_order(lines, stock, location_priority=["WH-1", "WH-2"])
    assert _where(result) == {"1": [("WH-2", 4)], "2": [("WH-1", 1)]}


def test_a_line_no_location_holds_whole_is_split_largest_first() -> None:
    stock = {("A", "WH-1"): 4, ("A", "WH-2"): 6, ("A", "WH-3"): 1}
    result = allocate_order([LineToAllocate("1", "A", 10)], stock, location_priority=["WH-1"])
    assert _where(result) == {"1": [("WH-2", 6), ("WH-1", 4)]}


def test_the_rest_of_a_split_line_goes_to_the_preferred_location_that_covers_it() -> None:
    stock = {("A", "WH-1"): 6, ("A", "WH-2"): 5, ("A", "WH-3"): 9}
    result = allocate_order([LineToAllocate("1", "A", 10)], stock, location_priority=["WH-2"])
    assert _where(result) == {"1": [("WH-3", 9), ("WH-2", 1)]}


def test_a_split_draws_on_locations_already_used_first() -> None:
    lines = [LineToAllocate("1", "A", 5), LineToAllocate("2", "B", 10)]
    stock = {("A", "WH-2"): 5, ("B", "WH-1"): 7, ("B", "WH-2"): 3, ("B", "WH-3"): 8}
    result = allocate_order(lines, stock)
    assert _where(result) == {"1": [("WH-2", 5)], "2": [("WH-2", 3), ("WH-1", 7)]}


def test_lines_of_one_sku_share_its_stock() -> None:
    lines = [LineToAllocate("1", "A", 3), LineToAllocate("2", "A", 3)]
    result = allocate_order(lines, {("A", "WH-1"): 4, ("A", "WH-2"): 2})
    assert _where(result) == {"1": [("WH-1", 3)], "2": [("WH-1", 1), ("WH-2", 2)]}


def test_a_short_line_that_may_be_backordered_reserves_what_there_is() -> None:
    lines = [LineToAllocate("1", "A", 5, backorder_allowed=True), LineToAllocate("2", "B", 1)]
    result = _allocated(allocate_order(lines, {("A", "WH-1"): 2, ("B", "WH-1"): 1}))
    first, second = result.lines
    assert (first.reserved, first.backordered, first.requested) == (2, 3, 5)
    assert first.backorders == (("A", 3),)
    assert (second.reserved, second.backordered, second.backorders) == (1, 0, ())
    assert not result.complete


def test_a_line_with_no_stock_at_all_is_wholly_backordered() -> None:
    result = _allocated(allocate_order([LineToAllocate("1", "A", 2, backorder_allowed=True)], {}))
    assert result.lines[0].allocations == ()
    assert result.lines[0].backordered == 2
    assert result.holds == ()


def test_a_short_line_that_may_not_be_backordered_rejects_the_whole_order() -> None:
    lines = [
        LineToAllocate("1", "A", 5),
        LineToAllocate("2", "B", 1),
        LineToAllocate("3", "C", 9, backorder_allowed=True),
        LineToAllocate("4", "D", 2),
    ]
    stock = {("A", "WH-1"): 2, ("A", "WH-2"): 1, ("B", "WH-1"): 3, ("C", "WH-1"): 1}
    result = allocate_order(lines, stock)
    assert result == Rejection(
        (UnservedLine("1", "A", requested=5, available=3), UnservedLine("4", "D", 2, 0))
    )
    assert result.reason == "insufficient_stock"


def test_untracked_skus_are_reported_and_never_reserved() -> None:
    lines = [
        LineToAllocate("1", "EBOOK", 1),
        LineToAllocate("2", "A", 1),
        LineToAllocate("3", "SETUP", 4),
    ]
    result = _allocated(
        allocate_order(lines, {("A", "WH-1"): 1}, untracked={"EBOOK", "SETUP", "unused"})
    )
    assert [line.untracked for line in result.lines] == [True, False, True]
    assert result.lines[0].allocations == () and result.lines[0].backordered == 0
    assert result.holds == (Hold("A", "WH-1", 1),)
    assert result.complete


def test_an_order_of_only_untracked_lines_needs_no_stock() -> None:
    result = _allocated(
        allocate_order([LineToAllocate("1", "GIFT-CARD", 3)], {}, untracked={"GIFT-CARD"})
    )
    assert result.lines[0].untracked and result.holds == ()


KIT = {"KIT": [BundleComponent("A", 2), BundleComponent("B", 1)]}


def test_bundle_availability_is_the_scarcest_component() -> None:
    stock = {("A", "WH-1"): 7, ("B", "WH-1"): 5, ("A", "WH-2"): 9}
    assert bundle_available(KIT["KIT"], "WH-1", stock) == 3
    assert bundle_available(KIT["KIT"], "WH-2", stock) == 0
    assert bundle_available(KIT["KIT"], "WH-9", stock) == 0
    assert bundle_available([], "WH-1", stock) == 0


def test_a_bundle_line_reserves_its_components_at_one_location() -> None:
    stock = {("A", "WH-1"): 4, ("B", "WH-1"): 2}
    result = _allocated(allocate_order([LineToAllocate("1", "KIT", 2)], stock, bundles=KIT))
    line = result.lines[0]
    assert line.allocations == (LocationAllocation("WH-1", 2),)
    assert line.holds == (Hold("A", "WH-1", 4), Hold("B", "WH-1", 2))


def test_a_bundle_never_takes_components_from_two_locations() -> None:
    stock = {("A", "WH-1"): 2, ("B", "WH-2"): 1}
    result = allocate_order([LineToAllocate("1", "KIT", 1)], stock, bundles=KIT)
    assert result == Rejection((UnservedLine("1", "KIT", 1, available=0),))


def test_bundle_units_may_split_across_locations_when_needed() -> None:
    stock = {("A", "WH-1"): 2, ("B", "WH-1"): 1, ("A", "WH-2"): 2, ("B", "WH-2"): 5}
    result = allocate_order([LineToAllocate("1", "KIT", 2)], stock, bundles=KIT)
    assert _where(result) == {"1": [("WH-1", 1), ("WH-2", 1)]}


def test_a_backordered_bundle_queues_its_components() -> None:
    stock = {("A", "WH-1"): 2, ("B", "WH-1"): 1}
    line = _allocated(
        allocate_order([LineToAllocate("1", "KIT", 3, backorder_allowed=True)], stock, bundles=KIT)
    ).lines[0]
    assert (line.reserved, line.backordered) == (1, 2)
    assert line.backorders == (("A", 4), ("B", 2))


def test_two_bundles_sharing_a_component_cannot_oversell_it() -> None:
    bundles = {
        "KIT-X": [BundleComponent("A", 2), BundleComponent("B", 1)],
        "KIT-Y": [BundleComponent("A", 1), BundleComponent("C", 1)],
    }
    stock = {("A", "WH-1"): 3, ("B", "WH-1"): 5, ("C", "WH-1"): 5}
    lines = [LineToAllocate("1", "KIT-X", 1), LineToAllocate("2", "KIT-Y", 2)]
    assert bundle_available(bundles["KIT-X"], "WH-1", stock) == 1
    assert bundle_available(bundles["KIT-Y"], "WH-1", stock) == 3
    rejected = allocate_order(lines, stock, bundles=bundles)
    assert isinstance(rejected, Rejection)

    lines[1] = LineToAllocate("2", "KIT-Y", 2, backorder_allowed=True)
    result = _allocated(allocate_order(lines, stock, bundles=bundles))
    taken = Counter[str]()
    for hold in result.holds:
        taken[hold.sku] += hold.quantity
    assert taken["A"] == 3
    assert [line.backordered for line in result.lines] == [0, 1]


def test_a_bundle_and_its_component_sold_alone_share_the_component() -> None:
    stock = {("A", "WH-1"): 1, ("B", "WH-1"): 1, ("A", "WH-2"): 1}
    kit = {"KIT": [BundleComponent("A", 1), BundleComponent("B", 1)]}
    lines = [LineToAllocate("1", "A", 1), LineToAllocate("2", "KIT", 1)]
    result = allocate_order(lines, stock, bundles=kit, location_priority=["WH-1"])
    assert _where(result) == {"1": [("WH-2", 1)], "2": [("WH-1", 1)]}


def test_untracked_components_of_a_bundle_are_not_reserved() -> None:
    bundles = {"STARTER": [BundleComponent("A", 1), BundleComponent("MANUAL-PDF", 1)]}
    line = _allocated(
        allocate_order(
            [LineToAllocate("1", "STARTER", 2)],
            {("A", "WH-1"): 2},
            bundles=bundles,
            untracked={"MANUAL-PDF"},
        )
    ).lines[0]
    assert line.holds == (Hold("A", "WH-1", 2),)
    assert not line.untracked


def test_a_bundle_of_untracked_parts_is_untracked() -> None:
    bundles = {"DIGITAL": [BundleComponent("EBOOK", 1), BundleComponent("COURSE", 1)]}
    result = allocate_order(
        [LineToAllocate("1", "DIGITAL", 1)], {}, bundles=bundles, untracked={"EBOOK", "COURSE"}
    )
    assert _allocated(result).lines[0].untracked


def test_a_bundle_listing_a_component_twice_needs_both() -> None:
    bundles = {"PAIR": [BundleComponent("A", 1), BundleComponent("A", 1)]}
    result = _allocated(
        allocate_order([LineToAllocate("1", "PAIR", 1)], {("A", "W"): 2}, bundles=bundles)
    )
    assert result.holds == (Hold("A", "W", 2),)


def test_non_positive_or_negative_stock_figures_count_as_none() -> None:
    result = allocate_order([LineToAllocate("1", "A", 1)], {("A", "WH-1"): -3, ("A", "WH-2"): 0})
    assert result == Rejection((UnservedLine("1", "A", 1, 0),))


@pytest.mark.parametrize(
    ("lines", "bundles", "message"),
    [
        ([LineToAllocate("1", "A", 1), LineToAllocate("1", "B", 1)], {}, "unique"),
        ([LineToAllocate("1", "A", 0)], {}, "positive"),
        ([LineToAllocate("1", "K", 1)], {"K": []}, "components"),
        ([LineToAllocate("1", "K", 1)], {"K": [BundleComponent("A", 0)]}, "components"),
        (
            [LineToAllocate("1", "K", 1)],
            {"K": [BundleComponent("J", 1)], "J": [BundleComponent("A", 1)]},
            "nesting",
        ),
    ],
)
def test_malformed_input_is_refused(
    lines: list[LineToAllocate], bundles: dict[str, list[BundleComponent]], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        allocate_order(lines, {}, bundles=bundles)


BUNDLES = {
    "KIT-1": [BundleComponent("A", 2), BundleComponent("B", 1)],
    "KIT-2": [BundleComponent("A", 1), BundleComponent("C", 3)],
    "KIT-3": [BundleComponent("B", 1), BundleComponent("C", 1), BundleComponent("D", 1)],
}
PLAIN = ("A", "B", "C", "D", "E")
SITES = ("WH-1", "WH-2", "WH-3", "STORE-1")


def _random_order(rng: random.Random) -> list[LineToAllocate]:
    return [
        LineToAllocate(
            f"L{index}",
            rng.choice([*PLAIN, *BUNDLES]),
            rng.randint(1, 6),
            backorder_allowed=rng.random() < 0.5,
        )
        for index in range(rng.randint(1, 5))
    ]


@pytest.mark.parametrize("seed", [5, 42, 99])
def test_random_orders_never_oversell_and_add_up(seed: int) -> None:
    rng = random.Random(seed)
    outcomes = Counter[str]()
    for _ in range(400):
        stock = {(sku, site): rng.randint(0, 8) for sku in PLAIN for site in SITES}
        lines = _random_order(rng)
        priority = rng.sample(SITES, k=rng.randint(0, len(SITES)))
        result = allocate_order(lines, stock, location_priority=priority, bundles=BUNDLES)
        if isinstance(result, Rejection):
            outcomes["rejected"] += 1
            assert result.lines
            assert all(
                not line.backorder_allowed
                for line in lines
                if line.line_id in {short.line_id for short in result.lines}
            )
            continue
        outcomes["complete" if result.complete else "backordered"] += 1
        taken = Counter[tuple[str, str]]()
        for hold in result.holds:
            taken[(hold.sku, hold.location)] += hold.quantity
        assert all(quantity <= stock[key] for key, quantity in taken.items())
        for line, served in zip(lines, result.lines, strict=True):
            assert served.line_id == line.line_id
            assert served.reserved + served.backordered == line.quantity
            assert line.backorder_allowed or served.backordered == 0
            assert len({a.location for a in served.allocations}) == len(served.allocations)
        # Same input, same answer, whatever the order of the stock mapping.
        shuffled = dict(rng.sample(list(stock.items()), k=len(stock)))
        again = allocate_order(lines, shuffled, location_priority=priority, bundles=BUNDLES)
        assert again == result
    assert min(outcomes.values()) > 10, outcomes


@pytest.mark.parametrize("seed", [8, 13])
def test_an_order_one_location_can_ship_whole_goes_to_one_location(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(300):
        lines = [LineToAllocate(f"L{i}", rng.choice(PLAIN), rng.randint(1, 4)) for i in range(3)]
        needed = Counter[str]()
        for line in lines:
            needed[line.sku] += line.quantity
        whole_at = rng.choice(SITES)
        stock = {(sku, site): rng.randint(0, 6) for sku in PLAIN for site in SITES}
        stock |= {(sku, whole_at): quantity + rng.randint(0, 2) for sku, quantity in needed.items()}
        result = _allocated(allocate_order(lines, stock))
        locations = {a.location for line in result.lines for a in line.allocations}
        assert len(locations) == 1
