"""Reorder alerts once per crossing, and cycle counts that refuse to apply a stale count."""

from __future__ import annotations

import random

import pytest

from stockflow.stock.domain import (
    StaleCount,
    StockAlert,
    StockZone,
    count_adjustment,
    crossing_alert,
    stock_zone,
    zone_change_alert,
)


@pytest.mark.parametrize(
    ("previous", "new", "reorder_point", "alert"),
    [
        (15, 10, 10, StockAlert.LOW_STOCK),
        (15, 3, 10, StockAlert.LOW_STOCK),
        (15, 0, 10, StockAlert.OUT_OF_STOCK),
        (5, 0, 10, StockAlert.OUT_OF_STOCK),
        (0, 11, 10, StockAlert.RECOVERED),
        (5, 11, 10, StockAlert.RECOVERED),
        (0, 4, 10, StockAlert.LOW_STOCK),
        (15, 12, 10, None),
        (10, 11, 10, StockAlert.RECOVERED),
        (9, 4, 10, None),
        (4, 9, 10, None),
        (0, 0, 10, None),
        (20, 11, 10, None),
        (5, 1, None, None),
        (5, 0, None, StockAlert.OUT_OF_STOCK),
        (0, 1, None, StockAlert.RECOVERED),
        (1, 0, 0, StockAlert.OUT_OF_STOCK),
    ],
)
def test_an_alert_is_raised_only_when_available_crosses_a_boundary(
    previous: int, new: int, reorder_point: int | None, alert: StockAlert | None
) -> None:
    assert crossing_alert(previous, new, reorder_point) is alert


def test_zones() -> None:
    assert stock_zone(11, 10) is StockZone.OK
    assert stock_zone(10, 10) is StockZone.LOW
    assert stock_zone(1, 10) is StockZone.LOW
    assert stock_zone(0, 10) is StockZone.OUT
    assert stock_zone(1, None) is StockZone.OK
    assert StockZone("low") is StockZone.LOW


def test_a_stored_zone_catches_a_reorder_point_raised_between_movements() -> None:
    stored = stock_zone(15, reorder_point=10)
    current = stock_zone(14, reorder_point=20)
    assert zone_change_alert(stored, current) is StockAlert.LOW_STOCK
    assert zone_change_alert(current, current) is None


def test_a_stream_of_movements_raises_one_alert_per_crossing() -> None:
    rng = random.Random(3)
    available, reorder_point = 50, 10
    crossings, alerts = 0, 0
    for _ in range(5000):
        new = max(0, min(60, available + rng.randint(-6, 6)))
        if stock_zone(new, reorder_point) is not stock_zone(available, reorder_point):
            crossings += 1
        alerts += crossing_alert(available, new, reorder_point) is not None
        available = new
    assert alerts == crossings > 50


def test_a_count_records_the_signed_difference() -> None:
    assert count_adjustment(expected=10, counted=7, current_on_hand=10) == -3
    assert count_adjustment(expected=10, counted=12, current_on_hand=10) == 2
    assert count_adjustment(expected=0, counted=4, current_on_hand=0) == 4


def test_a_count_matching_the_books_records_nothing() -> None:
    assert count_adjustment(expected=8, counted=8, current_on_hand=8) == 0


def test_a_count_taken_while_stock_moved_is_refused_as_stale() -> None:
    with pytest.raises(StaleCount) as stale:
        count_adjustment(expected=10, counted=9, current_on_hand=7)
    assert (stale.value.expected, stale.value.current_on_hand) == (10, 7)


def test_a_stale_count_is_refused_even_when_it_matches() -> None:
    with pytest.raises(StaleCount):
        count_adjustment(expected=10, counted=10, current_on_hand=11)


@pytest.mark.parametrize(("expected", "counted", "current"), [(-1, 0, -1), (1, -1, 1)])
def test_negative_counts_are_refused(expected: int, counted: int, current: int) -> None:
    with pytest.raises(ValueError, match="negative"):
        count_adjustment(expected, counted, current)
