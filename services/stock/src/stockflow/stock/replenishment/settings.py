"""Replenishment settings: the per-SKU parameters, the service-wide defaults from the
environment, and their resolution from ``replenishment_settings`` rows.

Light on purpose (no numpy, no scipy): the stock service serves the settings API from here while
the replenishment worker runs the forecasts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from decimal import Decimal
from typing import Any, Literal

import asyncpg
from pydantic_settings import BaseSettings, SettingsConfigDict


@dataclass(frozen=True)
class ReplenishmentSettings:
    """Per-SKU replenishment parameters; the defaults suit a typical fast-moving SKU.

    ``service_level_type`` picks what ``service_level`` means: ``"cycle"`` — probability of no
    stockout in a replenishment cycle (z = Φ⁻¹(level)); ``"fill_rate"`` — share of demanded units
    served from stock (z solved from the normal loss function, so larger lots need less safety).
    """

    service_level: float = 0.95
    service_level_type: Literal["cycle", "fill_rate"] = "cycle"
    lead_time_days: float = 7.0
    lead_time_std_days: float = 0.0
    method: Literal["eoq", "minmax"] = "eoq"
    ordering_cost: float = 50.0  # per purchase order
    unit_cost: float = 10.0
    holding_cost_rate: float = 0.25  # of unit cost, per year
    order_cycle_days: float = 30.0  # min/max only: max level = reorder point + this much demand
    # EOQ, intermittent demand only: buy at most this many days of demand at once. EOQ's square
    # root buys a slow mover months ahead: fewer orders, but stock that ages, takes space and
    # may never sell. The cap trades ordering cost for stock (see the simulation's figures).
    max_cover_days: float = 30.0
    pack_size: int = 1
    min_order_qty: int = 0

    def __post_init__(self) -> None:
        if not 0.5 <= self.service_level < 1:
            raise ValueError("service_level must be in [0.5, 1)")
        if self.max_cover_days <= 0:
            raise ValueError("max_cover_days must be positive")
        if self.lead_time_days <= 0 or self.lead_time_std_days < 0:
            raise ValueError("lead time must be positive and its std non-negative")
        if self.pack_size < 1 or self.min_order_qty < 0:
            raise ValueError("pack_size must be ≥ 1 and min_order_qty ≥ 0")
        if self.unit_cost <= 0 or self.holding_cost_rate <= 0 or self.ordering_cost < 0:
            raise ValueError("costs must be positive")

    @property
    def holding_cost_per_unit_year(self) -> float:
        """Cost of keeping one unit in stock for a year."""
        return self.unit_cost * self.holding_cost_rate


_DEFAULTS = ReplenishmentSettings()
# Columns of replenishment_settings, named as the ReplenishmentSettings fields they override.
SETTING_COLUMNS = tuple(f.name for f in fields(ReplenishmentSettings))


class ReplenishDefaults(BaseSettings):
    """``STOCKFLOW_REPLENISH_*``: the schedule, and the defaults for SKUs without settings."""

    model_config = SettingsConfigDict(env_prefix="STOCKFLOW_REPLENISH_", extra="ignore")

    interval_s: float = 86400.0  # 0 turns the scheduled run off
    history_days: int = 730
    min_history_days: int = 28
    apply_reorder_points: bool = False  # scheduled runs: also set levels.reorder_point
    report_dir: str = ""  # scheduled runs: write the report and charts here (empty: none)
    service_level: float = _DEFAULTS.service_level
    service_level_type: Literal["cycle", "fill_rate"] = _DEFAULTS.service_level_type
    lead_time_days: float = _DEFAULTS.lead_time_days
    lead_time_std_days: float = _DEFAULTS.lead_time_std_days
    method: Literal["eoq", "minmax"] = _DEFAULTS.method
    ordering_cost: float = _DEFAULTS.ordering_cost
    unit_cost: float = _DEFAULTS.unit_cost
    holding_cost_rate: float = _DEFAULTS.holding_cost_rate
    order_cycle_days: float = _DEFAULTS.order_cycle_days
    max_cover_days: float = _DEFAULTS.max_cover_days
    pack_size: int = _DEFAULTS.pack_size
    min_order_qty: int = _DEFAULTS.min_order_qty

    def replenishment_settings(self) -> ReplenishmentSettings:
        """The service-wide defaults as domain settings (validated by the domain)."""
        return ReplenishmentSettings(**{name: getattr(self, name) for name in SETTING_COLUMNS})


async def load_settings(
    conn: asyncpg.Connection, keys: Iterable[tuple[str, str]], defaults: ReplenishmentSettings
) -> dict[tuple[str, str], ReplenishmentSettings]:
    """Settings per (sku, location): its own row, else the sku's '*' row, else ``defaults``,
    column by column (a NULL column falls through)."""
    keys = list(keys)
    rows = await conn.fetch(
        f"SELECT sku, location, {', '.join(SETTING_COLUMNS)} FROM replenishment_settings "
        "WHERE sku = ANY($1::text[])",
        sorted({sku for sku, _ in keys}),
    )
    stored = {(r["sku"], r["location"]): r for r in rows}
    resolved: dict[tuple[str, str], ReplenishmentSettings] = {}
    for sku, location in keys:
        values: dict[str, Any] = {}
        for name in SETTING_COLUMNS:
            for row in (stored.get((sku, location)), stored.get((sku, "*"))):
                if row is not None and row[name] is not None:
                    values[name] = _plain(row[name])
                    break
            else:
                values[name] = getattr(defaults, name)
        resolved[(sku, location)] = ReplenishmentSettings(**values)
    return resolved


def _plain(value: Any) -> Any:
    # numeric columns arrive as Decimal; the domain computes with floats.
    return float(value) if isinstance(value, Decimal) else value
