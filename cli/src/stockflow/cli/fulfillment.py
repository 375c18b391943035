"""`stockflow fulfillment ...` commands: the warehouse's work over the fulfillment HTTP API."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import httpx
import typer
from rich.console import Console
from rich.table import Table

from stockflow.cli.common import CliError, JsonOption, call, plain, print_json

app = typer.Typer(no_args_is_help=True)
returns = typer.Typer(no_args_is_help=True)
app.add_typer(returns, name="return", help="Returns (RMA): authorize, receive, inspect.")
console = Console()
TIMEOUT = 30.0


def _call(method: str, path: str, **kwargs: Any) -> httpx.Response:
    headers = {}
    if method != "GET":
        # One key per command run: a retry inside httpx cannot apply a step twice.
        headers["Idempotency-Key"] = str(uuid.uuid4())
    return call("fulfillment", method, path, headers=headers, timeout=TIMEOUT, **kwargs)


def _fail(message: Any) -> NoReturn:
    raise CliError(str(message))


def _show(data: dict[str, Any], printer: Callable[[dict[str, Any]], None], as_json: bool) -> None:
    if as_json:
        print_json(data)
    else:
        printer(data)


def _pairs(values: list[str], what: str) -> dict[str, int]:
    """KEY=N options into a dict."""
    result: dict[str, int] = {}
    for value in values:
        key, _, number = value.partition("=")
        if not key or not number.isdigit():
            _fail(f"{what} must look like KEY=N, got {value!r}")
        result[key] = result.get(key, 0) + int(number)
    return result


def _print_pick_list(pick_list: dict[str, Any]) -> None:
    table = Table(
        title=f"pick list {plain(pick_list['pick_list_id'])} at {plain(pick_list['location'])}"
    )
    for column in ("step", "bin", "sku", "qty", "for shipments"):
        table.add_column(column, justify="right" if column in {"step", "qty"} else "left")
    for number, line in enumerate(pick_list["lines"], start=1):
        shipments = ", ".join(f"{a['shipment_id']} ×{a['quantity']}" for a in line["assignments"])
        table.add_row(
            str(number),
            plain(line["bin"] or "?"),
            plain(line["sku"]),
            str(line["quantity"]),
            plain(shipments),
        )
    console.print(table)


def _print_shipment(shipment: dict[str, Any]) -> None:
    console.print(
        f"[bold]{plain(shipment['shipment_id'])}[/bold] ({plain(shipment['order_id'])}) "
        f"at {plain(shipment['location'])}: [cyan]{plain(shipment['status'])}[/cyan]"
    )
    for line in shipment["lines"]:
        console.print(f"  {plain(line['line_id'])}  {plain(line['sku'])}  ×{line['quantity']}")
    for number, package in enumerate(shipment["packages"], start=1):
        size = package["dimensions"]
        console.print(
            f"  package {number}: {package['weight_grams']} g, "
            f"{size['length_mm']}×{size['width_mm']}×{size['height_mm']} mm"
        )
    if shipment.get("label"):
        label = shipment["label"]
        console.print(
            f"  {plain(label['carrier'])} {plain(label['service_level'])}: "
            f"[bold]{plain(label['tracking_number'])}[/bold]"
        )


@app.command()
def work(
    location: str = typer.Option(..., help="Location code, e.g. WH1."), as_json: JsonOption = False
) -> None:
    """Open shipments at a location, by status."""
    data = _call("GET", "/work", params={"location": location}).json()
    if as_json:
        print_json(data)
        return
    table = Table(title=f"open work at {plain(location)}")
    for column in ("status", "shipment", "order", "lines", "pick list"):
        table.add_column(column)
    for status, shipments in data["by_status"].items():
        for shipment in shipments:
            lines = ", ".join(f"{line['sku']} ×{line['quantity']}" for line in shipment["lines"])
            table.add_row(
                plain(status),
                plain(shipment["shipment_id"]),
                plain(shipment["order_id"]),
                plain(lines),
                plain(shipment["pick_list_id"]),
            )
    console.print(table)
    counts = ", ".join(f"{status} {count}" for status, count in data["counts"].items() if count)
    console.print(counts or "nothing to do")


@app.command()
def pick(
    location: str = typer.Option(..., help="Location code."),
    max_shipments: int = typer.Option(20, "--max", help="Most shipments in one walk."),
    shipment: list[str] = typer.Option([], help="Pick these shipments (repeatable)."),
    as_json: JsonOption = False,
) -> None:
    """Batch waiting shipments into one pick list, lines in bin-walk order."""
    body: dict[str, Any] = {"location": location, "max_shipments": max_shipments}
    if shipment:
        body["shipment_ids"] = shipment
    _show(_call("POST", "/pick-lists", json=body).json(), _print_pick_list, as_json)


@app.command("pick-list")
def pick_list(pick_list_id: str, as_json: JsonOption = False) -> None:
    """Show a pick list."""
    _show(_call("GET", f"/pick-lists/{pick_list_id}").json(), _print_pick_list, as_json)


@app.command("confirm-pick")
def confirm_pick(
    pick_list_id: str,
    found: list[str] = typer.Option(
        [], help="SKU=N units found (repeatable); skus not named were found in full."
    ),
    as_json: JsonOption = False,
) -> None:
    """Confirm what was found; a short bin raises a stock discrepancy and holds its shipment."""
    listed = _call("GET", f"/pick-lists/{pick_list_id}").json()
    counts = {line["sku"]: line["quantity"] for line in listed["lines"]}
    counts.update(_pairs(found, "--found"))
    result = _call("POST", f"/pick-lists/{pick_list_id}/confirm", json={"found": counts}).json()
    if as_json:
        print_json(result)
        return
    console.print(f"picked: {plain(', '.join(result['picked'])) or '-'}")
    if result["on_hold"]:
        console.print(f"[yellow]on hold (short):[/yellow] {plain(', '.join(result['on_hold']))}")
    for d in result["discrepancies"]:
        console.print(
            f"[yellow]discrepancy:[/yellow] {plain(d['sku'])} "
            f"in {plain(d['bin'] or 'unknown bin')}: "
            f"expected {d['expected']}, found {d['found']}"
        )


@app.command()
def pack(
    shipment: str,
    weight: int | None = typer.Option(None, help="Measured weight in grams."),
    size: str | None = typer.Option(None, help="Measured size LxWxH in millimetres."),
    as_json: JsonOption = False,
) -> None:
    """Pack a picked shipment (one package; catalog weights and sizes unless measured)."""
    package: dict[str, Any] = {}
    if weight is not None:
        package["weight_grams"] = weight
    if size is not None:
        parts = size.lower().split("x")
        if len(parts) != 3 or not all(p.isdigit() for p in parts):
            _fail(f"--size must look like 300x200x100, got {size!r}")
        package["dimensions_mm"] = dict(
            zip(("length", "width", "height"), map(int, parts), strict=True)
        )
    body = {"packages": [package]} if package else {}
    _show(_call("POST", f"/shipments/{shipment}/pack", json=body).json(), _print_shipment, as_json)


@app.command()
def ship(shipment: str, as_json: JsonOption = False) -> None:
    """Buy the label from the cheapest fitting carrier and mark the shipment shipped."""
    _show(_call("POST", f"/shipments/{shipment}/ship").json(), _print_shipment, as_json)


@app.command()
def label(shipment: str, out: Path = typer.Option(..., help="Where to write the PDF.")) -> None:
    """Download a shipment's 4x6-inch label PDF."""
    out.write_bytes(_call("GET", f"/shipments/{shipment}/label.pdf").content)
    console.print(f"label written to {out}")


