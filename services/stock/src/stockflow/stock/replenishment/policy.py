"""Reorder points, safety stock and order quantities from a demand forecast.

Continuous-review logic, evaluated daily: when the inventory position (available + incoming -
backordered) is at or below the reorder point, order either a fixed lot (EOQ) or up to a
maximum level (min/max). Quantities are rounded up to the supplier's pack size and minimum
order. Costs are plain floats here: this is estimation, not bookkeeping.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from scipy.optimize import brentq
from scipy.stats import norm

from stockflow.stock.replenishment.forecasting import ForecastResult
from stockflow.stock.replenishment.settings import ReplenishmentSettings

DAYS_PER_YEAR = 365
# Cap on the safety factor (≈ 99.997% cycle service): beyond it the normal model means nothing.
MAX_SAFETY_FACTOR = 4.0
# CloudEvents type of Suggestion.to_event_data(), published on stock.alerts.v1 (key sku).
EVENT_TYPE = "stock.reorder.suggested.v1"


@dataclass(frozen=True)
class StockPosition:
    """The stock figures of one (sku, location) that decide whether to order now."""

    available: float = 0.0
    incoming: float = 0.0
    backordered: float = 0.0

    @property
    def inventory_position(self) -> float:
        """Available + incoming - backordered: what the reorder point is compared with."""
        return self.available + self.incoming - self.backordered


def round_order(quantity: float, pack_size: int = 1, min_order_qty: int = 0) -> int:
    """Round a wanted quantity up to whole packs, at least the minimum order (0 stays 0)."""
    if quantity <= 0:
        return 0
    quantity = max(quantity, min_order_qty)
    return math.ceil(round(quantity / pack_size, 9)) * pack_size


@dataclass(frozen=True)
class StockPolicy:
    """An executable reorder rule: (s, Q) when ``lot_size`` is set, (s, S) when ``order_up_to``."""

    reorder_point: float
    lot_size: int | None = None
    order_up_to: float | None = None
    pack_size: int = 1
    min_order_qty: int = 0

    def __post_init__(self) -> None:
        if (self.lot_size is None) == (self.order_up_to is None):
            raise ValueError("set exactly one of lot_size and order_up_to")

    def order_quantity(self, position: float) -> int:
        """Units to order now for this inventory position (0 above the reorder point)."""
        if position > self.reorder_point:
            return 0
        if self.lot_size is not None:
            # Enough whole lots to lift the position back above the reorder point.
            lots = math.floor((self.reorder_point - position) / self.lot_size) + 1
            wanted = float(lots * self.lot_size)
        else:
            assert self.order_up_to is not None
            # At least one unit even if the max level is degenerate (≤ the reorder point).
            wanted = max(self.order_up_to - position, 1.0)
        return round_order(wanted, self.pack_size, self.min_order_qty)


@dataclass(frozen=True)
class Suggestion:
    """A reorder suggestion with its reasoning; ``to_event_data`` is the event payload."""

    sku: str
    location: str | None
    model: str
    wape: float | None
    mase: float | None
    forecast_daily: float
    lead_time_days: float
    lead_time_demand: float
    lead_time_sigma: float
    service_level: float
    service_level_type: str
    safety_stock: float
    reorder_point: float
    method: str
    economic_order_qty: float | None
    inventory_position: float
    order_qty: int
    days_of_cover: float | None
    policy: StockPolicy

    @property
    def should_order(self) -> bool:
        """True when the position is at or below the reorder point."""
        return self.order_qty > 0

    def to_event_data(self) -> dict[str, Any]:
        """JSON-ready ``data`` for ``stock.reorder.suggested.v1`` (quantities as integers)."""

        def dec(value: float | None, places: int = 3) -> str | None:
            return None if value is None or not math.isfinite(value) else f"{value:.{places}f}"

        return {
            "sku": self.sku,
            "location": self.location,
            "order_qty": self.order_qty,
            "reorder_point": math.ceil(self.reorder_point),
            "safety_stock": math.ceil(self.safety_stock),
            "order_up_to": None
            if self.policy.order_up_to is None
            else math.ceil(self.policy.order_up_to),
            "inventory_position": math.floor(self.inventory_position),
            "method": self.method,
            "reasoning": {
                "model": self.model,
                "wape": dec(self.wape),
                "mase": dec(self.mase),
                "forecast_daily": dec(self.forecast_daily),
                "lead_time_days": dec(self.lead_time_days, 1),
                "lead_time_demand": dec(self.lead_time_demand),
                "lead_time_sigma": dec(self.lead_time_sigma),
                "service_level": dec(self.service_level, 4),
                "service_level_type": self.service_level_type,
                "economic_order_qty": dec(self.economic_order_qty, 1),
                "days_of_cover": dec(self.days_of_cover, 1),
            },
        }


def economic_order_quantity(
    annual_demand: float, ordering_cost: float, holding_cost_per_unit_year: float
) -> float:
    """Wilson EOQ: sqrt(2 · D · S / H)."""
    return math.sqrt(2 * annual_demand * ordering_cost / holding_cost_per_unit_year)


def lead_time_sigma(
    daily_demand: float, sigma_daily: float, lead_time_days: float, lead_time_std_days: float = 0.0
) -> float:
    """Std of demand over a lead time: sqrt(L * sd^2 + d^2 * sL^2).

    sd is the daily forecast error sigma, d the daily demand, sL the lead-time std in days.

    Treats daily forecast errors as independent, which understates it for trending series;
    the backtest RMSE pools errors over the whole backtest horizon, which partly compensates.
    """
    return math.sqrt(lead_time_days * sigma_daily**2 + (daily_demand * lead_time_std_days) ** 2)


def safety_factor(
    service_level: float,
    service_level_type: Literal["cycle", "fill_rate"] = "cycle",
    cycle_qty: float = 0.0,
    sigma: float = 0.0,
) -> float:
    """The z multiplier on lead-time sigma for a target service level, in [0, 4].

    For a fill rate β the expected shortage per cycle sigma * G(z) must equal (1 - β)·Q, where
    G(z) = φ(z) - z·(1 - Φ(z)) is the standard normal loss function.
    """
    if service_level_type == "cycle":
        return min(max(0.0, float(norm.ppf(service_level))), MAX_SAFETY_FACTOR)
    if sigma <= 0:
        return 0.0
    target = (1 - service_level) * cycle_qty / sigma

    def loss(z: float) -> float:
        return float(norm.pdf(z) - z * norm.sf(z)) - target

    # G is decreasing; G(0) ≈ 0.399. A target above it means no safety stock is needed.
    if loss(0.0) <= 0:
        return 0.0
    if loss(MAX_SAFETY_FACTOR) >= 0:
        return MAX_SAFETY_FACTOR
    return float(brentq(loss, 0.0, MAX_SAFETY_FACTOR))


def suggest(
    sku: str,
    forecast: ForecastResult,
    settings: ReplenishmentSettings | None = None,
    *,
    stock: StockPosition | None = None,
    location: str | None = None,
) -> Suggestion:
    """Compute the reorder point and what to order now for one SKU (and location).

    Lead-time demand sums the forecast over the lead time, so trend and weekday mix count;
    its sigma comes from the backtest error of the chosen model.
    """
    settings = settings or ReplenishmentSettings()
    lead_time = settings.lead_time_days
    window = forecast.forecast[: math.ceil(lead_time)]
    lead_time_demand = float(window.mean()) * lead_time
    daily = forecast.mean_daily
    sigma = lead_time_sigma(
        lead_time_demand / lead_time, forecast.sigma_daily, lead_time, settings.lead_time_std_days
    )

    eoq, cycle_qty = _cycle_quantity(forecast, settings)
    # The normal loss function misjudges the shortage per cycle of lumpy demand (most days
    # zero, a few large): an intermittent SKU's fill-rate target takes the cycle-service factor,
    # the stricter of the two, instead.
    level_type = settings.service_level_type
    if forecast.demand_class == "intermittent":
        level_type = "cycle"
    z = safety_factor(settings.service_level, level_type, cycle_qty, sigma)
    safety_stock = z * sigma
    reorder_point = lead_time_demand + safety_stock
    policy = _policy(reorder_point, cycle_qty, settings)

    position = (stock or StockPosition()).inventory_position
    chosen = forecast.chosen_score
    return Suggestion(
        sku=sku,
        location=location,
        model=forecast.model,
        wape=chosen.wape if chosen else None,
        mase=chosen.mase if chosen else None,
        forecast_daily=daily,
        lead_time_days=lead_time,
        lead_time_demand=lead_time_demand,
        lead_time_sigma=sigma,
        service_level=settings.service_level,
        service_level_type=settings.service_level_type,
        safety_stock=safety_stock,
        reorder_point=reorder_point,
        method=settings.method,
        economic_order_qty=eoq,
        inventory_position=position,
        order_qty=policy.order_quantity(position),
        days_of_cover=position / daily if daily > 0 else None,
        policy=policy,
    )


def _cycle_quantity(
    forecast: ForecastResult, settings: ReplenishmentSettings
) -> tuple[float | None, float]:
    """(the economic order quantity when the method uses it, the units one cycle orders)."""
    daily = forecast.mean_daily
    if settings.method != "eoq":
        return None, settings.order_cycle_days * daily
    eoq = economic_order_quantity(
        daily * DAYS_PER_YEAR, settings.ordering_cost, settings.holding_cost_per_unit_year
    )
    lot = eoq
    if forecast.demand_class == "intermittent":
        lot = min(eoq, settings.max_cover_days * daily)
    return eoq, float(round_order(lot, settings.pack_size, settings.min_order_qty))


def _policy(reorder_point: float, cycle_qty: float, settings: ReplenishmentSettings) -> StockPolicy:
    """(s, Q) for the EOQ method, (s, S) for min/max."""
    if settings.method == "eoq":
        # A zero forecast gives no lot; keep the policy valid with one pack.
        lot = max(int(cycle_qty), round_order(1, settings.pack_size, settings.min_order_qty))
        return StockPolicy(
            reorder_point,
            lot_size=lot,
            pack_size=settings.pack_size,
            min_order_qty=settings.min_order_qty,
        )
    return StockPolicy(
        reorder_point,
        order_up_to=reorder_point + cycle_qty,
        pack_size=settings.pack_size,
        min_order_qty=settings.min_order_qty,
    )
