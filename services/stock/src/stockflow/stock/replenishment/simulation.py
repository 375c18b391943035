"""Daily inventory simulation for one SKU, and synthetic demand histories with known structure.

Simulation conventions (lost sales, daily review):
- a day starts with receipts due that day, then serves demand from on-hand stock; demand not
  served is lost (fill rate = served / demanded);
- at the end of the day the policy looks at the inventory position (on hand + on order) and may
  order; an order placed at the end of day t is received at the start of day t + L + 1, so it is
  exposed to exactly L days of demand — the span the reorder point covers;
- average on hand is the mean end-of-day stock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from stockflow.stock.replenishment.policy import StockPolicy

# Weekday demand multipliers (Mon..Sun), mean 1: a storefront busier on Friday-Sunday.
WEEKLY_PROFILE = np.array([0.85, 0.8, 0.85, 0.95, 1.15, 1.35, 1.05])
WEEKLY_PROFILE = WEEKLY_PROFILE / WEEKLY_PROFILE.mean()


@dataclass(frozen=True)
class SimulationResult:
    """Outcome of a simulated period."""

    demanded: float
    served: float
    average_on_hand: float
    orders: int
    stockout_days: int  # days with demand left unserved

    @property
    def fill_rate(self) -> float:
        """Units served / units demanded (1.0 when nothing was demanded)."""
        return self.served / self.demanded if self.demanded > 0 else 1.0


def simulate(
    demand: np.ndarray,
    policy: StockPolicy | Callable[[int], StockPolicy],
    lead_time_days: int,
    initial_on_hand: float | None = None,
) -> SimulationResult:
    """Run ``policy`` against daily ``demand`` with a fixed lead time.

    ``policy`` may be a callable of the day index, to model periodic re-planning. Stock starts at
    ``initial_on_hand``, by default the level just after an order arrives (lot + reorder point,
    or the max level).
    """
    if lead_time_days < 0:
        raise ValueError("lead_time_days must be ≥ 0")
    policy_on = policy if callable(policy) else (lambda _day: policy)
    if initial_on_hand is None:
        first = policy_on(0)
        initial_on_hand = (
            first.reorder_point + first.lot_size
            if first.lot_size is not None
            else float(first.order_up_to or 0.0)
        )
    days = len(demand)
    arrivals = np.zeros(days + lead_time_days + 2)
    on_hand, on_order = float(initial_on_hand), 0.0
    served_total = stock_total = 0.0
    orders = stockout_days = 0
    for day in range(days):
        on_hand += arrivals[day]
        on_order -= arrivals[day]
        wanted = float(demand[day])
        served = min(on_hand, wanted)
        on_hand -= served
        served_total += served
        stockout_days += int(served < wanted)
        quantity = policy_on(day).order_quantity(on_hand + on_order)
        if quantity:
            arrivals[day + lead_time_days + 1] += quantity
            on_order += quantity
            orders += 1
        stock_total += on_hand
    return SimulationResult(
        demanded=float(np.sum(demand)),
        served=float(served_total),
        average_on_hand=stock_total / days if days else 0.0,
        orders=orders,
        stockout_days=stockout_days,
    )


def naive_min_max(mean_daily: float, min_days: float = 14, max_days: float = 60) -> StockPolicy:
    """The rule-of-thumb comparison policy: reorder at ``min_days`` of mean demand, fill up to
    ``max_days`` — what a buyer sets without a forecast."""
    return StockPolicy(reorder_point=min_days * mean_daily, order_up_to=max_days * mean_daily)


@dataclass(frozen=True)
class DemandSpec:
    """Structure of a synthetic daily demand series (expected units per day before noise)."""

    base: float = 20.0
    trend_per_day: float = 0.0
    weekly_amplitude: float = 0.0  # 0 = flat week, 1 = full WEEKLY_PROFILE
    yearly_amplitude: float = 0.0  # relative swing of a yearly sine: 0.4 = ±40%
    demand_probability: float = 1.0  # < 1 makes demand intermittent
    stockout_start: int | None = None  # first day of a stockout gap
    stockout_days: int = 0


@dataclass(frozen=True, eq=False)
class SyntheticHistory:
    """True demand, what the shop recorded, and the stockout flags."""

    demand: np.ndarray  # true demand per day
    observed: np.ndarray  # recorded demand: nothing sold during the stockout gap
    stockout: np.ndarray  # bool per day


def generate_demand(spec: DemandSpec, days: int, seed: int) -> SyntheticHistory:
    """Draw a daily demand series with the structure in ``spec``; same seed, same series.

    Smooth demand is Poisson around the structured mean; intermittent demand occurs on a day
    with ``demand_probability`` and is then 1 + Poisson(mean size - 1), keeping the same
    expected units per day as ``base``.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(days)
    weekly = 1 + spec.weekly_amplitude * (WEEKLY_PROFILE[t % 7] - 1)
    yearly = 1 + spec.yearly_amplitude * np.sin(2 * np.pi * t / 365)
    mean = np.clip((spec.base + spec.trend_per_day * t) * weekly * yearly, 0, None)
    if spec.demand_probability >= 1:
        demand = rng.poisson(mean).astype(float)
    else:
        occurs = rng.random(days) < spec.demand_probability
        size_mean = np.maximum(mean / spec.demand_probability, 1.0)
        demand = np.where(occurs, 1 + rng.poisson(size_mean - 1), 0).astype(float)
    stockout = np.zeros(days, dtype=bool)
    if spec.stockout_start is not None:
        stockout[spec.stockout_start : spec.stockout_start + spec.stockout_days] = True
    observed = np.where(stockout, 0.0, demand)
    return SyntheticHistory(demand=demand, observed=observed, stockout=stockout)


SCENARIOS: dict[str, DemandSpec] = {
    "flat": DemandSpec(),
    "trend": DemandSpec(trend_per_day=0.03),
    "weekly": DemandSpec(weekly_amplitude=1.0),
    "trend_weekly": DemandSpec(trend_per_day=0.03, weekly_amplitude=1.0),
    "intermittent": DemandSpec(base=0.6, demand_probability=0.25),
    "stockout_gap": DemandSpec(weekly_amplitude=1.0, stockout_start=344, stockout_days=21),
    "yearly_weekly": DemandSpec(weekly_amplitude=1.0, yearly_amplitude=0.4),
}
