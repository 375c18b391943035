"""Levels and the movement ledger: each kind's effect, refusals, replay and conservation."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from stockflow.stock.domain import (
    BUCKETS,
    InsufficientStock,
    Level,
    Movement,
    MovementKind,
    apply,
    apply_to,
    replay,
)

K = MovementKind


def _level(**buckets: int) -> Level:
    return Level("SKU-1", "WH-A", **buckets)


def _move(kind: MovementKind, quantity: int, **extra: str) -> Movement:
    if kind is K.ADJUSTMENT:
        extra.setdefault("reason", "count")
    if kind is K.TRANSFER_OUT:
        extra.setdefault("destination", "WH-B")
    return Movement(kind, "SKU-1", "WH-A", quantity, **extra)


def test_available_is_on_hand_minus_reserved_and_non_sellable_states() -> None:
    level = _level(on_hand=20, reserved=3, damaged=2, quality_control=4, safety_stock=5)
    assert level.available == 6


def test_incoming_and_backordered_do_not_change_available() -> None:
    assert _level(on_hand=5, incoming=7, backordered=9).available == 5


@pytest.mark.parametrize(
    "buckets",
    [{"on_hand": -1}, {"incoming": -1}, {"on_hand": 2, "reserved": 3}, {"safety_stock": 1}],
)
def test_a_level_cannot_be_built_negative(buckets: dict[str, int]) -> None:
    with pytest.raises(ValueError, match=r"negative|available"):
        _level(**buckets)


START = {
    "on_hand": 50,
    "reserved": 10,
    "damaged": 5,
    "quality_control": 5,
    "safety_stock": 5,
    "incoming": 8,
    "backordered": 6,
}


@pytest.mark.parametrize(
    ("kind", "quantity", "deltas"),
    [
        (K.RECEIPT, 4, {"on_hand": 4}),
        (K.ADJUSTMENT, 3, {"on_hand": 3}),
        (K.ADJUSTMENT, -3, {"on_hand": -3}),
        (K.TRANSFER_OUT, 4, {"on_hand": -4}),
        (K.TRANSFER_IN, 4, {"incoming": -4, "on_hand": 4}),
        (K.RESERVATION, 4, {"reserved": 4}),
        (K.RELEASE, 4, {"reserved": -4}),
        (K.SHIPMENT, 4, {"on_hand": -4, "reserved": -4}),
        (K.RETURN_RESTOCK, 4, {"on_hand": 4}),
        (K.WRITE_OFF, 4, {"on_hand": -4, "damaged": -4}),
        (K.TO_DAMAGED, 4, {"damaged": 4}),
        (K.FROM_DAMAGED, 4, {"damaged": -4}),
        (K.TO_QUALITY_CONTROL, 4, {"quality_control": 4}),
        (K.FROM_QUALITY_CONTROL, 4, {"quality_control": -4}),
        (K.SAFETY_STOCK_SET, 4, {"safety_stock": 4}),
        (K.SAFETY_STOCK_SET, -4, {"safety_stock": -4}),
        (K.BACKORDER_OPENED, 4, {"backordered": 4}),
        (K.BACKORDER_ALLOCATED, 4, {"backordered": -4, "reserved": 4}),
    ],
)
def test_each_kind_changes_exactly_its_buckets(
    kind: MovementKind, quantity: int, deltas: dict[str, int]
) -> None:
    before = _level(**START)
    after = apply(before, _move(kind, quantity))
    changed = {b: getattr(after, b) - getattr(before, b) for b in BUCKETS}
    assert changed == {b: deltas.get(b, 0) for b in BUCKETS}
    assert after.key == before.key


def test_every_kind_has_an_effect() -> None:
    for kind in MovementKind:
        apply(_level(**START), _move(kind, 1))


def test_transfer_out_puts_the_units_in_transit_at_the_destination() -> None:
    move = Movement(K.TRANSFER_OUT, "SKU-1", "WH-A", 3, destination="WH-B")
    assert move.level_keys == (("SKU-1", "WH-A"), ("SKU-1", "WH-B"))
    levels = apply_to({("SKU-1", "WH-A"): _level(on_hand=5)}, move)
    assert levels[("SKU-1", "WH-A")].on_hand == 2
    assert levels[("SKU-1", "WH-B")] == Level("SKU-1", "WH-B", incoming=3)
    landed = apply(levels[("SKU-1", "WH-B")], Movement(K.TRANSFER_IN, "SKU-1", "WH-B", 3))
    assert (landed.on_hand, landed.incoming) == (3, 0)


def test_a_movement_refuses_a_level_it_does_not_touch() -> None:
    with pytest.raises(ValueError, match="does not change"):
        apply(Level("SKU-2", "WH-A", on_hand=1), _move(K.RECEIPT, 1))
    with pytest.raises(ValueError, match="does not change"):
        apply(Level("SKU-1", "WH-B"), _move(K.RECEIPT, 1))


@pytest.mark.parametrize(
    ("kind", "quantity", "bucket", "have", "wanted"),
    [
        (K.RESERVATION, 26, "available", 25, 26),
        (K.TRANSFER_OUT, 26, "available", 25, 26),
        (K.TO_DAMAGED, 26, "available", 25, 26),
        (K.TO_QUALITY_CONTROL, 26, "available", 25, 26),
        (K.SAFETY_STOCK_SET, 26, "available", 25, 26),
        (K.ADJUSTMENT, -26, "available", 25, 26),
        (K.BACKORDER_ALLOCATED, 7, "backordered", 6, 7),
        (K.RELEASE, 11, "reserved", 10, 11),
        (K.SHIPMENT, 11, "reserved", 10, 11),
        (K.WRITE_OFF, 6, "damaged", 5, 6),
        (K.FROM_DAMAGED, 6, "damaged", 5, 6),
        (K.FROM_QUALITY_CONTROL, 6, "quality_control", 5, 6),
        (K.SAFETY_STOCK_SET, -6, "safety_stock", 5, 6),
        (K.TRANSFER_IN, 9, "incoming", 8, 9),
    ],
)
def test_a_movement_that_would_go_negative_is_refused(
    kind: MovementKind, quantity: int, bucket: str, have: int, wanted: int
) -> None:
    with pytest.raises(InsufficientStock) as refused:
        apply(_level(**START), _move(kind, quantity))
    assert (refused.value.bucket, refused.value.have, refused.value.wanted) == (
        bucket,
        have,
        wanted,
    )
    assert (refused.value.sku, refused.value.location) == ("SKU-1", "WH-A")


def test_backorder_allocation_needs_available_stock() -> None:
    with pytest.raises(InsufficientStock, match="available"):
        apply(_level(on_hand=1, backordered=3), _move(K.BACKORDER_ALLOCATED, 2))


def test_a_refused_transfer_changes_neither_side() -> None:
    levels = {("SKU-1", "WH-A"): _level(on_hand=2)}
    with pytest.raises(InsufficientStock):
        apply_to(levels, _move(K.TRANSFER_OUT, 3))
    assert levels == {("SKU-1", "WH-A"): _level(on_hand=2)}


@pytest.mark.parametrize(
    ("kind", "quantity", "extra", "message"),
    [
        (K.RECEIPT, 0, {}, "positive"),
        (K.SHIPMENT, -1, {}, "positive"),
        (K.ADJUSTMENT, 0, {"reason": "count"}, "zero"),
        (K.SAFETY_STOCK_SET, 0, {}, "zero"),
        (K.ADJUSTMENT, 2, {}, "reason"),
        (K.TRANSFER_OUT, 2, {}, "destination"),
        (K.TRANSFER_OUT, 2, {"destination": "WH-A"}, "destination"),
        (K.TRANSFER_IN, 2, {"destination": "WH-B"}, "only transfer_out"),
        (K.RESERVATION, 2, {"bundle": "KIT"}, "only a shipment"),
    ],
)
def test_movement_rejects_malformed_values(
    kind: MovementKind, quantity: int, extra: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Movement(kind, "SKU-1", "WH-A", quantity, **extra)


@pytest.mark.parametrize("quantity", [True, 2.0, "2"])
def test_movement_quantity_must_be_an_int(quantity: object) -> None:
    with pytest.raises(ValueError, match="integer"):
        Movement(K.RECEIPT, "SKU-1", "WH-A", quantity)  # type: ignore[arg-type]


def test_kinds_are_the_contract_strings() -> None:
    assert MovementKind("to_quality_control") is K.TO_QUALITY_CONTROL
    assert str(K.BACKORDER_ALLOCATED) == "backorder_allocated"


def test_replay_from_empty_and_from_initial_levels() -> None:
    moves = [
        Movement(K.RECEIPT, "SKU-1", "WH-A", 10),
        Movement(K.RESERVATION, "SKU-1", "WH-A", 4, reference="order-1"),
        Movement(K.SHIPMENT, "SKU-1", "WH-A", 3, reference="shipment-1"),
        Movement(K.TRANSFER_OUT, "SKU-1", "WH-A", 2, destination="WH-B"),
    ]
    assert replay(moves) == {
        ("SKU-1", "WH-A"): Level("SKU-1", "WH-A", on_hand=5, reserved=1),
        ("SKU-1", "WH-B"): Level("SKU-1", "WH-B", incoming=2),
    }
    other = Level("SKU-9", "WH-C", on_hand=1)
    replayed = replay(moves[1:], initial=[_level(on_hand=7), other])
    assert replayed[("SKU-1", "WH-A")] == _level(on_hand=2, reserved=1)
    assert replayed[("SKU-9", "WH-C")] == other


def test_replay_stops_at_a_movement_the_levels_could_not_allow() -> None:
    with pytest.raises(InsufficientStock):
        replay([_move(K.RECEIPT, 1), _move(K.SHIPMENT, 1)])


SKUS = ("SKU-1", "SKU-2", "SKU-3")
LOCATIONS = ("WH-A", "WH-B", "STORE-1")


def _random_valid_movement(rng: random.Random, levels: dict[tuple[str, str], Level]) -> Movement:
    """A movement drawn at random among those the current levels allow."""
    while True:
        sku, location = rng.choice(SKUS), rng.choice(LOCATIONS)
        level = levels.get((sku, location)) or Level(sku, location)
        kind = rng.choice(list(MovementKind))
        extra: dict[str, str] = {}
        if kind in (
            K.RECEIPT,
            K.RETURN_RESTOCK,
            K.BACKORDER_OPENED,
            K.RETURN_WRITTEN_OFF,
            K.INCOMING_ANNOUNCED,
        ):
            quantity = rng.randint(1, 20)
        elif kind is K.ADJUSTMENT:
            extra["reason"] = rng.choice(["cycle_count", "found", "lost"])
            quantity = rng.choice([rng.randint(1, 10), -rng.randint(0, level.available)])
        elif kind is K.SAFETY_STOCK_SET:
            quantity = rng.choice([rng.randint(0, level.available), -level.safety_stock])
        else:
            most = {
                K.TRANSFER_OUT: level.available,
                K.TRANSFER_IN: level.incoming,
                K.RESERVATION: level.available,
                K.RELEASE: level.reserved,
                K.SHIPMENT: level.reserved,
                K.WRITE_OFF: level.damaged,
                K.TO_DAMAGED: level.available,
                K.FROM_DAMAGED: level.damaged,
                K.TO_QUALITY_CONTROL: level.available,
                K.FROM_QUALITY_CONTROL: level.quality_control,
                K.BACKORDER_ALLOCATED: min(level.backordered, level.available),
                K.BACKORDER_CANCELLED: level.backordered,
                K.INCOMING_CLOSED: level.incoming,
            }[kind]
            quantity = rng.randint(0, most)
            if kind is K.TRANSFER_OUT:
                extra["destination"] = rng.choice([x for x in LOCATIONS if x != location])
        if quantity:
            return Movement(kind, sku, location, quantity, reference=f"ref-{rng.random()}", **extra)


@pytest.mark.parametrize("seed", [1, 7, 2024])
def test_replaying_a_long_random_ledger_gives_the_incrementally_applied_levels(seed: int) -> None:
    rng = random.Random(seed)
    initial = [Level(sku, "WH-A", on_hand=rng.randint(0, 30)) for sku in SKUS]
    levels = {level.key: level for level in initial}
    ledger = []
    for _ in range(3000):
        movement = _random_valid_movement(rng, levels)
        levels |= apply_to(levels, movement)
        ledger.append(movement)

    assert replay(ledger, initial=initial) == levels
    assert Counter(m.kind for m in ledger).keys() == set(MovementKind)

    # Conservation, per sku: units in = units still here (on hand or in transit) + units out;
    # announced units count as coming in until their announcement closes.
    for sku in SKUS:
        of_sku = [m for m in ledger if m.sku == sku]

        def total(kind: MovementKind, of_sku: list[Movement] = of_sku) -> int:
            return sum(m.quantity for m in of_sku if m.kind is kind)

        came_in = (
            sum(level.on_hand for level in initial if level.sku == sku)
            + total(K.RECEIPT)
            + total(K.RETURN_RESTOCK)
            + total(K.ADJUSTMENT)
            + total(K.INCOMING_ANNOUNCED)
            - total(K.INCOMING_CLOSED)
        )
        here = sum(level.on_hand + level.incoming for level in levels.values() if level.sku == sku)
        assert came_in == here + total(K.SHIPMENT) + total(K.WRITE_OFF)
        in_transit = (
            total(K.TRANSFER_OUT)
            - total(K.TRANSFER_IN)
            + total(K.INCOMING_ANNOUNCED)
            - total(K.INCOMING_CLOSED)
        )
        assert in_transit == sum(level.incoming for level in levels.values() if level.sku == sku)


@pytest.mark.parametrize("seed", [3, 11])
def test_random_movements_never_leave_a_level_negative(seed: int) -> None:
    rng = random.Random(seed)
    level = _level(on_hand=10)
    refused = 0
    for _ in range(2000):
        kind = rng.choice(list(MovementKind))
        quantity = rng.randint(1, 8)
        if kind in (K.ADJUSTMENT, K.SAFETY_STOCK_SET):
            quantity *= rng.choice([1, -1])
        try:
            level = apply(level, _move(kind, quantity))
        except InsufficientStock:
            refused += 1
        assert min(getattr(level, bucket) for bucket in BUCKETS) >= 0
        assert level.available >= 0
    assert refused > 0


def test_a_written_off_return_is_recorded_but_changes_no_bucket() -> None:
    level = _level(on_hand=3, reserved=1)
    assert apply(level, _move(K.RETURN_WRITTEN_OFF, 2)) == level


def test_an_announced_receipt_is_incoming_until_its_announcement_closes() -> None:
    announced = apply(_level(on_hand=1), _move(K.INCOMING_ANNOUNCED, 10))
    assert (announced.incoming, announced.available) == (10, 1)
    assert apply(announced, _move(K.INCOMING_CLOSED, 10)) == _level(on_hand=1)
    with pytest.raises(InsufficientStock):
        apply(announced, _move(K.INCOMING_CLOSED, 11))
