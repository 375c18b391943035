"""The CLI against the real services (run in-process on the lane's Kafka and PostgreSQL and
served over HTTP): what it sends is what they accept, what they refuse reads as one line, and
what they say is printed as they said it. The CLI runs in a worker thread because its
commands call asyncio.run while the fixtures' loop is running."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from typer.testing import CliRunner

from stockflow.cli.main import app

pytestmark = pytest.mark.integration

runner = CliRunner()


@contextlib.asynccontextmanager
async def served(service_app: Any) -> AsyncIterator[str]:
    """An app already started by run_service, on a free local port: its base URL."""
    config = uvicorn.Config(
        service_app, host="127.0.0.1", port=0, lifespan="off", log_level="warning"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "the server stopped before it started"
        await asyncio.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def stockflow(*args: str, env: dict[str, str]):
    environment = {"STOCKFLOW_TOKEN": "test-admin", "COLUMNS": "250", **env}
    return await asyncio.to_thread(runner.invoke, app, list(args), env=environment)


def cli_stdout(result) -> str:
    """The CLI's own stdout: the service runs in this process and its JSON log lines (an
    `event` from a `service`) land in the same captured stream."""

    def is_log(line: str) -> bool:
        try:
            record = json.loads(line)
        except ValueError:
            return False
        return isinstance(record, dict) and {"event", "service"} <= record.keys()

    return "".join(line for line in result.stdout.splitlines(True) if not is_log(line))


async def test_order_list_without_state_lists_and_a_bad_state_is_one_line(run_service) -> None:
    async with run_service("order") as (service_app, _), served(service_app) as url:
        listed = await stockflow("order", "list", "--limit", "5", env={"ORDER_URL": url})
        assert listed.exit_code == 0, listed.output
        assert "order" in cli_stdout(listed) and "state" in cli_stdout(listed)

        as_json = await stockflow("order", "list", "--limit", "5", "--json", env={"ORDER_URL": url})
        assert set(json.loads(cli_stdout(as_json))) >= {"orders", "next_after"}

        refused = await stockflow("order", "list", "--state", "NOPE", env={"ORDER_URL": url})
    assert refused.exit_code == 1
    assert cli_stdout(refused) == ""
    (line,) = refused.stderr.strip().splitlines()
    assert line.startswith("error: the order service refused GET /orders (422): state: "), line
    assert "{" not in line


async def test_the_import_report_prints_a_pattern_with_its_brackets(
    run_service, tmp_path: Path
) -> None:
    handle = f"brackets-{uuid.uuid4().hex[:8]}"
    bad = {
        "handle": handle,
        "title": "Bracketed",
        "status": "active",
        "attributes": {"Not A Name": "x"},
        "variants": [{"sku": f"T{handle.upper()}", "prices": [{"amount": "1.00"}]}],
    }
    source = tmp_path / "bad.jsonl"
    source.write_text(json.dumps(bad) + "\n")
    async with run_service("catalog") as (service_app, _), served(service_app) as url:
        result = await stockflow("catalog", "import", str(source), env={"CATALOG_URL": url})
        as_json = await stockflow(
            "catalog", "import", str(source), "--json", env={"CATALOG_URL": url}
        )
    assert result.exit_code == 1, result.output
    messages = [error["message"] for error in json.loads(as_json.stdout)["errors"]]
    assert any("[a-z][a-z0-9_]{0,63}" in message for message in messages), messages
    assert "[a-z][a-z0-9_]{0,63}" in "".join(result.stdout.split())
