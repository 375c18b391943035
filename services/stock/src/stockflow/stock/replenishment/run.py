"""The replenishment run: demand, settings and levels in; suggestions, reorder points, a report
and charts out.

An adapter around the pure modules (``forecasting``, ``policy``, ``charts``):

1. read the daily demand of every (sku, location) with at least ``min_history_days`` of
   history (complete days only, up to yesterday; untracked SKUs, bundles and discontinued
   SKUs are left out) and its replenishment settings;
2. forecast each series in a worker thread (statsmodels is CPU-bound; the service's event loop
   keeps serving);
3. in one unit of work: lock the levels of those SKUs (sku, location order, as every writer
   does, so reorder suggestions keep per-key order with the level alerts on
   ``stock.alerts.v1``), compute each suggestion from the levels as they are now, stage
   ``stock.reorder.suggested.v1`` for every position at or below its reorder point, optionally
   set ``levels.reorder_point``, and record the run;
4. after the commit, optionally write ``report.md``, ``report.json`` and one PNG per series
   (``report``).

The replenishment worker runs it every ``STOCKFLOW_REPLENISH_INTERVAL_S`` (``schedule``);
``stockflow stock replenish`` runs it on demand.
"""

from __future__ import annotations

import asyncio
import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Literal

import asyncpg
import numpy as np

from stockflow.contracts.events.stock import ReorderSuggested
from stockflow.runtime.logging import get_logger
from stockflow.runtime.outbox import UnitOfWork, unit_of_work
from stockflow.stock.replenishment.forecasting import BASELINE, ForecastResult, forecast_demand
from stockflow.stock.replenishment.policy import StockPosition, Suggestion, suggest
from stockflow.stock.replenishment.report import write_report
from stockflow.stock.replenishment.settings import (
    ReplenishDefaults,
    ReplenishmentSettings,
    load_settings,
)

log = get_logger(__name__)

# Days of cover when nothing is forecast but stock is on hand: "a century", not infinity.
MAX_DAYS_OF_COVER = 36500


@dataclass(frozen=True, eq=False)
class Series:
    """Daily demand of one (sku, location), oldest first, one value per consecutive day."""

    sku: str
    location: str
    start: date
    demand: np.ndarray
    stockout: np.ndarray

    @property
    def key(self) -> tuple[str, str]:
        return (self.sku, self.location)


@dataclass(frozen=True, eq=False)
class SeriesResult:
    """One (sku, location) of a run: its forecast and the suggestion from current levels."""

    series: Series
    settings: ReplenishmentSettings
    forecast: ForecastResult
    suggestion: Suggestion
    previous_reorder_point: int | None

    @property
    def baseline_wape(self) -> float | None:
        score = self.forecast.score(BASELINE)
        return score.wape if score else None


@dataclass(frozen=True)
class RunRequest:
    """What one run is asked to do.

    Attributes:
        trigger: recorded with the run; the scheduler only counts its own runs.
        skus: only these SKUs (all when empty).
        publish: stage ``stock.reorder.suggested.v1`` events (the outbox relay sends them).
        apply_reorder_points: set ``levels.reorder_point`` to each computed reorder point.
        report_dir: write ``report.md``, ``report.json`` and one PNG per series there.
        today: the first day not counted as history (default: today in UTC).
    """

    trigger: Literal["schedule", "cli"]
    skus: Sequence[str] | None = None
    publish: bool = True
    apply_reorder_points: bool = False
    report_dir: Path | None = None
    today: date | None = None


@dataclass
class RunResult:
    """What a run saw and did."""

    started_at: datetime
    results: list[SeriesResult] = field(default_factory=list)
    skipped: list[tuple[str, str, str]] = field(default_factory=list)  # sku, location, why
    published: int = 0
    reorder_points_set: int = 0
    report: Path | None = None

    @property
    def suggestions(self) -> list[SeriesResult]:
        """The series whose inventory position is at or below the reorder point."""
        return [r for r in self.results if r.suggestion.should_order]


# ----------------------------------------------------------------------------- reading


