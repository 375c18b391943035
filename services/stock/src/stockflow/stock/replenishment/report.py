"""The report of a replenishment run: ``report.json``, ``report.md`` and one PNG chart per
(sku, location), written after the run's transaction committed."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stockflow.stock.replenishment.charts import render_chart

if TYPE_CHECKING:
    from stockflow.stock.replenishment.run import RunResult, SeriesResult


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
