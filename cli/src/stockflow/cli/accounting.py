"""`stockflow accounting ...` commands: reports, the journal and period close over the HTTP API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from stockflow.cli.common import auth_headers, service_url

app = typer.Typer(no_args_is_help=True)
console = Console()
TIMEOUT = 30.0


def _get(path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    params = {k: v for k, v in (params or {}).items() if v is not None}
    try:
        response = httpx.get(
            f"{service_url('accounting')}{path}",
            params=params,
            headers=auth_headers(),
            timeout=TIMEOUT,
        )
    except httpx.HTTPError as exc:
        _fail(f"accounting service unreachable: {exc}")
    return _checked(response)


def _checked(response: httpx.Response) -> dict[str, Any]:
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        _fail(f"{response.status_code}: {detail}")
    return response.json()


def _fail(message: str) -> None:
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(1)


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    table = Table(title=title)
    for column in columns:
        numeric = column in NUMERIC
        table.add_column(column, justify="right" if numeric else "left")
    for row in rows:
        table.add_row(*("" if value is None else str(value) for value in row))
    console.print(table)


NUMERIC = {
    "debit",
    "credit",
    "balance",
    "quantity",
    "value",
    "unit cost",
    "ledger value",
    "revenue",
    "returns",
    "COGS",
    "margin",
    "margin %",
    "shrinkage",
    "profit",
}


@app.command("trial-balance")
def trial_balance(
    period: str | None = typer.Option(None, help="Only entries of this period (YYYY-MM)."),
) -> None:
    """Debits, credits and balance per account and currency."""
    data = _get("/reports/trial-balance", {"period": period})
    _table(
        f"Trial balance{' ' + period if period else ''}",
        ["currency", "account", "debit", "credit", "balance"],
        [
            [r["currency"], r["account"], r["debit"], r["credit"], r["balance"]]
            for r in data["rows"]
        ],
    )
    for currency, sums in data["totals"].items():
        mark = "[green]balanced[/green]" if sums["balanced"] else "[red]NOT BALANCED[/red]"
        console.print(f"{currency}: debits {sums['debit']}, credits {sums['credit']} — {mark}")


@app.command()
def valuation(
    as_of: str | None = typer.Option(
        None, "--as-of", help="RFC 3339 time, e.g. 2024-05-31T23:59:59Z."
    ),
    sku: str | None = typer.Option(None, help="One SKU only."),
) -> None:
    """Inventory value per SKU: now (open cost layers) or as of a moment (from the ledger)."""
    data = _get("/reports/valuation", {"as_of": as_of, "sku": sku})
    if as_of:
        _table(
            f"Inventory value as of {data['as_of']}",
            ["sku", "currency", "value"],
            [[r["sku"], r["currency"], r["value"]] for r in data["rows"]],
        )
        return
    _table(
        "Inventory valuation",
        ["sku", "method", "currency", "quantity", "unit cost", "value", "ledger value", "ok"],
        [
            [
                r["sku"],
                r["method"],
                r["currency"],
                r["quantity"],
                r["unit_cost"],
                r["value"],
                r["ledger_value"],
                "yes" if r["reconciled"] else "NO",
            ]
            for r in data["rows"]
        ],
    )


@app.command()
def margin(
    by: str = typer.Option("sku", help="sku, period or order."),
    period: str | None = typer.Option(None, help="Only this period (YYYY-MM)."),
    sku: str | None = typer.Option(None),
    order: str | None = typer.Option(None, "--order", help="Only this order id."),
) -> None:
    """Revenue, COGS, gross margin, shipping and profit per SKU, period or order."""
    if by not in ("sku", "period", "order"):
        _fail("--by takes sku, period or order")
    data = _get(
        "/reports/profitability", {"by": by, "period": period, "sku": sku, "order_id": order}
    )
    _table(
        f"Profitability by {by}",
        [
            *(by, "currency", "revenue", "returns", "COGS", "margin", "margin %"),
            *("shrinkage", "shipping", "profit"),
        ],
        [
            [
                r[by],
                r["currency"],
                r["revenue"],
                r["sales_returns"],
                r["cost_of_goods_sold"],
                r["gross_margin"],
                r["gross_margin_pct"],
                r["shrinkage"],
                r["shipping"],
                r["profit"],
            ]
            for r in data["rows"]
        ],
    )


@app.command()
def journal(
    sku: str | None = typer.Option(None),
    order: str | None = typer.Option(None, "--order", help="Order id."),
    period: str | None = typer.Option(None, help="YYYY-MM."),
    account: str | None = typer.Option(None, help="e.g. inventory, revenue."),
    limit: int = typer.Option(100, help="Entries to show (the CSV export takes all)."),
    csv_file: Path | None = typer.Option(None, "--csv", help="Write the journal as CSV here."),
) -> None:
    """Journal entries with filters; --csv FILE exports every matching line as CSV."""
    params = {"sku": sku, "order_id": order, "period": period, "account": account}
    params = {k: v for k, v in params.items() if v is not None}
    if csv_file is not None:
        url = f"{service_url('accounting')}/journal.csv"
        rows = 0
        try:
            with httpx.stream(
                "GET", url, params=params, headers=auth_headers(), timeout=TIMEOUT
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    _checked(response)
                with csv_file.open("w", encoding="utf-8", newline="") as out:
                    for chunk in response.iter_text():
                        out.write(chunk)
                        rows += chunk.count("\n")
        except httpx.HTTPError as exc:
            _fail(f"accounting service unreachable: {exc}")
        console.print(f"wrote {max(rows - 1, 0)} journal line(s) to {csv_file}")
        return
    data = _get("/journal", {**params, "limit": limit})
    table_rows = []
    for entry in data["entries"]:
        for n, line in enumerate(entry["lines"]):
            first = n == 0
            table_rows.append(
                [
                    entry["posted_at"][:19] if first else "",
                    entry["cause"]["type"] if first else "",
                    line["account"],
                    line.get("sku"),
                    line.get("order_id"),
                    line["debit"] if line["debit"].strip("0.") else "",
                    line["credit"] if line["credit"].strip("0.") else "",
                    entry["currency"] if first else "",
                    entry.get("note", "") if first else "",
                ]
            )
    _table(
        "Journal",
        ["posted", "cause", "account", "sku", "order", "debit", "credit", "currency", "note"],
        table_rows,
    )
    if data["next_after"] is not None:
        console.print(f"more entries: use the API with after={data['next_after']}")


@app.command("close-period")
def close_period(period: str = typer.Argument(..., help="YYYY-MM")) -> None:
    """Close a period: later events dated in it post into the first open period."""
    try:
        response = httpx.post(
            f"{service_url('accounting')}/periods/{period}/close",
            headers=auth_headers(),
            timeout=TIMEOUT,
        )
    except httpx.HTTPError as exc:
        _fail(f"accounting service unreachable: {exc}")
    body = _checked(response)
    state = "closed" if response.status_code == 201 else "was already closed"
    console.print(f"period {body['period']} {state} (at {body['closed_at']})")
