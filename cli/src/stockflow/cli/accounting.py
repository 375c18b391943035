"""`stockflow accounting ...` commands: reports, the journal and period close over the HTTP API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from stockflow.cli.common import (
    CliError,
    JsonOption,
    auth_headers,
    call,
    get,
    plain,
    print_json,
    refusal,
    service_url,
)

app = typer.Typer(no_args_is_help=True)
console = Console()
TIMEOUT = 30.0


def _get(path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = get("accounting", path, params)
    return data


def _fail(message: str) -> None:
    raise CliError(message)


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    table = Table(title=plain(title))
    for column in columns:
        numeric = column in NUMERIC
        table.add_column(column, justify="right" if numeric else "left")
    for row in rows:
        table.add_row(*(plain(value) for value in row))
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
    as_json: JsonOption = False,
) -> None:
    """Debits, credits and balance per account and currency."""
    data = _get("/reports/trial-balance", {"period": period})
    if as_json:
        print_json(data)
        return
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
    as_json: JsonOption = False,
) -> None:
    """Inventory value per SKU: now (open cost layers) or as of a moment (from the ledger)."""
    data = _get("/reports/valuation", {"as_of": as_of, "sku": sku})
    if as_json:
        print_json(data)
        return
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
    as_json: JsonOption = False,
) -> None:
    """Revenue, COGS, gross margin, shipping and profit per SKU, period or order."""
    if by not in ("sku", "period", "order"):
        _fail("--by takes sku, period or order")
    data = _get(
        "/reports/profitability", {"by": by, "period": period, "sku": sku, "order_id": order}
    )
    if as_json:
        print_json(data)
        return
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
def journal(  # noqa: PLR0913 -- typer: one parameter per command-line option
    sku: str | None = typer.Option(None),
    order: str | None = typer.Option(None, "--order", help="Order id."),
    period: str | None = typer.Option(None, help="YYYY-MM."),
    account: str | None = typer.Option(None, help="e.g. inventory, revenue."),
    limit: int = typer.Option(100, help="Entries to show (the CSV export takes all)."),
    csv_file: Path | None = typer.Option(None, "--csv", help="Write the journal as CSV here."),
    as_json: JsonOption = False,
) -> None:
    """Journal entries with filters; --csv FILE exports every matching line as CSV."""
    params = {"sku": sku, "order_id": order, "period": period, "account": account}
    params = {k: v for k, v in params.items() if v is not None}
    if csv_file is not None:
        _export_journal(csv_file, params)
        return
    data = _get("/journal", {**params, "limit": limit})
    if as_json:
        print_json(data)
        return
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
        console.print(f"more entries: use the API with after={plain(data['next_after'])}")


def _export_journal(csv_file: Path, params: dict[str, Any]) -> None:
    rows = 0
    with httpx.stream(
        "GET",
        f"{service_url('accounting')}/journal.csv",
        params=params,
        headers=auth_headers(),
        timeout=TIMEOUT,
    ) as response:
        if response.status_code >= 400:
            response.read()
            raise CliError(refusal("accounting", response))
        with csv_file.open("w", encoding="utf-8", newline="") as out:
            for chunk in response.iter_text():
                out.write(chunk)
                rows += chunk.count("\n")
    console.print(f"wrote {max(rows - 1, 0)} journal line(s) to {plain(csv_file)}")


@app.command("close-period")
def close_period(period: str = typer.Argument(..., help="YYYY-MM")) -> None:
    """Close a period: later events dated in it post into the first open period."""
    response = call("accounting", "POST", f"/periods/{period}/close", timeout=TIMEOUT)
    body = response.json()
    state = "closed" if response.status_code == 201 else "was already closed"
    console.print(f"period {plain(body['period'])} {state} (at {body['closed_at']})")