@app.command()
def show(shipment: str, as_json: JsonOption = False) -> None:
    """A shipment, its packages, label and tracking history."""
    data = _call("GET", f"/shipments/{shipment}").json()
    if as_json:
        print_json(data)
        return
    _print_shipment(data)
    for scan in data["tracking"]:
        console.print(f"  {scan['occurred_at']}  {plain(scan['status'])}  {plain(scan['detail'])}")


@app.command()
def cancel(
    shipment: str,
    reason: str = typer.Option("cancelled by the warehouse"),
    as_json: JsonOption = False,
) -> None:
    """Cancel a shipment that has not left yet."""
    _show(
        _call("POST", f"/shipments/{shipment}/cancel", json={"reason": reason}).json(),
        _print_shipment,
        as_json,
    )


@app.command()
def track(
    tracking_number: str,
    status: str = typer.Option(..., help="in_transit, delivered or exception."),
    detail: str = typer.Option("", help="What the carrier said."),
    as_json: JsonOption = False,
) -> None:
    """Feed a carrier scan (what the carrier webhook does)."""
    body = {"tracking_number": tracking_number, "status": status, "detail": detail}
    _show(_call("POST", "/tracking", json=body).json(), _print_shipment, as_json)


@app.command("set-bin")
def set_bin(location: str, sku: str, bin_code: str) -> None:
    """Say where a sku lives (sku '*' sets the location's default bin)."""
    _call("PUT", "/bins", json={"location": location, "sku": sku, "bin": bin_code})
    console.print(f"{plain(sku)} at {plain(location)}: bin {plain(bin_code)}")


