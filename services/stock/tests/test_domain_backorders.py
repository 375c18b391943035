"""The backorder queue: priority then arrival, partial fills, expected dates from incoming."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from stockflow.stock.domain import (
    Backorder,
    BackorderFill,
    BundleBackorder,
    IncomingStock,
    allocate_backorders,
    expected_dates,
    queue_order,
)


def _bo(order: str, quantity: int, sequence: int, priority: int = 0) -> Backorder:
    return Backorder(order, "1", "A", quantity, sequence, priority)


def _day(day: int) -> datetime:
    return datetime(2025, 3, day, tzinfo=UTC)


def test_queue_serves_higher_priority_first_then_arrival_order() -> None:
    early, late, vip, vip_late = (
        _bo("o1", 1, 1),
        _bo("o2", 1, 2),
        _bo("o3", 1, 3, 5),
        _bo("o4", 1, 4, 5),
    )
    assert queue_order([late, vip_late, early, vip]) == [vip, vip_late, early, late]


def test_arriving_stock_fills_the_head_first_and_partially() -> None:
    first, second, third = _bo("o1", 3, 1), _bo("o2", 4, 2), _bo("o3", 2, 3)
    fills, leftover = allocate_backorders([third, first, second], 5)
    assert fills == (BackorderFill(first, 3), BackorderFill(second, 2))
    assert [fill.remaining for fill in fills] == [0, 2]
    assert leftover == 0


def test_a_large_head_is_not_skipped_for_smaller_backorders_behind_it() -> None:
    head, small = _bo("o1", 10, 1), _bo("o2", 1, 2)
    fills, leftover = allocate_backorders([head, small], 3)
    assert fills == (BackorderFill(head, 3),)
    assert leftover == 0


def test_what_the_queue_does_not_need_is_left_over() -> None:
    fills, leftover = allocate_backorders([_bo("o1", 2, 1)], 7)
    assert [fill.quantity for fill in fills] == [2]
    assert leftover == 5
    assert allocate_backorders([], 4) == ((), 4)
    assert allocate_backorders([_bo("o1", 2, 1)], 0) == ((), 0)


def test_a_queue_holds_one_sku_and_arrivals_are_not_negative() -> None:
    with pytest.raises(ValueError, match="one sku"):
        allocate_backorders([_bo("o1", 1, 1), Backorder("o2", "1", "B", 1, 2)], 1)
    with pytest.raises(ValueError, match="negative"):
        allocate_backorders([_bo("o1", 1, 1)], -1)
    with pytest.raises(ValueError, match="positive"):
        _bo("o1", 0, 1)
    with pytest.raises(ValueError, match="positive"):
        IncomingStock(0, _day(1))


def test_expected_date_is_when_cumulative_incoming_covers_the_queue_position() -> None:
    first, second, third = _bo("o1", 3, 1), _bo("o2", 4, 2), _bo("o3", 5, 3)
    incoming = [IncomingStock(5, _day(20)), IncomingStock(3, _day(10)), IncomingStock(9)]
    dates = expected_dates([third, second, first], incoming)
    assert dates == {first: _day(10), second: _day(20), third: None}


def test_priority_moves_a_backorder_ahead_for_its_date() -> None:
    normal, urgent = _bo("o1", 3, 1), _bo("o2", 3, 2, priority=1)
    dates = expected_dates([normal, urgent], [IncomingStock(3, _day(5)), IncomingStock(3, _day(9))])
    assert dates == {urgent: _day(5), normal: _day(9)}


def test_no_incoming_means_no_date() -> None:
    assert expected_dates([_bo("o1", 1, 1)], []) == {_bo("o1", 1, 1): None}
    assert expected_dates([], [IncomingStock(3, _day(1))]) == {}


@pytest.mark.parametrize("seed", [1, 17])
def test_random_arrivals_are_shared_in_queue_order_without_loss(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(300):
        queue = [
            _bo(f"o{i}", rng.randint(1, 9), sequence=i, priority=rng.choice([0, 0, 1, 2]))
            for i in range(rng.randint(0, 8))
        ]
        arriving = rng.randint(0, 40)
        fills, leftover = allocate_backorders(rng.sample(queue, k=len(queue)), arriving)
        assert sum(fill.quantity for fill in fills) + leftover == arriving
        assert [fill.backorder for fill in fills] == queue_order(queue)[: len(fills)]
        assert all(fill.remaining == 0 for fill in fills[:-1])
        assert leftover == 0 or all(fill.remaining == 0 for fill in fills)
        assert len(fills) == len(queue) or leftover == 0


def test_a_backorder_waits_for_the_arrival_that_completes_it() -> None:
    backorder = _bo("o1", 3, 1)
    incoming = [IncomingStock(2, _day(10)), IncomingStock(1, _day(12)), IncomingStock(5, _day(30))]
    assert expected_dates([backorder], incoming) == {backorder: _day(12)}


def test_a_bundle_backorder_is_whole_only_as_far_as_its_scarcest_component():
    kit = BundleBackorder("O1", "L1", "KIT", "WH-1", 2, 0, (("A", 1), ("B", 3)))
    assert kit.newly_whole({}) == 0
    assert kit.newly_whole({"A": 2}) == 0  # no B yet
    assert kit.newly_whole({"A": 2, "B": 5}) == 1  # 5 B make one kit and a part
    assert kit.newly_whole({"A": 2, "B": 9}) == 2  # never more than the kits backordered
    announced = BundleBackorder("O1", "L1", "KIT", "WH-1", 2, 1, (("A", 1), ("B", 3)))
    assert announced.newly_whole({"A": 2, "B": 5}) == 0
    assert announced.newly_whole({"A": 2, "B": 6}) == 1
