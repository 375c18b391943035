"""The replenishment run: demand, settings and levels in; suggestions, reorder points, a report
and charts out.

An adapter around the pure modules (``forecasting``, ``replenishment``, ``charts``):

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
4. after the commit, optionally write ``report.md``, ``report.json`` and one PNG per series.

The stock service runs it every ``STOCKFLOW_REPLENISH_INTERVAL_S`` (``replenish_periodically``);
``stockflow stock replenish`` runs it on demand.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import asyncpg
import numpy as np
from pydantic_settings import BaseSettings, SettingsConfigDict

from stockflow.contracts.events.stock import ReorderSuggested
from stockflow.runtime.logging import get_logger
from stockflow.runtime.outbox import unit_of_work
from stockflow.stock.charts import render_chart
from stockflow.stock.forecasting import BASELINE, ForecastResult, forecast_demand
from stockflow.stock.replenishment import ReplenishmentSettings, Suggestion, suggest

if TYPE_CHECKING:
    from stockflow.runtime.service import ServiceContext

log = get_logger(__name__)

_DEFAULTS = ReplenishmentSettings()
# Columns of replenishment_settings, named as the ReplenishmentSettings fields they override.
SETTING_COLUMNS = tuple(f.name for f in fields(ReplenishmentSettings))
# How often each instance asks whether a scheduled run is due (cheap: one query).
CHECK_EVERY_S = 60.0
# Days of cover when nothing is forecast but stock is on hand: "a century", not infinity.
MAX_DAYS_OF_COVER = 36500


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


@dataclass(frozen=True, eq=False)
class Series:
    """Daily demand of one (sku, location), oldest first, one value per consecutive day."""

    sku: str
    location: str
    start: date
    demand: np.ndarray
    stockout: np.ndarray


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
    *,
    source: str,
    trigger: Literal["schedule", "cli"],
    defaults: ReplenishDefaults | None = None,
    skus: Sequence[str] | None = None,
    publish: bool = True,
    apply_reorder_points: bool = False,
    report_dir: Path | None = None,
    today: date | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> RunResult:
    """Forecast every series, decide, publish and record; see the module docstring.

    Args:
        pool: connections with the stock schema on their search_path.
        source: CloudEvents source of the published events.
        trigger: recorded with the run; the scheduler only counts its own runs.
        defaults: settings for SKUs without a replenishment_settings row (from environment).
        skus: only these SKUs (all when empty).
        publish: stage ``stock.reorder.suggested.v1`` events (the outbox relay sends them).
        apply_reorder_points: set ``levels.reorder_point`` to each computed reorder point.
        report_dir: write ``report.md``, ``report.json`` and one PNG per series there.
        today: the first day not counted as history (default: today in UTC).
        progress: called with (done, total) after each forecast.
    """
    defaults = defaults or ReplenishDefaults()
    started_at = datetime.now(UTC)
    today = today or started_at.date()
    async with pool.acquire() as conn:
        series, skipped = await load_series(
            conn,
            today=today,
            history_days=defaults.history_days,
            min_history_days=defaults.min_history_days,
            skus=skus,
        )
        settings = await load_settings(
            conn, [(s.sku, s.location) for s in series], defaults.replenishment_settings()
        )
    run = RunResult(started_at, skipped=skipped)

    planned: list[tuple[Series, ForecastResult]] = []
    for done, one in enumerate(series, 1):
        key = (one.sku, one.location)
        try:
            forecast = await asyncio.to_thread(forecast_series, one, settings[key])
        except ValueError as exc:  # e.g. every day a stockout: nothing to learn from
            run.skipped.append((one.sku, one.location, str(exc)))
        else:
            planned.append((one, forecast))
        if progress:
            progress(done, len(series))

    async with unit_of_work(pool, source=source) as uow:
        # Lock as every level writer does (sku, location order): no deadlock, per-key order.
        rows = await uow.conn.fetch(
            "SELECT sku, location, on_hand - reserved - damaged - quality_control - safety_stock "
            "AS available, incoming, backordered, reorder_point FROM levels "
            "WHERE sku = ANY($1::text[]) ORDER BY sku, location FOR UPDATE",
            sorted({one.sku for one, _ in planned}),
        )
        levels = {(r["sku"], r["location"]): r for r in rows}
        for one, forecast in planned:
            key = (one.sku, one.location)
            level = levels.get(key)
            suggestion = suggest(
                one.sku,
                forecast,
                settings[key],
                available=level["available"] if level else 0,
                incoming=level["incoming"] if level else 0,
                backordered=level["backordered"] if level else 0,
                location=one.location,
            )
            previous = level["reorder_point"] if level else None
            run.results.append(SeriesResult(one, settings[key], forecast, suggestion, previous))
            if publish and suggestion.should_order:
                uow.publish(reorder_event(suggestion, started_at))
                run.published += 1
        if apply_reorder_points:
            changed = [
                r
                for r in run.results
                if math.ceil(r.suggestion.reorder_point) != r.previous_reorder_point
            ]
            # Like PUT /reorder-points: the point is a setting, not a movement.
            await uow.conn.execute(
                "INSERT INTO levels (sku, location, reorder_point) "
                "SELECT * FROM unnest($1::text[], $2::text[], $3::int[]) "
                "ON CONFLICT (sku, location) DO UPDATE SET reorder_point = EXCLUDED.reorder_point",
                [r.series.sku for r in changed],
                [r.series.location for r in changed],
                [math.ceil(r.suggestion.reorder_point) for r in changed],
            )
            run.reorder_points_set = len(changed)
        await uow.conn.execute(
            "INSERT INTO replenishment_runs (trigger, started_at, series, suggestions, "
            "published, reorder_points_set) VALUES ($1, $2, $3, $4, $5, $6)",
            trigger,
            started_at,
            len(run.results),
            len(run.suggestions),
            publish,
            run.reorder_points_set,
        )
    log.info(
        "replenishment run",
        trigger=trigger,
        series=len(run.results),
        suggestions=len(run.suggestions),
        published=run.published,
        reorder_points_set=run.reorder_points_set,
        skipped=len(run.skipped),
    )
    if report_dir is not None:
        run.report = await asyncio.to_thread(write_report, run, Path(report_dir))
    return run


# ----------------------------------------------------------------------------- report


def chart_name(sku: str, location: str) -> str:
    """A file name for the chart of (sku, location) that is safe on every file system."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", f"{sku}@{location}") + ".png"


