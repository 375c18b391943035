"""`stockflow stock ...` commands: levels and the movement ledger of a SKU."""

from __future__ import annotations

import httpx
import typer
from rich.console import Console
from rich.table import Table

from stockflow.cli.common import service_url

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
def show(sku: str, movements: int = typer.Option(10, help="How many latest movements to list.")):
    """Levels of SKU per location with totals, and its latest movements."""
    response = httpx.get(f"{service_url('stock')}/levels/{sku}", timeout=10)
    response.raise_for_status()
    body = response.json()
    if not body["locations"]:
        console.print(f"no stock recorded for {sku}")
        raise typer.Exit(1)
    table = Table(title=f"{sku}")
    table.add_column("location")
    for column in COLUMNS:
        table.add_column(column.replace("_", " "), justify="right")
    for level in body["locations"]:
        table.add_row(level["location"], *(str(level[c]) for c in COLUMNS))
    table.add_row("[bold]total", *(f"[bold]{body['totals'][c]}" for c in COLUMNS))
    console.print(table)
    if movements:
        _print_movements(sku, movements)


@app.command("movements")
def list_movements(sku: str, limit: int = typer.Option(50, help="How many, newest last.")):
    """The ledger of SKU: every change of every level, with its cause."""
    _print_movements(sku, limit)


def _print_movements(sku: str, limit: int) -> None:
    items: list[dict] = []
    after = 0
    while True:  # the API pages oldest first; keep the newest `limit`
        page = httpx.get(
            f"{service_url('stock')}/movements",
            params={"sku": sku, "after": after, "limit": 1000},
            timeout=10,
        ).json()
        items = (items + page["items"])[-limit:]
        if page["next_after"] is None:
            break
        after = page["next_after"]
    table = Table(title=f"latest movements of {sku}")
    for column in ("id", "when", "location", "kind", "qty", "order", "reference", "cause"):
        table.add_column(column)
    for m in items:
        table.add_row(
            str(m["id"]),
            str(m["occurred_at"])[:19],
            m["location"],
            m["kind"],
            str(m["quantity"]),
            m["order_id"] or "",
            f"{m['reference_type'] or ''} {m['reference_id'] or ''}".strip(),
            m["cause_event_id"][:12],
        )
    console.print(table)