async def load_series(
    conn: asyncpg.Connection,
    *,
    today: date,
    history_days: int,
    min_history_days: int,
    skus: Sequence[str] | None = None,
) -> tuple[list[Series], list[tuple[str, str, str]]]:
    """Demand series from ``demand_daily`` (days before ``today``), and the ones skipped.

    A series starts on its first recorded day; days without a row had no demand.
    """
    rows = await conn.fetch(
        """SELECT d.sku, d.location, d.day, d.quantity, d.stockout
           FROM demand_daily d LEFT JOIN skus s ON s.sku = d.sku
           WHERE d.day >= $1 AND d.day < $2
             AND ($3::text[] IS NULL OR d.sku = ANY($3::text[]))
             AND (s.sku IS NULL OR (s.tracked AND s.bundle_components = '[]'::jsonb
                                    AND s.status <> 'discontinued'))
           ORDER BY d.sku, d.location, d.day""",
        today - timedelta(days=history_days),
        today,
        list(skus) if skus else None,
    )
    grouped: dict[tuple[str, str], list] = defaultdict(list)
    for row in rows:
        grouped[(row["sku"], row["location"])].append(row)
    series: list[Series] = []
    skipped: list[tuple[str, str, str]] = []
    for (sku, location), days in grouped.items():
        start = days[0]["day"]
        length = (today - start).days
        if length < min_history_days:
            skipped.append((sku, location, f"{length} days of history (< {min_history_days})"))
            continue
        demand = np.zeros(length)
        stockout = np.zeros(length, dtype=bool)
        for row in days:
            index = (row["day"] - start).days
            demand[index] = row["quantity"]
            stockout[index] = row["stockout"]
        series.append(Series(sku, location, start, demand, stockout))
    return series, skipped


# ----------------------------------------------------------------------------- the run


def forecast_series(series: Series, settings: ReplenishmentSettings) -> ForecastResult:
    """Forecast far enough ahead to cover the lead time and the chart's four weeks."""
    horizon = max(28, math.ceil(settings.lead_time_days + settings.lead_time_std_days * 3))
    return forecast_demand(series.demand, series.stockout, horizon=horizon)


def reorder_event(suggestion: Suggestion, now: datetime) -> ReorderSuggested:
    """``stock.reorder.suggested.v1`` for a suggestion (location always set here)."""
    assert suggestion.location is not None
    if suggestion.days_of_cover is not None:
        cover = max(suggestion.days_of_cover, 0.0)
    else:  # nothing forecast: stock on hand lasts "forever", none lasts no time
        cover = 0.0 if suggestion.inventory_position <= 0 else MAX_DAYS_OF_COVER
    return ReorderSuggested(
        sku=suggestion.sku,
        location=suggestion.location,
        order_quantity=suggestion.order_qty,
        reorder_point=math.ceil(suggestion.reorder_point),
        safety_stock=math.ceil(suggestion.safety_stock),
        forecast_daily_demand=_decimal(suggestion.forecast_daily),
        lead_time_days=math.ceil(suggestion.lead_time_days),
        days_of_cover=_decimal(min(cover, MAX_DAYS_OF_COVER), 1),
        model=suggestion.model,
        wape=_decimal(suggestion.wape),
        mase=_decimal(suggestion.mase),
        suggested_at=now,
    )


def _decimal(value: float | None, places: int = 3) -> Decimal | None:
    if value is None or not math.isfinite(value):
        return None
    return Decimal(f"{max(value, 0.0):.{places}f}")


