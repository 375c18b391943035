"""Pick lists: walking order, batch picking, short picks and the discrepancies they raise."""

from __future__ import annotations

import pytest

from stockflow.fulfillment.domain import (
    Address,
    BundlePart,
    InvalidPick,
    PickAssignment,
    Shipment,
    ShipmentLine,
    ShipmentStatus,
    StockDiscrepancy,
    bin_walk_key,
    build_pick_list,
)

HOME = Address("Ada Lovelace", "12 St James's Square", "London", "SW1Y 4JH", "GB")
BINS = {"MUG": "A-03-2", "TEA": "B-01-1", "LAMP": "A-10-1", "PEN": "C-02-4"}


def shipment(shipment_id: str, *lines: ShipmentLine, location: str = "LEEDS") -> Shipment:
    return Shipment(shipment_id, shipment_id.split("-S")[0], location, HOME, lines)


def test_bins_follow_a_serpentine_walk() -> None:
    bins = ["B-01-1", "A-10-1", "C-02-4", "A-03-2", "B-07-2", "A-03-1", "A-9-1", "C-11-1"]

    walk = sorted(bins, key=bin_walk_key)

    # Up aisle A, down aisle B, up aisle C; levels bottom up within a rack.
    assert walk == ["A-03-1", "A-03-2", "A-9-1", "A-10-1", "B-07-2", "B-01-1", "C-02-4", "C-11-1"]


def test_numeric_and_multi_letter_aisles() -> None:
    assert sorted(["2-01-1", "2-05-1", "1-09-1", "10-1-1"], key=bin_walk_key) == [
        "1-09-1",
        "2-05-1",
        "2-01-1",
        "10-1-1",
    ]
    assert sorted(["AA-1-1", "Z-1-1", "b-2-1", "B-1-1"], key=bin_walk_key) == [
        "b-2-1",
        "B-1-1",
        "Z-1-1",
        "AA-1-1",
    ]


def test_odd_codes_come_after_the_walk_in_natural_order_and_unknown_bins_last() -> None:
    bins = [None, "DOCK10", "DOCK9", "A-01-1"]

    assert sorted(bins, key=bin_walk_key) == ["A-01-1", "DOCK9", "DOCK10", None]


def test_pick_list_for_one_shipment_is_in_walking_order() -> None:
    pick_list = build_pick_list(
        [
            shipment(
                "ORD-1-S1",
                ShipmentLine("L1", "TEA", 1),
                ShipmentLine("L2", "PEN", 2),
                ShipmentLine("L3", "MUG", 1),
                ShipmentLine("L4", "LAMP", 1),
            )
        ],
        BINS,
    )

    assert pick_list.location == "LEEDS"
    assert [(line.bin, line.sku) for line in pick_list.lines] == [
        ("A-03-2", "MUG"),
        ("A-10-1", "LAMP"),
        ("B-01-1", "TEA"),
        ("C-02-4", "PEN"),
    ]


def test_batch_merges_skus_and_attributes_units_to_shipments() -> None:
    first = shipment("ORD-1-S1", ShipmentLine("L1", "MUG", 2), ShipmentLine("L2", "TEA", 1))
    second = shipment("ORD-2-S1", ShipmentLine("L1", "MUG", 3))

    pick_list = build_pick_list([first, second], BINS)

    assert pick_list.shipment_ids == ("ORD-1-S1", "ORD-2-S1")
    mug, tea = pick_list.lines
    assert (mug.sku, mug.bin, mug.quantity) == ("MUG", "A-03-2", 5)
    assert mug.assignments == (
        PickAssignment("ORD-1-S1", "L1", 2),
        PickAssignment("ORD-2-S1", "L1", 3),
    )
    assert tea.assignments == (PickAssignment("ORD-1-S1", "L2", 1),)


def test_full_batch_pick_completes_every_shipment() -> None:
    first = shipment("ORD-1-S1", ShipmentLine("L1", "MUG", 2), ShipmentLine("L2", "TEA", 1))
    second = shipment("ORD-2-S1", ShipmentLine("L1", "MUG", 3))
    pick_list = build_pick_list([first, second], BINS)
    first.start_picking()
    second.start_picking()

    confirmation = pick_list.confirm({"MUG": 5, "TEA": 1})

    assert confirmation.discrepancies == ()
    assert confirmation.picked == {"ORD-1-S1": {"L1": 2, "L2": 1}, "ORD-2-S1": {"L1": 3}}
    for each in (first, second):
        each.record_picks(confirmation.picked[each.shipment_id])
        assert each.status is ShipmentStatus.PICKED


def test_short_pick_yields_a_discrepancy_and_holds_only_the_shipment_that_misses_units() -> None:
    first = shipment("ORD-1-S1", ShipmentLine("L1", "MUG", 2))
    second = shipment("ORD-2-S1", ShipmentLine("L1", "MUG", 3))
    pick_list = build_pick_list([first, second], BINS)
    first.start_picking()
    second.start_picking()

    confirmation = pick_list.confirm({"MUG": 4})

    assert confirmation.discrepancies == (
        StockDiscrepancy(sku="MUG", location="LEEDS", bin="A-03-2", expected=5, found=4),
    )
    # The first shipment in the batch is served first.
    assert confirmation.picked == {"ORD-1-S1": {"L1": 2}, "ORD-2-S1": {"L1": 2}}
    assert first.record_picks(confirmation.picked["ORD-1-S1"]) == ()
    assert second.record_picks(confirmation.picked["ORD-2-S1"]) == (ShipmentLine("L1", "MUG", 1),)
    assert (first.status, second.status) == (ShipmentStatus.PICKED, ShipmentStatus.ON_HOLD)


