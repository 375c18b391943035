"""The reservation lifecycle: idempotent reserve, partial commits, late and repeated commands."""

from __future__ import annotations

import random
from collections import Counter
from functools import partial

import pytest

from stockflow.stock.domain import (
    Allocated,
    CommitExceedsReservation,
    CommitOutcome,
    HeldLine,
    Level,
    LocatedLine,
    Movement,
    MovementKind,
    OrderLine,
    OrderReservation,
    Rejection,
    ReleaseOutcome,
    ReservationStatus,
    ReserveOutcome,
    allocate_order,
    apply_to,
    commit,
    hold_allocated_backorder,
    release,
    reserve,
)

STOCK = {("A", "WH-1"): 5, ("A", "WH-2"): 5, ("B", "WH-1"): 2}
LINES = [OrderLine("1", "A", 7), OrderLine("2", "B", 3, backorder_allowed=True)]


def _held() -> OrderReservation:
    decision = reserve(None, "order-1", lambda: allocate_order(LINES, STOCK))
    assert decision.outcome is ReserveOutcome.RESERVED
    return decision.reservation


def _fail() -> Allocated:
    raise AssertionError("a repeated reserve must not allocate again")


def test_reserve_holds_every_allocated_unit_per_line_and_location() -> None:
    reservation = _held()
    assert reservation.status is ReservationStatus.HELD
    assert reservation.lines == (
        HeldLine("1", "A", "WH-1", 5),
        HeldLine("1", "A", "WH-2", 2),
        HeldLine("2", "B", "WH-1", 2),
    )
    assert reservation.held == 9
    assert isinstance(reservation.reply, Allocated)


def test_a_repeated_reserve_returns_the_first_answer_without_allocating() -> None:
    reservation = _held()
    again = reserve(reservation, "order-1", _fail)
    assert again.outcome is ReserveOutcome.REPEATED
    assert again.reservation is reservation


def test_a_rejected_order_keeps_its_rejection_on_repeat() -> None:
    decision = reserve(None, "order-2", lambda: allocate_order([OrderLine("1", "A", 99)], STOCK))
    assert decision.outcome is ReserveOutcome.REJECTED
    assert decision.reservation.status is ReservationStatus.REJECTED
    assert isinstance(decision.reservation.reply, Rejection)
    assert decision.reservation.lines == ()
    again = reserve(decision.reservation, "order-2", _fail)
    assert (again.outcome, again.reservation) == (ReserveOutcome.REPEATED, decision.reservation)


def test_a_reserve_arriving_after_a_release_holds_nothing_again() -> None:
    released = release(_held()).reservation
    again = reserve(released, "order-1", _fail)
    assert again.outcome is ReserveOutcome.REPEATED
    assert again.reservation.status is ReservationStatus.RELEASED


def test_reserve_refuses_another_orders_reservation() -> None:
    with pytest.raises(ValueError, match="another order"):
        reserve(_held(), "order-9", _fail)


def test_release_frees_everything_still_held() -> None:
    decision = release(_held())
    assert decision.outcome is ReleaseOutcome.RELEASED
    assert decision.released == (
        LocatedLine("1", "A", "WH-1", 5),
        LocatedLine("1", "A", "WH-2", 2),
        LocatedLine("2", "B", "WH-1", 2),
    )
    assert decision.reservation is not None
    assert decision.reservation.status is ReservationStatus.RELEASED
    assert decision.reservation.held == 0


def test_a_second_release_and_a_release_of_nothing_are_already_released() -> None:
    released = release(_held()).reservation
    assert release(released).outcome is ReleaseOutcome.ALREADY_RELEASED
    assert release(released).released == ()
    assert release(None) == release(None)
    assert release(None).outcome is ReleaseOutcome.ALREADY_RELEASED
    rejected = reserve(None, "o", lambda: Rejection(())).reservation
    assert release(rejected).outcome is ReleaseOutcome.ALREADY_RELEASED


def test_release_after_the_whole_order_shipped_is_already_committed() -> None:
    reservation = _held()
    shipped = commit(
        reservation, "ship-1", [LocatedLine(*line.key, line.held) for line in reservation.lines]
    )
    assert shipped.outcome is CommitOutcome.COMMITTED
    assert shipped.reservation is not None
    assert shipped.reservation.status is ReservationStatus.COMMITTED
    late = release(shipped.reservation)
    assert (late.outcome, late.released) == (ReleaseOutcome.ALREADY_COMMITTED, ())
    assert late.reservation is shipped.reservation


