"""`stockflow stock ...` commands: levels and the movement ledger of a SKU, replenishment."""

from __future__ import annotations

import asyncio
import math
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from stockflow.cli.common import JsonOption, get, plain, print_json, setting

app = typer.Typer(no_args_is_help=True)
console = Console()
COLUMNS = (
    "on_hand",
    "reserved",
    "available",
    "backordered",
    "incoming",
    "damaged",
    "quality_control",
    "safety_stock",
)


@app.command()
def show(
    sku: str,
    movements: int = typer.Option(10, help="How many latest movements to list."),
    as_json: JsonOption = False,
):
    """Levels of SKU per location with totals, and its latest movements."""
    body = get("stock", f"/levels/{sku}")
    latest = _latest_movements(sku, movements) if movements else []
    if as_json:
        print_json(body | {"movements": latest})
        return
    if not body["locations"]:
        console.print(f"no stock recorded for {plain(sku)}")
        raise typer.Exit(1)
    table = Table(title=plain(sku))
    table.add_column("location")
    for column in COLUMNS:
        table.add_column(column.replace("_", " "), justify="right")
    for level in body["locations"]:
        table.add_row(plain(level["location"]), *(str(level[c]) for c in COLUMNS))
    table.add_row("[bold]total", *(f"[bold]{body['totals'][c]}" for c in COLUMNS))
    console.print(table)
    if movements:
        _print_movements(sku, latest)


@app.command("movements")
def list_movements(
    sku: str,
    limit: int = typer.Option(50, help="How many, newest last."),
    as_json: JsonOption = False,
):
    """The ledger of SKU: every change of every level, with its cause."""
    latest = _latest_movements(sku, limit)
    if as_json:
        print_json(latest)
        return
    _print_movements(sku, latest)


def _latest_movements(sku: str, limit: int) -> list[dict]:
    items: list[dict] = []
    after = 0
    while True:  # the API pages oldest first; keep the newest `limit`
        page = get("stock", "/movements", {"sku": sku, "after": after, "limit": 1000})
        items = (items + page["items"])[-limit:]
        if page["next_after"] is None:
            return items
        after = page["next_after"]


def _print_movements(sku: str, items: list[dict]) -> None:
    table = Table(title=f"latest movements of {plain(sku)}")
    for column in ("id", "when", "location", "kind", "qty", "order", "reference", "cause"):
        table.add_column(column)
    for m in items:
        table.add_row(
            str(m["id"]),
            str(m["occurred_at"])[:19],
            plain(m["location"]),
            plain(m["kind"]),
            str(m["quantity"]),
            plain(m["order_id"]),
            plain(f"{m['reference_type'] or ''} {m['reference_id'] or ''}".strip()),
            plain(m["cause_event_id"][:12]),
        )
    console.print(table)


# ----------------------------------------------------------------------------- replenishment

# The proof's tolerance: fill rate may fall this far below the target (as in test_simulation).
FILL_TOLERANCE = 0.02


