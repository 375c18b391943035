"""How every command behaves: one `error:` line when something fails, no empty query
parameters, `--json` wherever data is printed, `--version`, tables readable at 80 columns.

Backends that are down are closed ports; a service that answers is a small recording HTTP
server here (tests/test_cli_services.py drives the real services).
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import version
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from stockflow.cli.main import app
from stockflow.cli.stock import _replenishment_cells, replenishment_table

runner = CliRunner()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


DOWN = f"http://127.0.0.1:{_closed_port()}"
DOWN_DSN = f"postgresql://someone:hunter2@127.0.0.1:{_closed_port()}/stockflow"
DOWN_ENV = {
    **{f"{s.upper()}_URL": DOWN for s in ("catalog", "stock", "order", "fulfillment")},
    "ACCOUNTING_URL": DOWN,
    "DATABASE_URL": DOWN_DSN,
    "COLUMNS": "200",
}


@pytest.mark.parametrize(
    ("args", "unreachable"),
    [
        (["stock", "show", "SKU-1"], f"{DOWN}/levels/SKU-1"),
        (["stock", "movements", "SKU-1"], f"{DOWN}/movements"),
        (["order", "list"], f"{DOWN}/orders"),
        (["order", "show", "o-1"], f"{DOWN}/orders/o-1"),
        (["order", "stats"], f"{DOWN}/orders/stats"),
        (["accounting", "trial-balance"], f"{DOWN}/reports/trial-balance"),
        (["accounting", "close-period", "2025-01"], f"{DOWN}/periods/2025-01/close"),
        (["fulfillment", "work", "--location", "WH-EAST"], f"{DOWN}/work"),
        (["fulfillment", "ship", "s-1"], f"{DOWN}/shipments/s-1/ship"),
        (["check"], DOWN_DSN.replace("hunter2", "***")),
        (["stock", "replenish", "--no-publish"], DOWN_DSN.replace("hunter2", "***")),
    ],
)
def test_a_backend_that_is_down_is_one_error_line_naming_it(
    args: list[str], unreachable: str
) -> None:
    result = runner.invoke(app, args, env=DOWN_ENV)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and result.exception is not None
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith("error: cannot "), errors
    assert unreachable in errors[0]
    assert "hunter2" not in result.output


class _Recording(BaseHTTPRequestHandler):
    """Answers like the order service: 200 with a canned body, or FastAPI's 422 (cut by
    nothing: 400 characters of message) for a blank parameter or a state it does not know."""

    seen: list[str]
    body: dict

    def do_GET(self) -> None:
        self.seen.append(self.path)
        query = parse_qs(urlsplit(self.path).query, keep_blank_values=True)
        bad = [k for k, v in query.items() if v == [""] or (k == "state" and v != ["CONFIRMED"])]
        if bad:
            status = 422
            problem = {"type": "enum", "loc": ["query", bad[0]], "input": query[bad[0]][0]}
            body: dict = {"detail": [problem | {"msg": "Input should be 'CONFIRMED'" + " " * 400}]}
        else:
            status, body = 200, self.body
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def service() -> Iterator[SimpleNamespace]:
    handler = type("Handler", (_Recording,), {"seen": [], "body": {}})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield SimpleNamespace(url=f"http://127.0.0.1:{server.server_port}", handler=handler)
    finally:
        server.shutdown()


def test_order_list_sends_no_empty_parameter(service: SimpleNamespace) -> None:
    service.handler.body = {"orders": [], "next_after": None}
    result = runner.invoke(app, ["order", "list"], env={"ORDER_URL": service.url})
    assert result.exit_code == 0, result.output
    assert service.handler.seen == ["/orders?limit=50"]


def test_an_empty_option_is_not_sent(service: SimpleNamespace) -> None:
    service.handler.body = {"orders": [], "next_after": None}
    result = runner.invoke(app, ["order", "list", "--state", ""], env={"ORDER_URL": service.url})
    assert result.exit_code == 0, result.output
    assert service.handler.seen == ["/orders?limit=50"]


def test_a_service_refusal_is_one_error_line_naming_the_field(service: SimpleNamespace) -> None:
    result = runner.invoke(
        app, ["order", "list", "--state", "NOPE"], env={"ORDER_URL": service.url}
    )
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert result.stderr.strip() == (
        "error: the order service refused GET /orders (422): state: Input should be 'CONFIRMED'"
    )


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"stockflow {version('stockflow-cli')}"


# Commands that act or write files rather than print data.
NO_DATA = {
    "demo",
    "catalog export",
    "fulfillment label",
    "fulfillment set-bin",
    "accounting close-period",
    "schemas export",
    "dlq replay",
}


def _leaf_commands(command: object, prefix: str = "") -> Iterator[tuple[str, object]]:
    for name, sub in command.commands.items():  # type: ignore[attr-defined]
        path = f"{prefix} {name}".strip()
        if hasattr(sub, "commands"):
            yield from _leaf_commands(sub, path)
        else:
            yield path, sub


def test_every_command_that_prints_data_takes_json() -> None:
    root = typer.main.get_command(app)
    leaves = dict(_leaf_commands(root))
    assert {"order list", "stock replenish", "fulfillment return inspect"} <= leaves.keys()
    missing = [
        path
        for path, command in leaves.items()
        if path not in NO_DATA and not any("--json" in param.opts for param in command.params)  # type: ignore[attr-defined]
    ]
    assert missing == []


def test_json_is_the_data_the_service_sent(service: SimpleNamespace) -> None:
    page = {"orders": [{"order_id": "o-[1]", "state": "CONFIRMED"}], "next_after": "o-[1]"}
    service.handler.body = page
    result = runner.invoke(app, ["order", "list", "--json"], env={"ORDER_URL": service.url})
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == page


def test_service_text_keeps_its_brackets(service: SimpleNamespace) -> None:
    service.handler.body = {
        "orders": [
            {
                "order_id": "o-[bold]1",
                "state": "REJECTED",
                "customer_id": "[red]c[/]",
                "lines": 1,
                "currency": "EUR",
                "created_at": "2025-01-02T03:04:05Z",
                "settled_at": None,
            }
        ],
        "next_after": None,
    }
    result = runner.invoke(app, ["order", "list"], env={"ORDER_URL": service.url, "COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "o-[bold]1" in result.stdout and "[red]c[/]" in result.stdout


def _series(sku: str, order_qty: int) -> SimpleNamespace:
    suggestion = SimpleNamespace(
        sku=sku,
        location="WH-EAST",
        should_order=order_qty > 0,
        order_qty=order_qty,
        model="croston_sba",
        wape=0.4213,
        mase=0.87,
        forecast_daily=12.3456,
        lead_time_demand=86.42,
        safety_stock=31.7,
        reorder_point=118.2,
        inventory_position=97.0,
        days_of_cover=7.9,
    )
    return SimpleNamespace(suggestion=suggestion, baseline_wape=0.5512, previous_reorder_point=100)


def test_the_replenishment_table_reads_at_80_columns() -> None:
    skus = ["SKU-HOODIE-000", "SKU-HOODIE-001", "SKU-HOODIE-OVERSIZED-HEATHER-GREY-XXL"]
    rows = [_replenishment_cells(_series(sku, 240)) for sku in skus]
    console = Console(width=80, record=True, color_system=None)
    console.print(replenishment_table("replenishment: 3 of 3", rows, wide=False))
    text = console.export_text()
    assert max(map(len, text.splitlines())) <= 80
    row_lines = [line for line in text.splitlines() if "SKU-HOODIE-" in line]
    assert len(row_lines) == 3, text  # one line per suggestion: nothing wrapped
    for line in row_lines:
        assert line.split()[1:] == ["WH-EAST", "240", "12.35", "119", "(100)", "97", "7.9"], line
    assert "SKU-HOODIE-001 " in row_lines[1] and "…" in row_lines[2], text
    header = next(line for line in text.splitlines() if "sku" in line)
    for name in ("location", "order", "per day", "reorder (was)", "position", "cover days"):
        assert name in header, text

    wide = Console(width=200, record=True, color_system=None)
    wide.print(replenishment_table("replenishment", rows, wide=True))
    wide_text = wide.export_text()
    assert "croston_sba" in wide_text and "0.421 (0.551)" in wide_text
