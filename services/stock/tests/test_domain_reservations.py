"""The reservation lifecycle: idempotent reserve, partial commits, late and repeated commands."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from stockflow.stock.domain import (
    CommitOutcome,
    HeldUnits,
    LineToAllocate,
    ReleaseOutcome,
    ReservationStatus,
    allocate_order,
    commit_outcome,
    release_outcome,
    status_after_commit,
    status_after_reserve,
    take_for_shipment,
)

S = ReservationStatus
STOCK = {("A", "WH-1"): 5, ("A", "WH-2"): 5, ("B", "WH-1"): 2}


def test_a_first_reserve_holds_what_was_allocated_or_is_rejected() -> None:
    held = allocate_order([LineToAllocate("1", "A", 7)], STOCK)
    short = allocate_order([LineToAllocate("1", "A", 99)], STOCK)
    assert status_after_reserve(held) is S.HELD
    assert status_after_reserve(short) is S.REJECTED


@pytest.mark.parametrize(
    ("status", "holds_units", "outcome"),
    [
        (None, False, ReleaseOutcome.UNKNOWN_RESERVATION),
        (S.HELD, True, ReleaseOutcome.RELEASED),
        (S.HELD, False, ReleaseOutcome.RELEASED),  # fully backordered: its backorders close
        (S.RELEASED, False, ReleaseOutcome.ALREADY_RELEASED),
        (S.REJECTED, False, ReleaseOutcome.ALREADY_RELEASED),
        (S.COMMITTED, False, ReleaseOutcome.ALREADY_COMMITTED),
        (S.COMMITTED, True, ReleaseOutcome.RELEASED),  # units held again after a backorder fill
    ],
)
def test_release_outcomes(
    status: ReservationStatus | None, holds_units: bool, outcome: ReleaseOutcome
) -> None:
    assert release_outcome(status, holds_units) is outcome


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (None, CommitOutcome.UNKNOWN_RESERVATION),
        (S.REJECTED, CommitOutcome.UNKNOWN_RESERVATION),
        (S.RELEASED, CommitOutcome.ALREADY_RELEASED),
        (S.HELD, CommitOutcome.COMMITTED),
        (S.COMMITTED, CommitOutcome.COMMITTED),
    ],
)
def test_commit_outcomes(status: ReservationStatus | None, outcome: CommitOutcome) -> None:
    assert commit_outcome(status, shipment_committed=False) is outcome


@pytest.mark.parametrize("status", [None, *ReservationStatus])
def test_a_repeated_commit_of_a_shipment_is_already_committed_in_every_state(
    status: ReservationStatus | None,
) -> None:
    assert commit_outcome(status, shipment_committed=True) is CommitOutcome.ALREADY_COMMITTED


def test_an_order_is_committed_only_when_nothing_is_held_and_no_backorder_waits() -> None:
    assert status_after_commit(holds_units=False, backorders_wait=False) is S.COMMITTED
    assert status_after_commit(holds_units=True, backorders_wait=False) is S.HELD
    assert status_after_commit(holds_units=False, backorders_wait=True) is S.HELD


def test_a_shipment_takes_from_the_holds_at_its_location_in_order_whichever_line() -> None:
    holds = [
        HeldUnits("1", "A", "WH-1", 2),
        HeldUnits("2", "A", "WH-2", 5),
        HeldUnits("3", "A", "WH-1", 4),
    ]
    take = take_for_shipment(holds, "A", "WH-1", 5)
    assert take.taken == ((holds[0], 2), (holds[2], 3))
    assert take.holds == (
        HeldUnits("1", "A", "WH-1", 0),
        HeldUnits("2", "A", "WH-2", 5),
        HeldUnits("3", "A", "WH-1", 1),
    )
    assert take.missing == 0


def test_a_shipment_of_more_than_is_held_reports_the_missing_units() -> None:
    take = take_for_shipment([HeldUnits("1", "A", "WH-1", 2)], "A", "WH-1", 5)
    assert take.taken == ((HeldUnits("1", "A", "WH-1", 2), 2),)
    assert take.missing == 3
    nothing = take_for_shipment([HeldUnits("1", "A", "WH-2", 2)], "A", "WH-1", 1)
    assert nothing.taken == () and nothing.missing == 1


def test_a_shipment_takes_a_positive_quantity() -> None:
    with pytest.raises(ValueError, match="positive"):
        take_for_shipment([], "A", "WH-1", 0)


@pytest.mark.parametrize("seed", [2, 31, 77])
def test_random_shipments_conserve_units(seed: int) -> None:
    """Whatever ships, units held before = units held after + units taken."""
    rng = random.Random(seed)
    holds = [
        HeldUnits(str(i), rng.choice("AB"), rng.choice(("WH-1", "WH-2")), rng.randint(0, 5))
        for i in range(8)
    ]
    for _ in range(200):
        sku, location, wanted = rng.choice("AB"), rng.choice(("WH-1", "WH-2")), rng.randint(1, 6)
        before = Counter({(h.sku, h.location): 0 for h in holds})
        for h in holds:
            before[(h.sku, h.location)] += h.quantity
        take = take_for_shipment(holds, sku, location, wanted)
        taken = sum(quantity for _, quantity in take.taken)
        assert taken + take.missing == wanted
        assert taken == min(wanted, before[(sku, location)])
        assert sum(h.quantity for h in take.holds) == sum(before.values()) - taken
        assert all(h.quantity >= 0 for h in take.holds)
        holds = list(take.holds)