def test_release_after_a_partial_shipment_frees_only_the_rest() -> None:
    shipped = commit(_held(), "ship-1", [LocatedLine("1", "A", "WH-1", 4)]).reservation
    decision = release(shipped)
    assert decision.outcome is ReleaseOutcome.RELEASED
    assert decision.released == (
        LocatedLine("1", "A", "WH-1", 1),
        LocatedLine("1", "A", "WH-2", 2),
        LocatedLine("2", "B", "WH-1", 2),
    )
    assert decision.reservation is not None
    assert decision.reservation.lines[0] == HeldLine("1", "A", "WH-1", 0, committed=4, released=1)


def test_partial_commits_until_everything_shipped() -> None:
    first = commit(
        _held(), "ship-1", [LocatedLine("1", "A", "WH-1", 2), LocatedLine("1", "A", "WH-1", 1)]
    )
    assert first.outcome is CommitOutcome.COMMITTED
    assert first.committed == (LocatedLine("1", "A", "WH-1", 3),)
    assert first.reservation is not None
    assert first.reservation.status is ReservationStatus.HELD
    assert first.reservation.held == 6
    rest = [
        LocatedLine("1", "A", "WH-1", 2),
        LocatedLine("1", "A", "WH-2", 2),
        LocatedLine("2", "B", "WH-1", 2),
    ]
    second = commit(first.reservation, "ship-2", rest)
    assert second.reservation is not None
    assert second.reservation.status is ReservationStatus.COMMITTED
    assert second.reservation.shipments == {"ship-1", "ship-2"}
    assert [line.committed for line in second.reservation.lines] == [5, 2, 2]


def test_a_repeated_commit_of_a_shipment_changes_nothing() -> None:
    once = commit(_held(), "ship-1", [LocatedLine("1", "A", "WH-1", 2)]).reservation
    twice = commit(once, "ship-1", [LocatedLine("1", "A", "WH-1", 2)])
    assert (twice.outcome, twice.reservation, twice.committed) == (
        CommitOutcome.ALREADY_COMMITTED,
        once,
        (),
    )


def test_a_commit_after_release_is_already_released() -> None:
    released = release(_held()).reservation
    late = commit(released, "ship-1", [LocatedLine("1", "A", "WH-1", 1)])
    assert (late.outcome, late.reservation) == (CommitOutcome.ALREADY_RELEASED, released)


def test_a_commit_for_an_unknown_or_rejected_reservation() -> None:
    line = [LocatedLine("1", "A", "WH-1", 1)]
    assert commit(None, "ship-1", line).outcome is CommitOutcome.UNKNOWN_RESERVATION
    rejected = reserve(None, "o", lambda: Rejection(())).reservation
    assert commit(rejected, "ship-1", line).outcome is CommitOutcome.UNKNOWN_RESERVATION


@pytest.mark.parametrize(
    "lines",
    [
        [LocatedLine("1", "A", "WH-1", 6)],
        [LocatedLine("1", "A", "WH-1", 3), LocatedLine("1", "A", "WH-1", 3)],
        [LocatedLine("1", "A", "WH-9", 1)],
        [LocatedLine("7", "A", "WH-1", 1)],
        [LocatedLine("2", "A", "WH-1", 1)],
    ],
)
def test_committing_more_than_is_held_there_is_refused(lines: list[LocatedLine]) -> None:
    with pytest.raises(CommitExceedsReservation, match="order-1"):
        commit(_held(), "ship-1", lines)


def test_a_commit_names_lines_with_units() -> None:
    with pytest.raises(ValueError, match="at least one"):
        commit(_held(), "ship-1", [])
    with pytest.raises(ValueError, match="positive"):
        LocatedLine("1", "A", "WH-1", 0)


