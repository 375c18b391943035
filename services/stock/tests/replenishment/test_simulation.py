"""Simulation mechanics, the synthetic generator, and the end-to-end proof: a simulated year
under the suggested policy meets the service target with less stock than a naive min/max."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pytest

from stockflow.stock.replenishment.evidence import evaluate_scenario
from stockflow.stock.replenishment.policy import StockPolicy
from stockflow.stock.replenishment.settings import ReplenishmentSettings
from stockflow.stock.replenishment.simulation import (
    SCENARIOS,
    WEEKLY_PROFILE,
    DemandSpec,
    generate_demand,
    naive_min_max,
    simulate,
)

TARGET = 0.95
TOLERANCE = 0.02  # fill rate must reach TARGET - TOLERANCE = 93%


def test_reorder_point_covering_the_lead_time_exactly_never_stocks_out() -> None:
    # 10/day, lead time 7: an order placed at 70 on hand lands just as the shelf empties.
    demand = np.full(100, 10.0)
    result = simulate(demand, StockPolicy(reorder_point=70, lot_size=100), lead_time_days=7)
    assert result.fill_rate == 1.0 and result.stockout_days == 0
    assert result.orders == 10  # at the end of days 9, 19, ..., 99
    # End of day: 160 down to 0 over days 0-16, then cycles of 90 down to 0.
    assert result.average_on_hand == pytest.approx(52.0)


def test_a_short_reorder_point_loses_sales() -> None:
    demand = np.full(100, 10.0)
    result = simulate(demand, StockPolicy(reorder_point=60, lot_size=100), lead_time_days=7)
    # Each 11-day cycle runs dry one day before the lot lands: days 17, 28, ..., 94.
    assert result.stockout_days == 8 and result.fill_rate == pytest.approx(0.92)


def test_min_max_orders_up_to_the_max_and_policy_can_change_by_day() -> None:
    demand = np.full(30, 5.0)
    policies = [StockPolicy(reorder_point=20, order_up_to=50), StockPolicy(20, lot_size=7)]
    result = simulate(demand, lambda day: policies[day // 15], lead_time_days=2, initial_on_hand=30)
    assert result.fill_rate == 1.0
    assert result.demanded == 150 and result.served == 150
    assert result.orders >= 3


def test_naive_min_max_definition() -> None:
    policy = naive_min_max(10.0)
    assert (policy.reorder_point, policy.order_up_to) == (140.0, 600.0)


def test_generator_is_seeded_and_has_the_requested_structure() -> None:
    spec = DemandSpec(base=20, weekly_amplitude=1.0, stockout_start=100, stockout_days=10)
    a, b = generate_demand(spec, 364, seed=1), generate_demand(spec, 364, seed=1)
    assert np.array_equal(a.demand, b.demand)
    assert not np.array_equal(a.demand, generate_demand(spec, 364, seed=2).demand)
    assert a.demand.mean() == pytest.approx(20, rel=0.05)
    by_weekday = a.demand.reshape(-1, 7).mean(axis=0) / a.demand.mean()
    assert np.allclose(by_weekday, WEEKLY_PROFILE, atol=0.08)
    assert a.stockout.sum() == 10 and (a.observed[a.stockout] == 0).all()
    assert np.array_equal(a.observed[~a.stockout], a.demand[~a.stockout])

    trend = generate_demand(DemandSpec(trend_per_day=0.05), 365, seed=1).demand
    assert trend[-30:].mean() > trend[:30].mean() + 12

    sparse = generate_demand(SCENARIOS["intermittent"], 2000, seed=1).demand
    assert (sparse > 0).mean() == pytest.approx(0.25, abs=0.03)
    assert sparse.mean() == pytest.approx(0.6, rel=0.1)


def _report(
    name: str, kind: Literal["cycle", "fill_rate"], max_cover_days: float = 30.0
) -> tuple[float, float, float, float]:
    settings = ReplenishmentSettings(
        service_level=TARGET, service_level_type=kind, max_cover_days=max_cover_days
    )
    r = evaluate_scenario(name, seed=7, settings=settings)
    print(
        f"{name:13s} {kind:9s} model {r.forecast.model:19s} WAPE {r.wape:.3f} (naive "
        f"{r.baseline_wape:.3f}) | ours: fill {r.ours.fill_rate:.1%}, avg stock "
        f"{r.ours.average_on_hand:6.1f}, {r.ours.orders:2d} orders, cost/yr "
        f"{r.annual_cost(r.ours):5.0f} | min/max 14/60: fill {r.naive.fill_rate:.1%}, avg stock "
        f"{r.naive.average_on_hand:6.1f}, {r.naive.orders:2d} orders, cost/yr "
        f"{r.annual_cost(r.naive):5.0f}"
    )
    return (
        r.ours.fill_rate,
        r.ours.average_on_hand,
        r.naive.average_on_hand,
        r.annual_cost(r.ours) - r.annual_cost(r.naive),
    )


@pytest.mark.parametrize("kind", ["cycle", "fill_rate"])
@pytest.mark.parametrize("name", ["weekly", "trend_weekly", "stockout_gap"])
def test_suggested_policy_meets_the_target_with_less_stock_than_naive_min_max(
    name: str, kind: Literal["cycle", "fill_rate"]
) -> None:
    fill, stock, naive_stock, cost_saving = _report(name, kind)
    assert fill >= TARGET - TOLERANCE
    assert stock < naive_stock
    assert cost_saving < 0


@pytest.mark.parametrize("kind", ["cycle", "fill_rate"])
def test_intermittent_demand_meets_the_target_with_less_stock_than_naive_min_max(
    kind: Literal["cycle", "fill_rate"],
) -> None:
    # A slow mover's lot is capped at 30 days of demand: less stock, more (small) orders.
    fill, stock, naive_stock, _ = _report("intermittent", kind)
    assert fill >= TARGET - TOLERANCE
    assert stock < naive_stock


def test_uncapped_eoq_buys_a_slow_mover_months_ahead_at_lower_total_cost() -> None:
    # The other side of the trade: EOQ alone holds more stock than min/max, for fewer orders.
    fill, stock, naive_stock, cost_saving = _report("intermittent", "cycle", max_cover_days=365)
    assert fill >= TARGET - TOLERANCE
    assert stock > naive_stock and cost_saving < 0