def write_report(run: RunResult, directory: Path) -> Path:
    """Write ``report.json``, ``report.md`` and a PNG per series; returns the Markdown path."""
    directory.mkdir(parents=True, exist_ok=True)
    for result in run.results:
        suggestion = result.suggestion
        title = (
            f"{suggestion.sku} @ {suggestion.location}: "
            + (f"order {suggestion.order_qty}" if suggestion.should_order else "no order")
            + f" ({suggestion.model})"
        )
        path = directory / chart_name(result.series.sku, result.series.location)
        render_chart(result.forecast, suggestion, title=title, path=path)
    entries = [_entry(r) for r in run.results]
    (directory / "report.json").write_text(
        json.dumps(
            {
                "started_at": run.started_at.isoformat(),
                "series": len(run.results),
                "suggestions": len(run.suggestions),
                "published": run.published,
                "reorder_points_set": run.reorder_points_set,
                "items": entries,
                "skipped": [{"sku": s, "location": loc, "why": why} for s, loc, why in run.skipped],
            },
            indent=2,
        )
    )
    markdown = directory / "report.md"
    markdown.write_text(_markdown(run, entries))
    return markdown


def _entry(result: SeriesResult) -> dict[str, Any]:
    data = result.suggestion.to_event_data()
    baseline = result.baseline_wape
    data["reasoning"]["baseline_wape"] = None if baseline is None else f"{baseline:.3f}"
    data["reasoning"]["history_days"] = len(result.series.demand)
    data["reasoning"]["demand_class"] = result.forecast.demand_class
    data["previous_reorder_point"] = result.previous_reorder_point
    data["should_order"] = result.suggestion.should_order
    data["chart"] = chart_name(result.series.sku, result.series.location)
    return data