def test_an_allocated_backorder_becomes_a_hold_that_can_ship() -> None:
    reservation = _held()
    grown = hold_allocated_backorder(reservation, LocatedLine("2", "B", "WH-1", 1))
    assert grown.lines[2] == HeldLine("2", "B", "WH-1", 3)
    elsewhere = hold_allocated_backorder(grown, LocatedLine("2", "B", "WH-2", 1))
    assert elsewhere.lines[3] == HeldLine("2", "B", "WH-2", 1)
    assert commit(elsewhere, "s", [LocatedLine("2", "B", "WH-2", 1)]).outcome is (
        CommitOutcome.COMMITTED
    )


def test_a_backorder_allocated_after_everything_else_shipped_reopens_the_hold() -> None:
    reservation = _held()
    shipped = commit(
        reservation, "ship-1", [LocatedLine(*line.key, line.held) for line in reservation.lines]
    ).reservation
    assert shipped is not None
    reopened = hold_allocated_backorder(shipped, LocatedLine("2", "B", "WH-1", 1))
    assert reopened.status is ReservationStatus.HELD
    assert release(reopened).released == (LocatedLine("2", "B", "WH-1", 1),)


def test_a_released_order_takes_no_backorder_allocation() -> None:
    released = release(_held()).reservation
    assert released is not None
    with pytest.raises(ValueError, match="released"):
        hold_allocated_backorder(released, LocatedLine("2", "B", "WH-1", 1))


K = MovementKind


@pytest.mark.parametrize("seed", [2, 31, 77])
def test_random_commands_keep_levels_and_reservations_in_step(seed: int) -> None:
    """Reserved stock always equals what open reservations hold, whatever commands arrive."""
    rng = random.Random(seed)
    skus, sites = ("A", "B", "C"), ("WH-1", "WH-2")
    levels = {
        (sku, site): Level(sku, site, on_hand=rng.randint(0, 15)) for sku in skus for site in sites
    }
    initial_on_hand = sum(level.on_hand for level in levels.values())
    reservations: dict[str, OrderReservation] = {}
    shipped = 0
    outcomes = Counter[str]()

    def move(kind: MovementKind, line: LocatedLine) -> None:
        levels.update(apply_to(levels, Movement(kind, line.sku, line.location, line.quantity)))

    for step in range(1500):
        order_id = f"order-{rng.randint(0, 60)}"
        existing = reservations.get(order_id)
        command = rng.choice(["reserve", "reserve", "release", "commit"])
        if command == "reserve":
            lines = [
                OrderLine(str(i), rng.choice(skus), rng.randint(1, 4), rng.random() < 0.3)
                for i in range(rng.randint(1, 3))
            ]
            available = {key: level.available for key, level in levels.items()}
            decision = reserve(existing, order_id, partial(allocate_order, lines, available))
            outcomes[decision.outcome] += 1
            if decision.outcome is not ReserveOutcome.REPEATED:
                for new_hold in decision.reservation.lines:
                    move(K.RESERVATION, LocatedLine(*new_hold.key, new_hold.held))
            reservations[order_id] = decision.reservation
        elif command == "release":
            released = release(existing)
            outcomes[released.outcome] += 1
            for line in released.released:
                move(K.RELEASE, line)
            if released.reservation:
                reservations[order_id] = released.reservation
        else:
            open_lines = [line for line in existing.lines if line.held] if existing else []
            picked = [
                LocatedLine(*line.key, rng.randint(1, line.held))
                for line in open_lines
                if rng.random() < 0.7
            ] or [LocatedLine("1", "A", "WH-1", 1)]
            try:
                committed = commit(existing, f"ship-{step}", picked)
            except CommitExceedsReservation:
                outcomes["refused"] += 1
                continue
            outcomes[committed.outcome] += 1
            for line in committed.committed:
                move(K.SHIPMENT, line)
                shipped += line.quantity
            if committed.reservation:
                reservations[order_id] = committed.reservation

        held_units = Counter[tuple[str, str]]()
        for reservation in reservations.values():
            for held_line in reservation.lines:
                held_units[(held_line.sku, held_line.location)] += held_line.held
        assert all(level.reserved == held_units[key] for key, level in levels.items())
        assert all(level.available >= 0 for level in levels.values())

    assert initial_on_hand == sum(level.on_hand for level in levels.values()) + shipped
    expected_outcomes = {
        *ReserveOutcome,
        *ReleaseOutcome,
        *CommitOutcome,
        "refused",
    }
    assert set(outcomes) == expected_outcomes, outcomes