def _print_return(rma: dict[str, Any]) -> None:
    console.print(
        f"[bold]{plain(rma['rma_id'])}[/bold] for {plain(rma['order_id'])}: "
        f"[cyan]{plain(rma['status'])}[/cyan]"
        + (f" at {plain(rma['location'])}" if rma["location"] else "")
    )
    for line in rma["lines"]:
        console.print(f"  {plain(line['line_id'])}  {plain(line['sku'])}  ×{line['quantity']}")
    for inspection in rma["inspections"]:
        console.print(
            f"  {plain(inspection['line_id'])}: {inspection['quantity']} "
            f"{plain(inspection['condition'])}"
        )


@returns.command("authorize")
def authorize(
    order_id: str,
    line: list[str] = typer.Option(..., help="LINE_ID=N units to return (repeatable)."),
    reason: str = typer.Option("customer return"),
    as_json: JsonOption = False,
) -> None:
    """Authorize returning shipped units of an order."""
    lines = [{"line_id": k, "quantity": v} for k, v in _pairs(line, "--line").items()]
    body = {"order_id": order_id, "lines": lines, "reason": reason}
    _show(_call("POST", "/returns", json=body).json(), _print_return, as_json)


@returns.command("receive")
def receive(
    rma_id: str,
    location: str | None = typer.Option(None, help="Default: where the goods shipped from."),
    line: list[str] = typer.Option([], help="LINE_ID=N units that arrived; default all."),
    as_json: JsonOption = False,
) -> None:
    """The returned parcel arrived."""
    body: dict[str, Any] = {"location": location}
    if line:
        body["quantities"] = _pairs(line, "--line")
    _show(_call("POST", f"/returns/{rma_id}/receive", json=body).json(), _print_return, as_json)


@returns.command("inspect")
def inspect(
    rma_id: str,
    restock: list[str] = typer.Option([], help="LINE_ID=N units back on the shelf."),
    write_off: list[str] = typer.Option([], help="LINE_ID=N units written off."),
    as_json: JsonOption = False,
) -> None:
    """Judge every received unit: restock or write off."""
    lines = [
        {"line_id": k, "quantity": v, "condition": condition}
        for condition, given in (("restock", restock), ("write_off", write_off))
        for k, v in _pairs(given, f"--{condition.replace('_', '-')}").items()
    ]
    _show(
        _call("POST", f"/returns/{rma_id}/inspect", json={"lines": lines}).json(),
        _print_return,
        as_json,
    )