async def run_replenishment(
    pool: asyncpg.Pool,
    request: RunRequest,
    *,
    source: str,
    defaults: ReplenishDefaults | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> RunResult:
    """Forecast every series, decide, publish and record; see the module docstring.

    Args:
        pool: connections with the stock schema on their search_path.
        request: which SKUs, and what to do with the suggestions.
        source: CloudEvents source of the published events.
        defaults: settings for SKUs without a replenishment_settings row (from environment).
        progress: called with (done, total) after each forecast.
    """
    defaults = defaults or ReplenishDefaults()
    started_at = datetime.now(UTC)
    today = request.today or started_at.date()
    async with pool.acquire() as conn:
        series, skipped = await load_series(
            conn,
            today=today,
            history_days=defaults.history_days,
            min_history_days=defaults.min_history_days,
            skus=request.skus,
        )
        settings = await load_settings(
            conn, [(s.sku, s.location) for s in series], defaults.replenishment_settings()
        )
    run = RunResult(started_at, skipped=skipped)
    planned = await _forecast_all(series, settings, run, progress)
    async with unit_of_work(pool, source=source) as uow:
        await _decide(uow, planned, settings, request, run)
        if request.apply_reorder_points:
            await _apply_reorder_points(uow.conn, run)
        await _record_run(uow.conn, request, run)
    log.info(
        "replenishment run",
        trigger=request.trigger,
        series=len(run.results),
        suggestions=len(run.suggestions),
        published=run.published,
        reorder_points_set=run.reorder_points_set,
        skipped=len(run.skipped),
    )
    if request.report_dir is not None:
        run.report = await asyncio.to_thread(write_report, run, Path(request.report_dir))
    return run


async def _forecast_all(
    series: list[Series],
    settings: dict[tuple[str, str], ReplenishmentSettings],
    run: RunResult,
    progress: Callable[[int, int], None] | None,
) -> list[tuple[Series, ForecastResult]]:
    """Forecast each series off the event loop; a series with nothing to learn is skipped."""
    planned: list[tuple[Series, ForecastResult]] = []
    for done, one in enumerate(series, 1):
        try:
            forecast = await asyncio.to_thread(forecast_series, one, settings[one.key])
        except ValueError as exc:  # e.g. every day a stockout: nothing to learn from
            run.skipped.append((one.sku, one.location, str(exc)))
        else:
            planned.append((one, forecast))
        if progress:
            progress(done, len(series))
    return planned


async def _decide(
    uow: UnitOfWork,
    planned: list[tuple[Series, ForecastResult]],
    settings: dict[tuple[str, str], ReplenishmentSettings],
    request: RunRequest,
    run: RunResult,
) -> None:
    """Suggest per series against its level now, publishing the orders to place."""
    # Lock as every level writer does (sku, location order): no deadlock, per-key order.
    rows = await uow.conn.fetch(
        "SELECT sku, location, available, incoming, backordered, reorder_point FROM levels "
        "WHERE sku = ANY($1::text[]) ORDER BY sku, location FOR UPDATE",
        sorted({one.sku for one, _ in planned}),
    )
    levels = {(r["sku"], r["location"]): r for r in rows}
    for one, forecast in planned:
        level = levels.get(one.key)
        suggestion = suggest(
            one.sku,
            forecast,
            settings[one.key],
            stock=StockPosition(level["available"], level["incoming"], level["backordered"])
            if level
            else StockPosition(),
            location=one.location,
        )
        previous = level["reorder_point"] if level else None
        run.results.append(SeriesResult(one, settings[one.key], forecast, suggestion, previous))
        if request.publish and suggestion.should_order:
            uow.publish(reorder_event(suggestion, run.started_at))
            run.published += 1


async def _apply_reorder_points(conn: asyncpg.Connection, run: RunResult) -> None:
    """Like PUT /reorder-points: the point is a setting, not a movement."""
    changed = [
        r for r in run.results if math.ceil(r.suggestion.reorder_point) != r.previous_reorder_point
    ]
    await conn.execute(
        "INSERT INTO levels (sku, location, reorder_point) "
        "SELECT * FROM unnest($1::text[], $2::text[], $3::int[]) "
        "ON CONFLICT (sku, location) DO UPDATE SET reorder_point = EXCLUDED.reorder_point",
        [r.series.sku for r in changed],
        [r.series.location for r in changed],
        [math.ceil(r.suggestion.reorder_point) for r in changed],
    )
    run.reorder_points_set = len(changed)


async def _record_run(conn: asyncpg.Connection, request: RunRequest, run: RunResult) -> None:
    await conn.execute(
        "INSERT INTO replenishment_runs (trigger, started_at, series, suggestions, "
        "published, reorder_points_set) VALUES ($1, $2, $3, $4, $5, $6)",
        request.trigger,
        run.started_at,
        len(run.results),
        len(run.suggestions),
        request.publish,
        run.reorder_points_set,
    )
