"""Shipment planning: one shipment per location now, backordered units later."""

from __future__ import annotations

from stockflow.fulfillment.domain import (
    Address,
    AllocatedUnits,
    ConfirmedLine,
    LocationQuantity,
    ServiceLevel,
    ShipmentLine,
    ShipmentStatus,
    plan_backorder_shipments,
    plan_confirmed_order,
)

HOME = Address("Grace Hopper", "1 Navy Way", "Arlington", "22201", "US")


def test_one_shipment_per_location() -> None:
    plan = plan_confirmed_order(
        "ORD-7",
        HOME,
        [
            ConfirmedLine(
                "L1", "MUG", (LocationQuantity("LEEDS", 2), LocationQuantity("BRISTOL", 1))
            ),
            ConfirmedLine("L2", "TEA", (LocationQuantity("LEEDS", 3),)),
        ],
        ServiceLevel.EXPRESS,
    )

    by_location = {shipment.location: shipment for shipment in plan.shipments}
    assert [s.shipment_id for s in plan.shipments] == ["ORD-7-S1", "ORD-7-S2"]
    assert by_location["BRISTOL"].lines == (ShipmentLine("L1", "MUG", 1),)
    assert by_location["LEEDS"].lines == (
        ShipmentLine("L1", "MUG", 2),
        ShipmentLine("L2", "TEA", 3),
    )
    for shipment in plan.shipments:
        assert shipment.status is ShipmentStatus.CREATED
        assert (shipment.order_id, shipment.ship_to) == ("ORD-7", HOME)
        assert shipment.service_level is ServiceLevel.EXPRESS
    assert plan.backordered == ()


def test_planning_is_deterministic() -> None:
    lines = [ConfirmedLine("L1", "MUG", (LocationQuantity("B", 1), LocationQuantity("A", 1)))]

    first = plan_confirmed_order("ORD-7", HOME, lines)
    second = plan_confirmed_order("ORD-7", HOME, list(reversed(lines)))

    assert [(s.shipment_id, s.location) for s in first.shipments] == [
        ("ORD-7-S1", "A"),
        ("ORD-7-S2", "B"),
    ]
    assert first.shipments == second.shipments


def test_backordered_units_are_set_aside() -> None:
    plan = plan_confirmed_order(
        "ORD-7",
        HOME,
        [
            ConfirmedLine("L1", "MUG", (LocationQuantity("LEEDS", 1),), backordered=2),
            ConfirmedLine("L2", "LAMP", (), backordered=1),
        ],
    )

    assert [s.lines for s in plan.shipments] == [(ShipmentLine("L1", "MUG", 1),)]
    assert plan.backordered == (ShipmentLine("L1", "MUG", 2), ShipmentLine("L2", "LAMP", 1))


def test_lines_without_stock_need_no_shipment() -> None:
    plan = plan_confirmed_order("ORD-7", HOME, [ConfirmedLine("L1", "GIFT-CARD")])

    assert plan.shipments == ()
    assert plan.backordered == ()


def test_same_line_held_twice_at_one_location_ships_as_one_line() -> None:
    plan = plan_confirmed_order(
        "ORD-7",
        HOME,
        [ConfirmedLine("L1", "MUG", (LocationQuantity("A", 1), LocationQuantity("A", 2)))],
    )

    assert plan.shipments[0].lines == (ShipmentLine("L1", "MUG", 3),)


def test_backorder_allocation_becomes_a_later_shipment() -> None:
    later = plan_backorder_shipments(
        "ORD-7",
        HOME,
        [AllocatedUnits("L1", "MUG", "LEEDS", 2), AllocatedUnits("L2", "LAMP", "BRISTOL", 1)],
        shipments_so_far=1,
    )

    assert [(s.shipment_id, s.location, s.lines) for s in later] == [
        ("ORD-7-S2", "BRISTOL", (ShipmentLine("L2", "LAMP", 1),)),
        ("ORD-7-S3", "LEEDS", (ShipmentLine("L1", "MUG", 2),)),
    ]
