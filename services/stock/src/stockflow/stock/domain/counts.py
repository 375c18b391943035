"""Cycle counts: a counted quantity becomes an adjustment only if nothing moved meanwhile."""

from __future__ import annotations

from stockflow.stock.domain.errors import StaleCount


def count_adjustment(expected: int, counted: int, current_on_hand: int) -> int:
    """Return the signed adjustment a cycle count calls for (0: record no movement).

    Args:
        expected: the on-hand quantity the counter was shown when the count started.
        counted: the units the counter found.
        current_on_hand: on hand now, read in the transaction that would apply the count.

    Raises:
        StaleCount: stock moved since the count started (``current_on_hand != expected``);
            applying the difference then would silently erase that movement.
        ValueError: a negative quantity.
    """
    if min(expected, counted, current_on_hand) < 0:
        raise ValueError("counts and on-hand quantities cannot be negative")
    if current_on_hand != expected:
        raise StaleCount(expected, current_on_hand)
    return counted - expected
