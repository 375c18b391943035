"""`stockflow order ...` commands: one order with its whole saga timeline, lists and counts."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from stockflow.cli.common import JsonOption, get, plain, print_json

app = typer.Typer(no_args_is_help=True)


def _get(path: str, params: dict[str, Any] | None = None) -> Any:
    return get("order", path, params)


@app.command()
def show(order_id: str, as_json: JsonOption = False) -> None:
    """An order: header, lines, allocations, shipments and the saga timeline."""
    order = _get(f"/orders/{order_id}")
    if as_json:
        print_json(order)
        return
    render_order(Console(), order)


@app.command("list")
def list_orders(
    state: Annotated[str | None, typer.Option(help="Only orders in this state.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    after: Annotated[str | None, typer.Option(help="Start after this order id.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Orders in order-id order, a page at a time."""
    page = _get("/orders", {"state": state, "limit": limit, "after": after})
    if as_json:
        print_json(page)
        return
    table = Table("order", "state", "customer", "lines", "currency", "created", "settled")
    for order in page["orders"]:
        table.add_row(
            plain(order["order_id"]),
            order["state"],
            plain(order["customer_id"]),
            str(order["lines"]),
            order["currency"],
            _time(order["created_at"]),
            _time(order["settled_at"]),
        )
    console = Console()
    console.print(table)
    if page["next_after"]:
        console.print(
            f"more: stockflow order list --after {plain(page['next_after'])}"
            + (f" --state {plain(state)}" if state else "")
        )


@app.command()
def stats(as_json: JsonOption = False) -> None:
    """Orders per state and how long orders take to settle."""
    figures = _get("/orders/stats")
    if as_json:
        print_json(figures)
        return
    table = Table("state", "orders")
    for state, count in figures["states"].items():
        if count:
            table.add_row(state, str(count))
    table.add_row("[bold]total[/]", str(figures["total"]))
    console = Console()
    console.print(table)
    latency = figures["settle_latency_ms"]
    console.print(
        f"settled {figures['settled']}, unsettled {figures['unsettled']} "
        f"(stuck {figures['stuck']}); "
        f"settle latency p50 {latency['p50']} ms, p95 {latency['p95']} ms, "
        f"p99 {latency['p99']} ms"
    )


def render_order(console: Console, order: dict[str, Any]) -> None:
    """Print an order as GET /orders/{id} returns it."""
    header = Table.grid(padding=(0, 2))
    header.add_column(style="bold")
    header.add_column()
    state = order["state"] + (f" ({plain(order['reason'])})" if order.get("reason") else "")
    payment = order["payment"]
    address = order.get("shipping_address") or {}
    for label, value in (
        ("order", plain(order["order_id"])),
        ("state", state + (" [red]STUCK[/]" if order.get("stuck") else "")),
        ("customer", plain(order.get("customer_id"))),
        ("total", f"{order['total']} {order['currency']}"),
        (
            "payment",
            payment["status"]
            + (f", due {_time(payment['deadline'])}" if payment.get("deadline") else ""),
        ),
        ("backorders", order["backorder_policy"]),
        (
            "ship to",
            ", ".join(
                plain(address[k])
                for k in ("name", "line1", "line2", "city", "postal_code", "country")
                if address.get(k)
            ),
        ),
        ("placed", _time(order.get("placed_at"))),
        ("received", _time(order["created_at"])),
        ("settled", _time(order.get("settled_at"))),
        ("version", str(order["version"])),
    ):
        header.add_row(label, value)
    console.print(header)

    lines = Table(
        "line",
        "sku",
        "qty",
        "unit price",
        "reserved",
        "backordered",
        "shipped",
        "returned",
        title="lines",
        title_justify="left",
    )
    allocations = Table("line", "sku", "location", "qty", title="allocations", title_justify="left")
    for line in order["lines"]:
        reserved = "untracked" if line["untracked"] else str(line["reserved"])
        lines.add_row(
            plain(line["line_id"]),
            plain(line["sku"]),
            str(line["quantity"]),
            line["unit_price"],
            reserved,
            str(line["backordered"]),
            str(line["shipped"]),
            str(line["returned"]),
        )
        for allocation in line["allocations"]:
            allocations.add_row(
                plain(line["line_id"]),
                plain(line["sku"]),
                plain(allocation["location"]),
                str(allocation["quantity"]),
            )
    console.print(lines)
    if allocations.row_count:
        console.print(allocations)

    if order["shipments"]:
        shipments = Table(
            "shipment",
            "lines",
            "from",
            "carrier",
            "tracking",
            "shipped",
            "delivered",
            title="shipments",
            title_justify="left",
        )
        for shipment in order["shipments"]:
            shipments.add_row(
                plain(shipment["shipment_id"]),
                plain(", ".join(f"{q['line_id']}×{q['quantity']}" for q in shipment["lines"])),
                plain(shipment.get("location")),
                plain(
                    " ".join(filter(None, (shipment.get("carrier"), shipment.get("service_level"))))
                ),
                plain(shipment.get("tracking_number")),
                _time(shipment.get("shipped_at")),
                _time(shipment.get("delivered_at")) or ("yes" if shipment["delivered"] else ""),
            )
        console.print(shipments)
    if order.get("timers"):
        console.print(
            "timers: "
            + "; ".join(
                f"{t['kind']} at {_time(t['fire_at'])}"
                + (f" (attempt {t['attempt']})" if t["attempt"] else "")
                for t in order["timers"]
            )
        )

    timeline = Table(
        "at", "from → to", "cause", "outcome", "note", title="timeline", title_justify="left"
    )
    for entry in order["timeline"]:
        outcome = {"applied": "green", "ignored": "dim", "refused": "yellow"}.get(
            entry["outcome"], ""
        )
        timeline.add_row(
            _time(entry["at"]),
            entry["from_state"]
            if entry["from_state"] == entry["to_state"]
            else f"{entry['from_state']} → {entry['to_state']}",
            f"{plain(entry['cause_type'])}\n[dim]{plain(entry['cause_id'])}[/]",
            f"[{outcome}]{entry['outcome']}[/]" if outcome else plain(entry["outcome"]),
            plain(entry["note"]),
        )
    console.print(timeline)


def _time(value: str | None) -> str:
    """RFC 3339 as sent by the API, shortened to the second for reading."""
    if not value:
        return ""
    return value.replace("T", " ")[:19] + (" UTC" if value.endswith(("Z", "+00:00")) else "")
