"""Replenishment: rounding, policies, safety stock, EOQ, the suggestion and its chart."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from scipy.stats import norm

from stockflow.stock.replenishment.charts import render_chart
from stockflow.stock.replenishment.forecasting import ForecastResult, ModelScore
from stockflow.stock.replenishment.policy import (
    MAX_SAFETY_FACTOR,
    StockPolicy,
    StockPosition,
    economic_order_quantity,
    lead_time_sigma,
    round_order,
    safety_factor,
    suggest,
)
from stockflow.stock.replenishment.settings import ReplenishmentSettings


def _forecast(daily: float = 10.0, sigma: float = 3.0, days: int = 28) -> ForecastResult:
    history = np.full(90, daily)
    return ForecastResult(
        model="holt_winters",
        forecast=np.full(days, daily),
        sigma_daily=sigma,
        scores=(ModelScore("naive_seasonal", 0.3, 1.0), ModelScore("holt_winters", 0.2, 0.7)),
        demand_class="smooth",
        history=history,
        imputed=np.zeros(90, bool),
    )


@pytest.mark.parametrize(
    ("wanted", "pack", "moq", "expected"),
    [
        (0, 12, 50, 0),
        (-3, 1, 0, 0),
        (1, 12, 0, 12),
        (25, 12, 0, 36),
        (24, 12, 0, 24),
        (10, 12, 50, 60),
        (10, 1, 50, 50),
        (7.2, 1, 0, 8),
    ],
)
def test_round_order(wanted: float, pack: int, moq: int, expected: int) -> None:
    assert round_order(wanted, pack, moq) == expected


def test_lot_policy_orders_whole_lots_only_at_or_below_the_reorder_point() -> None:
    policy = StockPolicy(reorder_point=100, lot_size=60)
    assert policy.order_quantity(101) == 0
    assert policy.order_quantity(100) == 60
    assert policy.order_quantity(-30) == 180  # deep backorders: enough lots to clear the point


def test_min_max_policy_orders_up_to_the_max_in_packs() -> None:
    policy = StockPolicy(reorder_point=100, order_up_to=250, pack_size=24, min_order_qty=48)
    assert policy.order_quantity(120) == 0
    assert policy.order_quantity(100) == 168  # 150 rounded up to 7 packs of 24
    assert policy.order_quantity(240) == 0
    with pytest.raises(ValueError):
        StockPolicy(reorder_point=1)


def test_safety_factor_for_cycle_and_fill_rate_targets() -> None:
    assert safety_factor(0.95) == pytest.approx(1.6449, abs=1e-4)
    # Fill rate: the solved z makes the expected shortage per cycle equal (1 - beta) * Q.
    z = safety_factor(0.98, "fill_rate", cycle_qty=100, sigma=40)
    shortage = 40 * (norm.pdf(z) - z * norm.sf(z))
    assert shortage == pytest.approx(0.02 * 100)
    assert safety_factor(0.95, "fill_rate", cycle_qty=1000, sigma=10) == 0.0  # the lot is enough
    assert safety_factor(0.99, "fill_rate", cycle_qty=0, sigma=10) == MAX_SAFETY_FACTOR


def test_eoq_and_lead_time_sigma() -> None:
    assert economic_order_quantity(3650, 50, 2.5) == pytest.approx(math.sqrt(146_000))
    assert lead_time_sigma(10, 3, 9) == pytest.approx(9.0)
    assert lead_time_sigma(10, 3, 9, lead_time_std_days=2) == pytest.approx(math.sqrt(81 + 400))


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError):
        ReplenishmentSettings(service_level=1.0)
    with pytest.raises(ValueError):
        ReplenishmentSettings(pack_size=0)


def test_a_slow_movers_lot_is_capped_and_its_safety_takes_the_cycle_factor() -> None:
    slow = dataclasses.replace(_forecast(daily=0.5, sigma=1.5), demand_class="intermittent")
    fill = ReplenishmentSettings(service_level_type="fill_rate", max_cover_days=30)
    capped = suggest("SLOW", slow, fill, stock=StockPosition(available=0))
    assert capped.economic_order_qty == pytest.approx(math.sqrt(2 * 182.5 * 50 / 2.5))  # ≈ 85
    assert capped.policy.lot_size == 15  # 30 days of 0.5 a day, not EOQ's ~170 days
    sigma = 1.5 * math.sqrt(7)
    assert capped.safety_stock == pytest.approx(norm.ppf(0.95) * sigma)  # not the loss function
    smooth = suggest(
        "FAST", _forecast(daily=0.5, sigma=1.5), fill, stock=StockPosition(available=0)
    )
    assert smooth.policy.lot_size == 86  # a smooth SKU keeps its EOQ
    with pytest.raises(ValueError, match="max_cover_days"):
        ReplenishmentSettings(max_cover_days=0)


def test_suggest_eoq_with_the_reasoning() -> None:
    settings = ReplenishmentSettings(pack_size=12, lead_time_days=7)
    s = suggest("SKU-1", _forecast(), settings, stock=StockPosition(80, incoming=20, backordered=5))
    sigma = 3 * math.sqrt(7)
    assert s.lead_time_demand == pytest.approx(70)
    assert s.safety_stock == pytest.approx(norm.ppf(0.95) * sigma)
    assert s.reorder_point == pytest.approx(70 + norm.ppf(0.95) * sigma)  # ≈ 83.1
    assert s.inventory_position == 95
    assert not s.should_order and s.order_qty == 0
    assert s.days_of_cover == pytest.approx(9.5)
    assert (s.model, s.wape, s.mase) == ("holt_winters", 0.2, 0.7)

    low = suggest("SKU-1", _forecast(), settings, stock=StockPosition(available=50))
    assert low.economic_order_qty == pytest.approx(math.sqrt(146_000))  # ≈ 382.1
    assert low.order_qty == 384  # rounded up to 32 packs of 12
    data = low.to_event_data()
    json.dumps(data)  # ready to publish as is
    assert data["order_qty"] == 384 and data["reorder_point"] == 84
    assert data["reasoning"]["forecast_daily"] == "10.000"
    assert data["reasoning"]["wape"] == "0.200"


def test_suggest_min_max_and_lead_time_variability() -> None:
    settings = ReplenishmentSettings(method="minmax", order_cycle_days=30, lead_time_std_days=2)
    s = suggest("SKU-2", _forecast(), settings, stock=StockPosition(available=40))
    assert s.lead_time_sigma == pytest.approx(math.sqrt(7 * 9 + 400))
    assert s.policy.order_up_to == pytest.approx(s.reorder_point + 300)
    assert s.order_qty == math.ceil(s.reorder_point + 300 - 40)
    assert s.economic_order_qty is None


def test_fill_rate_target_needs_less_safety_stock_than_cycle_target() -> None:
    cycle = suggest("S", _forecast(), ReplenishmentSettings())
    fill = suggest("S", _forecast(), ReplenishmentSettings(service_level_type="fill_rate"))
    assert fill.safety_stock < cycle.safety_stock


def test_chart_is_a_png_and_can_be_written(tmp_path) -> None:
    forecast = _forecast()
    forecast.imputed[-3:] = True
    suggestion = suggest("SKU-1", forecast, stock=StockPosition(available=200))
    target = tmp_path / "sku.png"
    png = render_chart(forecast, suggestion, path=target)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert target.read_bytes() == png