@app.command()
def replenish(  # noqa: PLR0913 -- typer: one parameter per command-line option
    sku: Annotated[
        list[str] | None, typer.Option("--sku", help="Only this SKU (repeatable).")
    ] = None,
    publish: Annotated[
        bool,
        typer.Option(
            "--publish/--no-publish",
            help="Stage stock.reorder.suggested.v1 in the stock outbox (its relay sends them).",
        ),
    ] = True,
    apply_reorder_points: Annotated[
        bool,
        typer.Option("--apply-reorder-points", help="Set levels.reorder_point to the new points."),
    ] = False,
    report_dir: Annotated[
        Path | None,
        typer.Option(help="Write report.md, report.json and a PNG chart per SKU and location."),
    ] = None,
    show_all: Annotated[
        bool, typer.Option("--all", help="List every SKU and location, not only suggestions.")
    ] = False,
    simulate: Annotated[
        bool,
        typer.Option(
            "--simulate",
            help="Print the proof on synthetic histories instead (backtest WAPE/MASE against "
            "the naive baseline; a simulated year against a naive min/max policy).",
        ),
    ] = False,
    seed: Annotated[int, typer.Option(help="--simulate: the synthetic histories' seed.")] = 7,
    wide: Annotated[
        bool, typer.Option("--wide", help="Every column (the forecast's scores and reasoning).")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Forecast demand per SKU and location, suggest reorders with their reasoning.

    Runs the stock service's scheduled replenishment job against the database
    (DATABASE_URL): the forecast per (sku, location), safety stock, reorder point and the
    order quantity when the inventory position is at or below it.
    """
    if simulate:
        _print_proof(seed)
        return
    from stockflow.stock.replenishment.run import RunRequest

    request = RunRequest("cli", sku or None, publish, apply_reorder_points, report_dir)
    result = asyncio.run(_run_replenishment(request, show_progress=not as_json))
    shown = sorted(
        result.results if show_all else result.suggestions,
        key=lambda r: (r.series.sku, r.series.location),
    )
    if as_json:
        print_json(
            {
                "results": [_replenishment_json(r) for r in shown],
                "published": result.published,
                "reorder_points_set": result.reorder_points_set,
                "skipped": [
                    {"sku": s, "location": loc, "why": why} for s, loc, why in result.skipped
                ],
                "report": result.report,
            }
        )
        return
    title = (
        f"replenishment: {len(result.suggestions)} of {len(result.results)} "
        "SKU/location pairs at or below their reorder point"
    )
    console.print(replenishment_table(title, [_replenishment_cells(r) for r in shown], wide=wide))
    console.print(
        f"published {result.published} suggestion(s)"
        + (" to the stock outbox (the running stock service sends them)" if publish else "")
        + f"; reorder points set: {result.reorder_points_set}; skipped: {len(result.skipped)}"
    )
    for skipped_sku, location, why in result.skipped:
        console.print(f"  skipped {plain(skipped_sku)} @ {plain(location)}: {plain(why)}")
    if result.report:
        console.print(f"report: {plain(result.report)}")


async def _run_replenishment(request: Any, *, show_progress: bool) -> Any:
    from stockflow.runtime.db import create_pool
    from stockflow.runtime.settings import SCHEMAS
    from stockflow.stock.replenishment.run import run_replenishment

    pool = await create_pool(
        setting("DATABASE_URL"), SCHEMAS["stock"], application_name="stockflow-cli"
    )
    try:
        with Progress(
            TextColumn("forecasting"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            disable=not show_progress,
        ) as bar:
            task = bar.add_task("forecasting", total=None)
            return await run_replenishment(
                pool,
                request,
                source="stockflow/stock",
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
    finally:
        await pool.close()


# (header, shown without --wide); the narrow set fits 80 columns with a 24-character SKU.
REPLENISHMENT_COLUMNS = (
    ("sku", True),
    ("location", True),
    ("order", True),
    ("model", False),
    ("WAPE (naive)", False),
    ("MASE", False),
    ("per day", True),
    ("lead-time demand", False),
    ("safety stock", False),
    ("reorder (was)", True),
    ("position", True),
    ("cover days", True),
)
_TEXT_COLUMNS = {"sku", "location", "model"}


def replenishment_table(title: str, rows: list[dict[str, str]], *, wide: bool) -> Table:
    """The suggestions, one line each: when too narrow, SKU and location shorten with `…`,
    numbers never."""
    table = Table(
        title=title, box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 1, 0, 0), pad_edge=False
    )
    for name in (name for name, narrow in REPLENISHMENT_COLUMNS if wide or narrow):
        text = name in _TEXT_COLUMNS
        table.add_column(
            name, justify="left" if text else "right", no_wrap=not text, overflow="ellipsis"
        )
    for row in rows:
        table.add_row(*(row[column.header] for column in table.columns))  # type: ignore[index]
    return table


def _replenishment_cells(r: Any) -> dict[str, str]:
    s = r.suggestion
    return {
        "sku": plain(s.sku),
        "location": plain(s.location),
        "order": str(s.order_qty) if s.should_order else "-",
        "model": plain(s.model),
        "WAPE (naive)": f"{_fmt(s.wape)} ({_fmt(r.baseline_wape)})",
        "MASE": _fmt(s.mase, 2),
        "per day": f"{s.forecast_daily:.2f}",
        "lead-time demand": f"{s.lead_time_demand:.1f}",
        "safety stock": f"{s.safety_stock:.1f}",
        "reorder (was)": f"{math.ceil(s.reorder_point)} ({_fmt(r.previous_reorder_point, 0)})",
        "position": f"{s.inventory_position:.0f}",
        "cover days": _fmt(s.days_of_cover, 1),
    }


def _replenishment_json(r: Any) -> dict[str, Any]:
    return r.suggestion.to_event_data() | {
        "should_order": r.suggestion.should_order,
        "previous_reorder_point": r.previous_reorder_point,
        "baseline_wape": r.baseline_wape,
    }


def _fmt(value: float | None, places: int = 3) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.{places}f}"


def _print_proof(seed: int) -> None:
    """The evidence table of replenishment.evidence, and a verdict per scenario."""
    from stockflow.stock.replenishment.evidence import build_table, evaluate_scenario
    from stockflow.stock.replenishment.settings import ReplenishmentSettings
    from stockflow.stock.replenishment.simulation import SCENARIOS

    kinds: tuple[Literal["cycle", "fill_rate"], ...] = ("cycle", "fill_rate")
    runs = [(name, kind) for name in SCENARIOS for kind in kinds]
    results = []
    with Progress(
        TextColumn("simulating {task.description}"), BarColumn(), MofNCompleteColumn()
    ) as bar:
        task = bar.add_task("", total=len(runs))
        for name, kind in runs:
            bar.update(task, description=f"{name} ({kind})")
            settings = replace(ReplenishmentSettings(), service_level_type=kind)
            results.append(evaluate_scenario(name, seed, settings))
            bar.advance(task)
    wide = Console(width=200)
    wide.print(build_table(results))
    verdict = Table(
        title=f"verdict: fill >= target - {FILL_TOLERANCE:.0%}, stock and cost against min/max"
    )
    for column in (
        "scenario",
        "target",
        "WAPE vs naive",
        "fill",
        "avg stock vs min/max",
        "cost/yr vs min/max",
    ):
        verdict.add_column(column)
    for r in results:
        target = r.settings.service_level
        fill_ok = r.ours.fill_rate >= target - FILL_TOLERANCE
        verdict.add_row(
            r.scenario,
            f"{r.settings.service_level_type} {target:.0%}",
            _mark(r.wape < r.baseline_wape, f"{r.wape:.3f} vs {r.baseline_wape:.3f}")
            if r.forecast.model != "naive_seasonal"
            else f"naive chosen ({r.wape:.3f})",
            _mark(fill_ok, f"{r.ours.fill_rate:.1%}"),
            _mark(
                r.ours.average_on_hand < r.naive.average_on_hand,
                f"{r.ours.average_on_hand:.1f} vs {r.naive.average_on_hand:.1f}",
            ),
            _mark(
                r.annual_cost(r.ours) < r.annual_cost(r.naive),
                f"{r.annual_cost(r.ours):.0f} vs {r.annual_cost(r.naive):.0f}",
            ),
        )
    wide.print(verdict)
    wide.print(
        "min/max = reorder at 14, fill to 60 days of the trailing 28-day mean; lost sales; "
        "lead time 7 d; intermittent WAPE/MASE on weekly totals. A slow mover's EOQ lot is capped "
        "at max_cover_days (30) of demand: less stock than min/max for more, smaller orders "
        "(uncapped EOQ holds more stock at a lower total cost)."
    )


def _mark(ok: bool, text: str) -> str:
    return f"[green]✓[/] {text}" if ok else f"[red]✗[/] {text}"