def _markdown(run: RunResult, entries: list[dict[str, Any]]) -> str:
    lines = [
        f"# Replenishment run {run.started_at:%Y-%m-%d %H:%M} UTC",
        "",
        f"{len(run.results)} series, {len(run.suggestions)} at or below the reorder point, "
        f"{run.published} suggestions published, {run.reorder_points_set} reorder points set.",
        "",
        "| sku | location | order | model | WAPE (naive) | MASE | forecast/day | lead-time "
        "demand | safety stock | reorder point (was) | position | days of cover | chart |",
        "| --- | --- | ---: | --- | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | --- |",
    ]
    # Suggestions first, then the rest, each by sku.
    ordered = sorted(entries, key=lambda e: (not e["should_order"], e["sku"], e["location"]))
    for e in ordered:
        why = e["reasoning"]
        lines.append(
            f"| {e['sku']} | {e['location']} | {e['order_qty'] or '-'} | {why['model']} | "
            f"{why['wape'] or '-'} ({why['baseline_wape'] or '-'}) | {why['mase'] or '-'} | "
            f"{why['forecast_daily']} | {why['lead_time_demand']} | {e['safety_stock']} | "
            f"{e['reorder_point']} ({_or_dash(e['previous_reorder_point'])}) | "
            f"{e['inventory_position']} | {why['days_of_cover'] or '-'} | "
            f"![chart]({e['chart']}) |"
        )
    if run.skipped:
        lines += ["", "## Skipped", ""]
        lines += [f"- {sku} @ {location}: {why}" for sku, location, why in run.skipped]
    lines += [
        "",
        "Reorder point = lead-time demand (forecast summed over the lead time) + safety stock "
        "(z for the service level x sigma of lead-time demand from the backtest error). "
        "Position = available + incoming - backordered; an order is suggested at or below the "
        "reorder point. WAPE/MASE are the chosen model's backtest errors; naive = the seasonal "
        "naive baseline.",
        "",
    ]
    return "\n".join(lines)


def _or_dash(value: Any) -> str:
    return "-" if value is None else str(value)


# ----------------------------------------------------------------------------- schedule


async def replenish_periodically(ctx: ServiceContext) -> None:
    """Background task of the stock service: run when the last scheduled run is older than
    ``STOCKFLOW_REPLENISH_INTERVAL_S``, on one instance at a time (an advisory lock)."""
    defaults = ReplenishDefaults()
    if defaults.interval_s <= 0:
        log.info("scheduled replenishment is off (STOCKFLOW_REPLENISH_INTERVAL_S=0)")
        return
    while True:
        try:
            await run_if_due(ctx, defaults)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 — a failed run must not end the schedule
            log.warning("scheduled replenishment failed; retrying later", error=repr(exc))
        await asyncio.sleep(min(defaults.interval_s, CHECK_EVERY_S))


async def run_if_due(ctx: ServiceContext, defaults: ReplenishDefaults) -> RunResult | None:
    """Run once if this instance leads and the interval has passed; None otherwise."""
    lock = f"replenish:{ctx.settings.schema_name}"
    async with ctx.pool.acquire() as conn:
        if not await conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", lock):
            return None  # another instance is running it
        try:
            last = await conn.fetchval(
                "SELECT max(finished_at) FROM replenishment_runs WHERE trigger = 'schedule'"
            )
            if last is not None and (datetime.now(UTC) - last).total_seconds() < (
                defaults.interval_s
            ):
                return None
            return await run_replenishment(
                ctx.pool,
                source=ctx.source,
                trigger="schedule",
                defaults=defaults,
                apply_reorder_points=defaults.apply_reorder_points,
                report_dir=Path(defaults.report_dir) if defaults.report_dir else None,
            )
        finally:
            await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", lock)