KIT = {"KIT": (BundlePart("MUG", 1), BundlePart("TEA", 3))}


def test_a_bundle_is_picked_as_its_components_times_the_bundle_units() -> None:
    kit = shipment("ORD-1-S1", ShipmentLine("L1", "KIT", 2), ShipmentLine("L2", "MUG", 1))

    pick_list = build_pick_list([kit], BINS, KIT)

    assert [(line.bin, line.sku, line.quantity) for line in pick_list.lines] == [
        ("A-03-2", "MUG", 3),
        ("B-01-1", "TEA", 6),
    ]
    mug, tea = pick_list.lines
    assert mug.assignments == (
        PickAssignment("ORD-1-S1", "L1", 2, per_unit=1),
        PickAssignment("ORD-1-S1", "L2", 1),
    )
    assert tea.assignments == (PickAssignment("ORD-1-S1", "L1", 6, per_unit=3),)
    assert type(pick_list).from_dict(pick_list.to_dict()) == pick_list


def test_a_bundle_line_counts_the_whole_bundles_its_scarcest_component_makes() -> None:
    kit = shipment("ORD-1-S1", ShipmentLine("L1", "KIT", 2))
    pick_list = build_pick_list([kit], BINS, KIT)
    kit.start_picking()

    confirmation = pick_list.confirm({"MUG": 2, "TEA": 5})

    assert confirmation.picked == {"ORD-1-S1": {"L1": 1}}
    assert confirmation.discrepancies == (
        StockDiscrepancy(sku="TEA", location="LEEDS", bin="B-01-1", expected=6, found=5),
    )
    assert kit.record_picks(confirmation.picked["ORD-1-S1"]) == (ShipmentLine("L1", "KIT", 1),)
    assert kit.status is ShipmentStatus.ON_HOLD


def test_every_component_found_picks_the_bundle_line_whole() -> None:
    kit = shipment("ORD-1-S1", ShipmentLine("L1", "KIT", 2))
    pick_list = build_pick_list([kit], BINS, KIT)
    kit.start_picking()

    confirmation = pick_list.confirm({"MUG": 2, "TEA": 6})

    assert confirmation.picked == {"ORD-1-S1": {"L1": 2}}
    assert kit.record_picks(confirmation.picked["ORD-1-S1"]) == ()


def test_empty_bin_without_a_known_bin_code() -> None:
    pick_list = build_pick_list([shipment("ORD-1-S1", ShipmentLine("L1", "GLOBE", 1))], BINS)

    confirmation = pick_list.confirm({"GLOBE": 0})

    assert confirmation.discrepancies == (StockDiscrepancy("GLOBE", "LEEDS", None, 1, 0),)
    assert confirmation.picked == {"ORD-1-S1": {"L1": 0}}


@pytest.mark.parametrize(
    ("found", "message"),
    [
        ({"MUG": 3}, r"asks for 2 × MUG from bin A-03-2; a pick of 3 is not possible"),
        ({"MUG": -1}, "a pick of -1 is not possible"),
        ({}, "Enter how many units of MUG were found in bin A-03-2"),
        ({"MUG": 2, "TEA": 1}, "TEA is not on the pick list for LEEDS"),
    ],
)
def test_impossible_confirmations_are_refused(found: dict[str, int], message: str) -> None:
    pick_list = build_pick_list([shipment("ORD-1-S1", ShipmentLine("L1", "MUG", 2))], BINS)

    with pytest.raises(InvalidPick, match=message):
        pick_list.confirm(found)


def test_a_pick_list_covers_one_location() -> None:
    with pytest.raises(InvalidPick, match="one location; these shipments are at BRISTOL, LEEDS"):
        build_pick_list(
            [
                shipment("ORD-1-S1", ShipmentLine("L1", "MUG", 1)),
                shipment("ORD-2-S1", ShipmentLine("L1", "MUG", 1), location="BRISTOL"),
            ],
            BINS,
        )


def test_picked_shipments_cannot_be_picked_again() -> None:
    done = shipment("ORD-1-S1", ShipmentLine("L1", "MUG", 1))
    done.start_picking()
    done.record_picks({"L1": 1})

    with pytest.raises(InvalidPick, match="ORD-1-S1 is picked; it has nothing to pick"):
        build_pick_list([done], BINS)


def test_batch_needs_distinct_shipments() -> None:
    once = shipment("ORD-1-S1", ShipmentLine("L1", "MUG", 1))

    with pytest.raises(InvalidPick, match="appears twice"):
        build_pick_list([once, once], BINS)
    with pytest.raises(InvalidPick, match="at least one shipment"):
        build_pick_list([], BINS)
