"""The operator commands against the real broker.

Every test works on topics of its own (fresh source and dead-letter topics, a fresh consumer
group) and finds its audit records by their unique dead-letter position, so runs are isolated
and repeatable although topics keep earlier runs' records. The CLI runs in a worker thread
because its commands call asyncio.run while the fixtures' loop is running.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from typer.testing import CliRunner

from stockflow.cli.kafka_tools import AUDIT_TOPIC, REPLAYED_FROM
from stockflow.cli.main import app
from stockflow.contracts import EVENT_TYPES, encode
from stockflow.contracts.events.warehouse import WarehouseGoodsReceived
from stockflow.runtime.testing.plugin import read_topic

pytestmark = pytest.mark.integration

runner = CliRunner()


@pytest.fixture
def cli(infra):
    env = {"KAFKA_BOOTSTRAP_SERVERS": infra.kafka_bootstrap, "COLUMNS": "250"}

    async def invoke(*args: str, input: str | None = None):
        return await asyncio.to_thread(runner.invoke, app, list(args), env=env, input=input)

    return invoke


def _lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def _receipt(sku: str) -> WarehouseGoodsReceived:
    return WarehouseGoodsReceived(
        receipt_id=f"r-{uuid.uuid4().hex[:8]}",
        sku=sku,
        location="WH-EAST",
        quantity=5,
        unit_cost=Decimal("2.50"),
        currency="EUR",
        received_at=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
    )


def _structured(event_type: str, data: dict) -> bytes:
    envelope = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "test/upstream",
        "type": event_type,
        "time": "2025-01-02T03:04:05Z",
        "data": data,
    }
    return json.dumps(envelope).encode()


async def test_tail_decodes_both_content_modes_and_filters(cli, new_topic, producer) -> None:
    topic = await new_topic(partitions=2)
    binary = encode(_receipt("SKU-1"), source="test/warehouse")
    await producer.send_and_wait(topic, binary.value, key=binary.key, headers=binary.headers)
    structured = _structured("checkout.order.cancel_requested.v1", {"order_id": "ord-1"})
    await producer.send_and_wait(
        topic,
        structured,
        key=b"ord-1",
        headers=[("content-type", b"application/cloudevents+json")],
    )
    about_order = [
        ("ce_specversion", b"1.0"),
        ("ce_id", str(uuid.uuid4()).encode()),
        ("ce_source", b"test/stock"),
        ("ce_type", b"stock.reserved.v1"),
        ("content-type", b"application/json"),
    ]
    await producer.send_and_wait(
        topic, b'{"order_id": "ord-1", "lines": []}', key=b"SKU-2", headers=about_order
    )
    await producer.send_and_wait(topic, b"\xff\xfe not an event", key=b"junk")

    result = await cli("topics", "tail", topic, "--from-beginning", "--json")
    assert result.exit_code == 0, result.output
    records = {r["key"]: r for r in _lines(result.stdout)}
    assert set(records) == {"SKU-1", "ord-1", "SKU-2", "junk"}
    assert records["SKU-1"]["mode"] == "binary"
    assert records["SKU-1"]["type"] == "warehouse.goods.received.v1"
    assert records["SKU-1"]["data"]["unit_cost"] == "2.50"
    assert records["ord-1"]["mode"] == "structured"
    assert records["ord-1"]["data"] == {"order_id": "ord-1"}
    assert records["junk"]["mode"] == "invalid" and records["junk"]["error"]

    async def keys(*filters: str) -> set[str]:
        result = await cli("topics", "tail", topic, "--from-beginning", "--json", *filters)
        assert result.exit_code == 0, result.output
        return {r["key"] for r in _lines(result.stdout)}

    assert await keys("--type", "warehouse.goods.received.v1") == {"SKU-1"}
    assert await keys("--type", "checkout.*", "--type", "stock.*") == {"ord-1", "SKU-2"}
    assert await keys("--key", "junk") == {"junk"}
    assert await keys("--order", "ord-1") == {"ord-1", "SKU-2"}
    assert await keys("--order", "ord-404") == set()

    newest = await cli("topics", "tail", topic, "-n", "1", "--json")
    assert [r["key"] for r in _lines(newest.stdout)] == ["junk"]

    table = await cli("topics", "tail", topic, "--from-beginning")
    assert table.exit_code == 0, table.output
    assert "warehouse.goods.received.v1" in table.stdout
    assert "structured" in table.stdout and "invalid" in table.stdout


async def test_tail_by_type_finds_the_newest_matches_behind_newer_records(
    cli, new_topic, producer
) -> None:
    """`--type X -n 2` shows the newest two X even when 30 other records came after them."""
    topic = await new_topic(partitions=1)
    for sku in ("SKU-A", "SKU-B", "SKU-C"):
        receipt = encode(_receipt(sku), source="test/warehouse")
        await producer.send_and_wait(topic, receipt.value, key=receipt.key, headers=receipt.headers)
    for n in range(30):
        cancel = _structured("checkout.order.cancel_requested.v1", {"order_id": f"ord-{n}"})
        await producer.send_and_wait(topic, cancel, key=f"ord-{n}".encode())

    found = await cli("topics", "tail", topic, "--type", "warehouse.*", "-n", "2", "--json")
    assert found.exit_code == 0, found.output
    assert [r["key"] for r in _lines(found.stdout)] == ["SKU-B", "SKU-C"]

    # What it searched is what it says when nothing there matches.
    narrow = await cli(
        "topics", "tail", topic, "--type", "warehouse.*", "-n", "2", "--look-back", "10"
    )
    assert narrow.exit_code == 0, narrow.output
    message = " ".join(narrow.stdout.split())
    assert f"no matching records among the newest 10 of each partition of {topic}" in message
    assert "--from-beginning" in message

    unfiltered = await cli("topics", "tail", topic, "-n", "3", "--json")
    assert [r["key"] for r in _lines(unfiltered.stdout)] == ["ord-27", "ord-28", "ord-29"]


def _dead_letter_headers(source: str, offset: int, reason: str) -> list[tuple[str, bytes]]:
    return [
        ("dlq_reason", reason.encode()),
        ("dlq_source_topic", source.encode()),
        ("dlq_source_partition", b"0"),
        ("dlq_source_offset", str(offset).encode()),
        ("dlq_consumer_group", b"stock.commands"),
        ("dlq_service", b"stock"),
        ("dlq_failed_at", b"2025-01-02T03:04:05.123Z"),
    ]


async def _dead_letter(producer, dlq: str, source: str, offset: int, sku: str, reason: str):
    """A dead letter as the runtime writes it: the original record plus dlq_* headers."""
    original = encode(_receipt(sku), source="test/warehouse")
    await producer.send_and_wait(
        dlq,
        original.value,
        key=original.key,
        headers=original.headers + _dead_letter_headers(source, offset, reason),
    )
    return original


async def test_dlq_list_and_show(cli, new_topic, producer) -> None:
    dlq = await new_topic(partitions=1, prefix="test.dlq")
    source = await new_topic(partitions=1)
    reason = "invalid data: " + "quantity: Input should be greater than 0; " * 5
    await _dead_letter(producer, dlq, source, 41, "SKU-DL", reason)
    await producer.send_and_wait(
        dlq,
        b"\x00\xffbinary\x01",
        key=b"k2",
        headers=_dead_letter_headers(source, 42, "not a CloudEvent: missing header(s) ce_id"),
    )

    listed = await cli("dlq", "list", "stock", "--topic", dlq, "--json")
    assert listed.exit_code == 0, listed.output
    letters = _lines(listed.stdout)
    assert [(d["offset"], d["source"]) for d in letters] == [
        (0, f"{source}/0/41"),
        (1, f"{source}/0/42"),
    ]
    assert letters[0]["event_type"] == "warehouse.goods.received.v1"
    assert letters[0]["group"] == "stock.commands" and letters[0]["reason"] == reason
    assert letters[0]["replays"] == [] and letters[1]["event_type"] is None

    table = await cli("dlq", "list", "stock", "--topic", dlq)
    assert table.exit_code == 0, table.output
    assert "warehouse.goods.received.v1" in table.stdout and "stock.commands" in table.stdout
    assert reason not in table.stdout  # truncated in the table
    assert "2 dead letters, 2 not replayed" in table.stdout

    shown = await cli("dlq", "show", "stock", "0", "--topic", dlq)
    assert shown.exit_code == 0, shown.output
    for header in ("dlq_reason", "dlq_source_offset", "dlq_failed_at", "ce_type", "traceparent"):
        assert header in shown.stdout
    assert '"sku": "SKU-DL"' in shown.stdout

    binary = await cli("dlq", "show", "orders", "1", "--topic", dlq)
    assert binary.exit_code == 0, binary.output
    assert "00 ff 62 69 6e 61 72 79 01" in binary.stdout and "|..binary.|" in binary.stdout

    missing = await cli("dlq", "show", "stock", "99", "--topic", dlq)
    assert missing.exit_code == 1
    unknown = await cli("dlq", "list", "warehouse")
    assert unknown.exit_code == 2


async def test_replay_republishes_the_original_and_records_it(
    cli, infra, new_topic, producer
) -> None:
    dlq = await new_topic(partitions=1, prefix="test.dlq")
    source = await new_topic(partitions=1)
    first = await _dead_letter(producer, dlq, source, 7, "SKU-R1", "handler failed")
    second = await _dead_letter(producer, dlq, source, 8, "SKU-R2", "handler failed")

    declined = await cli("dlq", "replay", "stock", "--topic", dlq, "--offset", "0", input="n\n")
    assert declined.exit_code == 1
    assert await read_topic(infra.kafka_bootstrap, source, expect=1, timeout_s=2) == []

    replayed = await cli("dlq", "replay", "stock", "--topic", dlq, "--offset", "0", "--yes")
    assert replayed.exit_code == 0, replayed.output
    [record] = await read_topic(infra.kafka_bootstrap, source, expect=1)
    assert record.key == first.key and record.value == first.value
    assert list(record.headers) == [*first.headers, (REPLAYED_FROM, f"{dlq}/0/0".encode())]

    audits = [
        json.loads(r.value)
        for r in await read_topic(infra.kafka_bootstrap, AUDIT_TOPIC, expect=10**9, timeout_s=3)
        if r.key == f"{dlq}/0/0".encode()
    ]
    assert len(audits) == 1
    assert audits[0]["target"] == f"{source}/0/0"
    assert audits[0]["source"] == f"{source}/0/7"
    assert audits[0]["event_type"] == "warehouse.goods.received.v1"
    assert audits[0]["replayed_by"] and audits[0]["replayed_at"]

    again = await cli("dlq", "replay", "stock", "--topic", dlq, "--offset", "0", "--yes")
    assert again.exit_code == 1
    assert "already replayed" in again.stdout

    listed = _lines((await cli("dlq", "list", "stock", "--topic", dlq, "--json")).stdout)
    assert [len(d["replays"]) for d in listed] == [1, 0]
    table = await cli("dlq", "list", "stock", "--topic", dlq)
    assert "2 dead letters, 1 not replayed" in table.stdout

    rest = await cli("dlq", "replay", "stock", "--topic", dlq, "--all", "--yes")
    assert rest.exit_code == 0, rest.output
    assert "refused" in rest.stdout and "1 replayed" in rest.stdout
    forced = await cli(
        "dlq", "replay", "stock", "--topic", dlq, "--offset", "0", "--yes", "--force"
    )
    assert forced.exit_code == 0, forced.output

    records = await read_topic(infra.kafka_bootstrap, source, expect=3)
    assert [r.key for r in records] == [first.key, second.key, first.key]
    assert all(not name.startswith("dlq_") for r in records for name, _ in r.headers)
    nothing = await cli("dlq", "replay", "stock", "--topic", dlq, "--all", "--yes")
    assert nothing.exit_code == 0 and "nothing to replay" in nothing.stdout


async def test_lag_and_topics_list(cli, infra, new_topic, producer) -> None:
    topic = await new_topic(partitions=2)
    for i in range(5):
        await producer.send_and_wait(topic, b"{}", partition=0, key=f"k{i}".encode())
    for i in range(3):
        await producer.send_and_wait(topic, b"{}", partition=1, key=f"k{i}".encode())
    group = f"test.lag.{uuid.uuid4().hex[:8]}"
    consumer = AIOKafkaConsumer(
        bootstrap_servers=infra.kafka_bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, 0), TopicPartition(topic, 1)])
        await consumer.commit({TopicPartition(topic, 0): 2, TopicPartition(topic, 1): 3})
    finally:
        await consumer.stop()

    result = await cli("lag", "--group", group, "--json")
    assert result.exit_code == 0, result.output
    rows = {
        (r["topic"], r["partition"]): (r["committed"], r["end"], r["lag"])
        for r in _lines(result.stdout)
    }
    assert rows == {(topic, 0): (2, 5, 3), (topic, 1): (3, 3, 0)}
    table = await cli("lag", "--group", group)
    assert table.exit_code == 0, table.output
    [total] = [line for line in table.stdout.splitlines() if "total" in line]
    assert group in total and "│ 3 " in total

    listed = await cli("topics", "list", topic, AUDIT_TOPIC, "catalog.products.v1")
    assert listed.exit_code == 0, listed.output
    lines = {line.split("│")[1].strip(): line for line in listed.stdout.splitlines() if "│" in line}
    assert "│ 2 " in lines[topic] and "0:5 1:3" in lines[topic] and "delete" in lines[topic]
    assert "ops" in lines[AUDIT_TOPIC]
    assert "compact" in lines["catalog.products.v1"]


def test_schemas_export(tmp_path: Path) -> None:
    result = runner.invoke(app, ["schemas", "export", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    written = {p.name for p in (tmp_path / "out").iterdir()}
    assert "asyncapi.json" in written
    assert {f"{name}.json" for name in EVENT_TYPES} <= written
    asyncapi = json.loads((tmp_path / "out" / "asyncapi.json").read_text())
    assert "ops_audit_v1" in asyncapi["channels"]


class _Ready(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"ready": True, "checks": {"database": "ok", "kafka": "ok"}}).encode()
        self.send_response(200 if self.path == "/readyz" else 404)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def test_status_reports_each_service() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ready)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        env = {
            "CATALOG_URL": f"http://127.0.0.1:{server.server_port}",
            "COLUMNS": "250",
            **{f"{s}_URL": "http://127.0.0.1:9" for s in ("STOCK", "ORDER", "FULFILLMENT")},
            "ACCOUNTING_URL": "http://127.0.0.1:9",
        }
        result = runner.invoke(app, ["status", "--timeout", "2"], env=env)
    finally:
        server.shutdown()
    assert result.exit_code == 1
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if "│" in line}
    assert "ready" in rows["catalog"] and "database: ok" in rows["catalog"]
    assert all("down" in rows[s] for s in ("stock", "order", "fulfillment", "accounting"))
