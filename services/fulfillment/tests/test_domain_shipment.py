"""The shipment state machine: every legal step, every illegal one refused, tracking, cancel."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from stockflow.fulfillment.domain import (
    Address,
    CancelRefused,
    Dimensions,
    FulfillmentError,
    IllegalShipmentStep,
    InvalidPick,
    Label,
    Package,
    PackingError,
    ServiceLevel,
    Shipment,
    ShipmentLine,
    ShipmentStatus,
    TrackingStatus,
    TrackingUpdate,
    plan_unit_drops,
)

NOW = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
TRACKING = "CP000000014GB"
BOX = Package(weight_grams=900, dimensions=Dimensions(300, 200, 100))
LABEL = Label(
    carrier="stockflow-post",
    tracking_number=TRACKING,
    service_level=ServiceLevel.STANDARD,
    document=b"%PDF-",
)
ALL_PICKED = {"L1": 2, "L2": 1}


def new_shipment() -> Shipment:
    return Shipment(
        shipment_id="ORD-1-S1",
        order_id="ORD-1",
        location="LEEDS",
        ship_to=Address("Ada Lovelace", "12 St James's Square", "London", "SW1Y 4JH", "GB"),
        lines=(ShipmentLine("L1", "MUG-RED", 2), ShipmentLine("L2", "TEA-1KG", 1)),
    )


def scan(status: TrackingStatus, minutes: int, tracking_number: str = TRACKING) -> TrackingUpdate:
    return TrackingUpdate(tracking_number, status, NOW + timedelta(minutes=minutes))


# The legal path to each status, step by step.
PATH: dict[ShipmentStatus, list[Callable[[Shipment], object]]] = {
    ShipmentStatus.CREATED: [],
    ShipmentStatus.PICKING: [Shipment.start_picking],
    ShipmentStatus.ON_HOLD: [Shipment.start_picking, lambda s: s.record_picks({"L1": 1, "L2": 1})],
    ShipmentStatus.PICKED: [Shipment.start_picking, lambda s: s.record_picks(ALL_PICKED)],
}
PATH[ShipmentStatus.PACKED] = [*PATH[ShipmentStatus.PICKED], lambda s: s.pack([BOX])]
PATH[ShipmentStatus.LABELLED] = [*PATH[ShipmentStatus.PACKED], lambda s: s.record_label(LABEL)]
PATH[ShipmentStatus.SHIPPED] = [*PATH[ShipmentStatus.LABELLED], lambda s: s.ship(NOW)]
PATH[ShipmentStatus.IN_TRANSIT] = [
    *PATH[ShipmentStatus.SHIPPED],
    lambda s: s.apply_tracking(scan(TrackingStatus.IN_TRANSIT, 60)),
]
PATH[ShipmentStatus.DELIVERED] = [
    *PATH[ShipmentStatus.IN_TRANSIT],
    lambda s: s.apply_tracking(scan(TrackingStatus.DELIVERED, 120)),
]
PATH[ShipmentStatus.EXCEPTION] = [
    *PATH[ShipmentStatus.IN_TRANSIT],
    lambda s: s.apply_tracking(scan(TrackingStatus.EXCEPTION, 120)),
]
PATH[ShipmentStatus.CANCELLED] = [lambda s: s.cancel("customer changed their mind")]


def shipment_in(status: ShipmentStatus) -> Shipment:
    shipment = new_shipment()
    for step in PATH[status]:
        step(shipment)
    assert shipment.status is status
    return shipment


def test_every_status_is_reachable() -> None:
    assert set(PATH) == set(ShipmentStatus)


def test_happy_path_ships_with_carrier_and_tracking() -> None:
    shipment = shipment_in(ShipmentStatus.LABELLED)

    shipped = shipment.ship(NOW)

    assert shipment.status is ShipmentStatus.SHIPPED
    assert shipped.lines == new_shipment().lines
    assert (shipped.carrier, shipped.tracking_number) == ("stockflow-post", TRACKING)
    assert (shipped.order_id, shipped.location, shipped.shipped_at) == ("ORD-1", "LEEDS", NOW)


# Steps that move the shipment forward, and the one status each is allowed from.
STEPS: dict[str, tuple[Callable[[Shipment], object], ShipmentStatus]] = {
    "start_picking": (Shipment.start_picking, ShipmentStatus.CREATED),
    "record_picks": (lambda s: s.record_picks(ALL_PICKED), ShipmentStatus.PICKING),
    "repick": (Shipment.repick, ShipmentStatus.ON_HOLD),
    "ship_what_was_picked": (Shipment.ship_what_was_picked, ShipmentStatus.ON_HOLD),
    "pack": (lambda s: s.pack([BOX]), ShipmentStatus.PICKED),
    "record_label": (lambda s: s.record_label(LABEL), ShipmentStatus.PACKED),
    "ship": (lambda s: s.ship(NOW), ShipmentStatus.LABELLED),
    "drop_units": (lambda s: s.drop_units({"L1": 1}), ShipmentStatus.CREATED),
}


@pytest.mark.parametrize(
    ("step_name", "status"),
    [
        (name, status)
        for name, (_, allowed) in STEPS.items()
        for status in ShipmentStatus
        if status is not allowed
    ],
)
def test_every_out_of_order_step_is_refused(step_name: str, status: ShipmentStatus) -> None:
    shipment = shipment_in(status)
    step, _ = STEPS[step_name]

    with pytest.raises(IllegalShipmentStep, match=r"^Cannot .* shipment ORD-1-S1: it "):
        step(shipment)
    assert shipment.status is status


@pytest.mark.parametrize(
    ("status", "step_name", "message"),
    [
        (
            ShipmentStatus.PICKED,
            "ship",
            "Cannot ship shipment ORD-1-S1: it is picked but not packed yet. Next step: pack it.",
        ),
        (
            ShipmentStatus.PICKED,
            "record_label",
            "Cannot label shipment ORD-1-S1: it is picked but not packed yet. Next step: pack it.",
        ),
        (
            ShipmentStatus.PACKED,
            "ship",
            "Cannot ship shipment ORD-1-S1: it is packed but has no label yet. "
            "Next step: print its label.",
        ),
        (
            ShipmentStatus.CREATED,
            "pack",
            "Cannot pack shipment ORD-1-S1: it is waiting to be picked. "
            "Next step: start picking it.",
        ),
        (
            ShipmentStatus.ON_HOLD,
            "pack",
            "Cannot pack shipment ORD-1-S1: it is on hold after a short pick. "
            "Next step: re-pick it, or ship what was picked.",
        ),
        (
            ShipmentStatus.SHIPPED,
            "ship",
            "Cannot ship shipment ORD-1-S1: it has already been shipped.",
        ),
        (
            ShipmentStatus.CANCELLED,
            "start_picking",
            "Cannot start picking shipment ORD-1-S1: it was cancelled.",
        ),
    ],
)
def test_refusals_say_where_the_shipment_stands_and_what_to_do(
    status: ShipmentStatus, step_name: str, message: str
) -> None:
    step, _ = STEPS[step_name]

    with pytest.raises(IllegalShipmentStep) as refused:
        step(shipment_in(status))
    assert str(refused.value) == message


# Picks ---------------------------------------------------------------------------------------


def test_full_pick_makes_the_shipment_picked() -> None:
    shipment = shipment_in(ShipmentStatus.PICKING)

    assert shipment.record_picks(ALL_PICKED) == ()
    assert shipment.status is ShipmentStatus.PICKED


def test_short_pick_holds_the_shipment_and_names_the_missing_units() -> None:
    shipment = shipment_in(ShipmentStatus.PICKING)

    short = shipment.record_picks({"L1": 1, "L2": 1})

    assert short == (ShipmentLine("L1", "MUG-RED", 1),)
    assert shipment.status is ShipmentStatus.ON_HOLD


def test_held_shipment_can_ship_what_was_picked() -> None:
    shipment = shipment_in(ShipmentStatus.ON_HOLD)

    shortened = shipment.ship_what_was_picked()

    assert shortened.removed == (ShipmentLine("L1", "MUG-RED", 1),)
    assert shipment.lines == (ShipmentLine("L1", "MUG-RED", 1), ShipmentLine("L2", "TEA-1KG", 1))
    assert shipment.status is ShipmentStatus.PICKED
    shipment.pack([BOX])
    shipment.record_label(LABEL)
    assert shipment.ship(NOW).lines == shipment.lines


def test_ship_what_was_picked_drops_lines_with_nothing_picked() -> None:
    shipment = shipment_in(ShipmentStatus.PICKING)
    shipment.record_picks({"L1": 2, "L2": 0})

    shipment.ship_what_was_picked()

    assert shipment.lines == (ShipmentLine("L1", "MUG-RED", 2),)


def test_nothing_picked_cannot_ship_and_must_be_cancelled() -> None:
    shipment = shipment_in(ShipmentStatus.PICKING)
    shipment.record_picks({"L1": 0, "L2": 0})

    with pytest.raises(IllegalShipmentStep, match=r"Nothing was picked.*cancel it instead"):
        shipment.ship_what_was_picked()


def test_repick_starts_over() -> None:
    shipment = shipment_in(ShipmentStatus.ON_HOLD)

    shipment.repick()

    assert shipment.status is ShipmentStatus.PICKING
    assert shipment.short_lines == ()
    shipment.record_picks(ALL_PICKED)
    assert shipment.status is ShipmentStatus.PICKED


@pytest.mark.parametrize(
    ("picks", "message"),
    [
        ({"L1": 3, "L2": 1}, "needs 2 × MUG-RED; a pick of 3 is not possible"),
        ({"L1": -1, "L2": 1}, "a pick of -1 is not possible"),
        ({"L1": 2}, "Enter how many units of TEA-1KG"),
        ({"L1": 2, "L2": 1, "L9": 1}, "has no line L9"),
    ],
)
def test_impossible_pick_counts_are_refused(picks: dict[str, int], message: str) -> None:
    shipment = shipment_in(ShipmentStatus.PICKING)

    with pytest.raises(InvalidPick, match=message):
        shipment.record_picks(picks)
    assert shipment.status is ShipmentStatus.PICKING


def test_packing_needs_a_package() -> None:
    with pytest.raises(PackingError, match="at least one package"):
        shipment_in(ShipmentStatus.PICKED).pack([])


# Cancel --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "status",
    [
        ShipmentStatus.CREATED,
        ShipmentStatus.PICKING,
        ShipmentStatus.ON_HOLD,
        ShipmentStatus.PICKED,
        ShipmentStatus.PACKED,
        ShipmentStatus.LABELLED,
    ],
)
def test_cancel_before_shipping(status: ShipmentStatus) -> None:
    shipment = shipment_in(status)

    cancelled = shipment.cancel("customer cancelled")

    assert shipment.status is ShipmentStatus.CANCELLED
    assert cancelled is not None
    assert cancelled.lines == shipment.lines
    assert cancelled.reason == "customer cancelled"
    expected_void = TRACKING if status is ShipmentStatus.LABELLED else None
    assert cancelled.void_tracking_number == expected_void


def test_cancel_twice_is_harmless() -> None:
    shipment = shipment_in(ShipmentStatus.CANCELLED)

    assert shipment.cancel("again") is None
    assert shipment.cancel_reason == "customer changed their mind"


@pytest.mark.parametrize(
    "status",
    [
        ShipmentStatus.SHIPPED,
        ShipmentStatus.IN_TRANSIT,
        ShipmentStatus.DELIVERED,
        ShipmentStatus.EXCEPTION,
    ],
)
def test_cancel_after_shipping_is_refused_with_a_reason(status: ShipmentStatus) -> None:
    shipment = shipment_in(status)

    with pytest.raises(CancelRefused) as refused:
        shipment.cancel("too late")
    assert "Cannot cancel shipment ORD-1-S1" in str(refused.value)
    assert f"stockflow-post {TRACKING}" in str(refused.value)
    assert "Authorize a return instead." in str(refused.value)
    assert shipment.status is status


# Tracking ------------------------------------------------------------------------------------


def test_tracking_moves_shipment_through_transit_to_delivery() -> None:
    shipment = shipment_in(ShipmentStatus.SHIPPED)

    in_transit = shipment.apply_tracking(scan(TrackingStatus.IN_TRANSIT, 10))
    delivered = shipment.apply_tracking(scan(TrackingStatus.DELIVERED, 20))

    assert in_transit is not None and in_transit.status is ShipmentStatus.IN_TRANSIT
    assert delivered is not None and delivered.status is ShipmentStatus.DELIVERED
    assert delivered.occurred_at == NOW + timedelta(minutes=20)
    assert shipment.status is ShipmentStatus.DELIVERED


def test_duplicate_scan_changes_nothing() -> None:
    shipment = shipment_in(ShipmentStatus.SHIPPED)
    shipment.apply_tracking(scan(TrackingStatus.IN_TRANSIT, 10))

    assert shipment.apply_tracking(scan(TrackingStatus.IN_TRANSIT, 10)) is None
    assert shipment.status is ShipmentStatus.IN_TRANSIT


def test_later_scan_with_same_status_publishes_nothing() -> None:
    shipment = shipment_in(ShipmentStatus.IN_TRANSIT)

    assert shipment.apply_tracking(scan(TrackingStatus.IN_TRANSIT, 90)) is None
    assert shipment.last_tracking == scan(TrackingStatus.IN_TRANSIT, 90)


def test_stale_scan_does_not_undo_a_newer_one() -> None:
    shipment = shipment_in(ShipmentStatus.SHIPPED)
    shipment.apply_tracking(scan(TrackingStatus.EXCEPTION, 30))

    assert shipment.apply_tracking(scan(TrackingStatus.IN_TRANSIT, 10)) is None
    assert shipment.status is ShipmentStatus.EXCEPTION


def test_shipment_recovers_from_exception() -> None:
    shipment = shipment_in(ShipmentStatus.EXCEPTION)

    changed = shipment.apply_tracking(scan(TrackingStatus.IN_TRANSIT, 180))

    assert changed is not None and changed.status is ShipmentStatus.IN_TRANSIT


@pytest.mark.parametrize(
    "late", [TrackingStatus.IN_TRANSIT, TrackingStatus.EXCEPTION, TrackingStatus.DELIVERED]
)
def test_delivered_is_final(late: TrackingStatus) -> None:
    shipment = shipment_in(ShipmentStatus.DELIVERED)

    assert shipment.apply_tracking(scan(late, 500)) is None
    assert shipment.status is ShipmentStatus.DELIVERED


def test_delivery_arriving_before_older_transit_scan_still_delivers() -> None:
    shipment = shipment_in(ShipmentStatus.SHIPPED)
    shipment.apply_tracking(scan(TrackingStatus.DELIVERED, 60))

    assert shipment.apply_tracking(scan(TrackingStatus.IN_TRANSIT, 30)) is None
    assert shipment.status is ShipmentStatus.DELIVERED


def test_delivered_wins_even_if_timestamped_before_the_latest_scan() -> None:
    shipment = shipment_in(ShipmentStatus.SHIPPED)
    shipment.apply_tracking(scan(TrackingStatus.EXCEPTION, 60))

    changed = shipment.apply_tracking(scan(TrackingStatus.DELIVERED, 30))

    assert changed is not None and changed.status is ShipmentStatus.DELIVERED


@pytest.mark.parametrize(
    "status",
    [
        ShipmentStatus.CREATED,
        ShipmentStatus.PACKED,
        ShipmentStatus.LABELLED,
        ShipmentStatus.CANCELLED,
    ],
)
def test_tracking_before_shipping_is_refused(status: ShipmentStatus) -> None:
    shipment = shipment_in(status)

    with pytest.raises(IllegalShipmentStep, match="Cannot track shipment ORD-1-S1"):
        shipment.apply_tracking(scan(TrackingStatus.IN_TRANSIT, 10))
    assert shipment.status is status


def test_tracking_number_of_another_parcel_is_refused() -> None:
    shipment = shipment_in(ShipmentStatus.SHIPPED)

    with pytest.raises(FulfillmentError, match="does not belong to shipment ORD-1-S1"):
        shipment.apply_tracking(scan(TrackingStatus.DELIVERED, 10, "EE000000028GB"))


# --- units a customer cancelled ------------------------------------------------------------


def test_dropping_units_of_a_shipment_nobody_picks_yet_reports_them_removed() -> None:
    shipment = new_shipment()
    shortened = shipment.drop_units({"L1": 1})
    assert shipment.lines == (ShipmentLine("L1", "MUG-RED", 1), ShipmentLine("L2", "TEA-1KG", 1))
    assert shortened.removed == (ShipmentLine("L1", "MUG-RED", 1),)
    assert shipment.status is ShipmentStatus.CREATED


def test_dropping_every_unit_is_a_cancel_not_a_drop() -> None:
    with pytest.raises(IllegalShipmentStep, match="cancel it instead"):
        new_shipment().drop_units({"L1": 2, "L2": 1})


def second_shipment() -> Shipment:
    shipment = new_shipment()
    shipment.shipment_id, shipment.lines = "ORD-1-S2", (ShipmentLine("L1", "MUG-RED", 3),)
    return shipment


def test_cancelled_units_come_from_the_newest_waiting_shipment_first() -> None:
    plan = plan_unit_drops([new_shipment(), second_shipment()], {"L1": 4})
    assert plan == {"ORD-1-S2": {"L1": 3}, "ORD-1-S1": {"L1": 1}}


@pytest.mark.parametrize(
    ("status", "dropped"),
    [
        (ShipmentStatus.PICKING, {}),
        (ShipmentStatus.PACKED, {}),
        (ShipmentStatus.SHIPPED, {}),
        (ShipmentStatus.CREATED, {"ORD-1-S1": {"L1": 1}}),
    ],
)
def test_part_of_a_shipment_is_dropped_only_before_picking_starts(
    status: ShipmentStatus, dropped: dict
) -> None:
    assert plan_unit_drops([shipment_in(status)], {"L1": 1}) == dropped


@pytest.mark.parametrize("status", [ShipmentStatus.PICKING, ShipmentStatus.LABELLED])
def test_a_whole_shipment_is_dropped_until_it_leaves(status: ShipmentStatus) -> None:
    plan = plan_unit_drops([shipment_in(status)], {"L1": 2, "L2": 1})
    assert plan == {"ORD-1-S1": {"L1": 2, "L2": 1}}
