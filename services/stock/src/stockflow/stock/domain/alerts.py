"""Reorder-point alerts, raised once per crossing rather than once per movement.

Available stock sits in one of three zones: ``ok`` above the reorder point, ``low`` at or below
it but above zero, ``out`` at zero. An alert is raised only when the zone changes, and names
the zone entered. Zone values match the ``levels.alert_state`` column, so a store can keep the
zone and survive a reorder point that changes between movements.
"""

from __future__ import annotations

from enum import StrEnum


class StockZone(StrEnum):
    """Where available stock stands relative to its reorder point."""

    OK = "ok"
    LOW = "low"
    OUT = "out"


class StockAlert(StrEnum):
    """The alert for entering a zone (`stock.low.v1`, `stock.out.v1`, `stock.recovered.v1`)."""

    LOW_STOCK = "low_stock"
    OUT_OF_STOCK = "out_of_stock"
    RECOVERED = "recovered"


_ALERT_ON_ENTERING = {
    StockZone.OK: StockAlert.RECOVERED,
    StockZone.LOW: StockAlert.LOW_STOCK,
    StockZone.OUT: StockAlert.OUT_OF_STOCK,
}


def stock_zone(available: int, reorder_point: int | None) -> StockZone:
    """The zone of `available` stock; without a reorder point only ``ok`` and ``out`` exist."""
    if available <= 0:
        return StockZone.OUT
    if reorder_point is not None and available <= reorder_point:
        return StockZone.LOW
    return StockZone.OK


def zone_change_alert(previous: StockZone, current: StockZone) -> StockAlert | None:
    """The alert for moving from `previous` to `current` zone; None when the zone is unchanged.

    Rising from ``out`` to ``low`` raises LOW_STOCK: still below the point, no longer empty.
    """
    return None if previous is current else _ALERT_ON_ENTERING[current]


def crossing_alert(
    previous_available: int, new_available: int, reorder_point: int | None
) -> StockAlert | None:
    """The alert (if any) for available stock going from `previous_available` to `new_available`.

    LOW_STOCK when it falls from above `reorder_point` to at/below it and above zero,
    OUT_OF_STOCK when it reaches zero, RECOVERED when it rises above the point again.
    """
    return zone_change_alert(
        stock_zone(previous_available, reorder_point), stock_zone(new_available, reorder_point)
    )
