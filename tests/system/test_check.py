"""The invariant checker against the five running services: a calm run is clean, a corrupted
reservation is found by `stockflow check` and by the stock service's own watch, and
`stockflow check --repair --yes` fixes it through the stock API with audited movements; a level
the stock.levels.v1 stream does not show is found by both as well."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from decimal import Decimal

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaProducer
from typer.testing import CliRunner

from stockflow.cli.check import STREAM_BUCKETS, check_levels_stream, check_system
from stockflow.cli.checkout_sim import (
    Catalog,
    OrderFactory,
    Outcomes,
    OutcomeTracker,
    Scenario,
    send_orders,
)
from stockflow.cli.demo import receive
from stockflow.cli.main import app
from stockflow.contracts import encode
from stockflow.contracts.events.stock import StockLevelChanged
from stockflow.runtime.testing.factories import variant
from stockflow.runtime.testing.plugin import SYSTEM_ENV, read_topic
from stockflow.runtime.testing.system import System

pytestmark = pytest.mark.system

ADMIN_TOKEN = "dev-admin-token"


@pytest.fixture(scope="module")
def system(infra):
    """The five services, the stock service checking its invariants every second."""
    running = System(infra, env=SYSTEM_ENV | {"STOCKFLOW_INVARIANT_INTERVAL_S": "1"})
    running.start_all()
    yield running
    running.stop_all()


async def seed(system, producer, sku: str, location: str, units: int) -> None:
    record = encode(variant(sku), source="stockflow/catalog")
    await producer.send(record.topic, record.value, key=record.key, headers=record.headers)
    await receive(producer, sku, location, units, "4.00", receipt_id=f"r-{sku}")
    async with httpx.AsyncClient(base_url=system.url("stock"), timeout=15) as stock_api:
        for _ in range(150):
            totals = (await stock_api.get(f"/levels/{sku}")).json().get("totals") or {}
            if int(totals.get("on_hand", 0)) == units:
                return
            await asyncio.sleep(0.2)
    pytest.fail(f"stock never recorded the receipt of {sku}")


async def run_orders(system, producer, sku: str, count: int) -> list[str]:
    outcomes = Outcomes()
    tracker = OutcomeTracker(system.kafka_bootstrap, outcomes)
    await tracker.start()
    factory = OrderFactory(
        Catalog(skus=[sku], prices={sku: Decimal("10.00")}),
        mix={Scenario.NORMAL: 1.0},
        seed=5,
        payment_deadline_s=4,
    )
    try:
        planned = await send_orders(producer, factory, count, 20, outcomes)
        ids = [p.order_id for p in planned]
        for _ in range(400):
            if outcomes.terminal(ids) == len(ids):
                return ids
            await asyncio.sleep(0.25)
    finally:
        await tracker.stop()
    pytest.fail(f"only {outcomes.terminal(ids)} of {len(ids)} orders ended")


def _data(record) -> dict:
    body = json.loads(record.value)
    return body.get("data", body) if "specversion" in body else body


def ours(violations, sku: str, order_ids: list[str]) -> list:
    return [v for v in violations if sku in v.subject or any(o in v.subject for o in order_ids)]


async def gauge(system, invariant: str) -> float:
    async with httpx.AsyncClient(base_url=system.url("stock"), timeout=10) as client:
        text = (await client.get("/metrics")).text
    pattern = (
        rf'stockflow_invariant_violations\{{[^}}]*invariant="{invariant}"[^}}]*\}} ([0-9.e+]+)'
    )
    return sum(float(v) for v in re.findall(pattern, text))


async def test_check_finds_a_corrupted_reservation_and_repair_fixes_it(system, infra):
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap, acks="all")
    await producer.start()
    admin = await asyncpg.connect(infra.admin_database_url)
    try:
        sku = f"C{uuid.uuid4().hex[:6].upper()}"
        await seed(system, producer, sku, "WH-EAST", 50)
        order_ids = await run_orders(system, producer, sku, 6)

        before = await check_system(infra.admin_database_url, settle_seconds=0)
        assert ours(before, sku, order_ids) == []

        # A delivered order's reservation row claims 2 units again: the level no longer
        # matches its open reservations, and an order that ended holds stock.
        line = await admin.fetchrow(
            "SELECT order_id, line_id FROM stock.reservations WHERE sku = $1 LIMIT 1", sku
        )
        await admin.execute(
            "UPDATE stock.reservations SET quantity = quantity + 2 "
            "WHERE order_id = $1 AND line_id = $2",
            line["order_id"],
            line["line_id"],
        )
        found = await check_system(infra.admin_database_url, settle_seconds=0)
        assert {v.invariant for v in ours(found, sku, order_ids)} == {
            "reserved_is_open_reservations",
            "reservations_of_terminal_orders",
        }

        env = {
            "DATABASE_URL": infra.admin_database_url,
            "STOCK_URL": system.url("stock"),
            "STOCKFLOW_TOKEN": ADMIN_TOKEN,
            "KAFKA_BOOTSTRAP_SERVERS": system.kafka_bootstrap,
            "STOCKFLOW_OPERATOR": "test-check",
        }
        runner = CliRunner()
        result = await asyncio.to_thread(
            runner.invoke, app, ["check", "--settle", "0", "--json"], env=env
        )
        assert result.exit_code == 1, result.output
        named = json.loads(result.output)["violations"]
        assert {(v["invariant"], v["service"]) for v in named if sku in v["subject"]} == {
            ("reserved_is_open_reservations", "stock")
        }
        assert any(
            v["invariant"] == "reservations_of_terminal_orders" and v["subject"] == line["order_id"]
            for v in named
        )

        # The stock service's own watch saw it too: gauge up, one alert naming the level.
        for _ in range(50):
            if await gauge(system, "reserved_is_open_reservations") >= 1:
                break
            await asyncio.sleep(0.2)
        else:
            pytest.fail("the stock service's gauge never showed the drift")
        alerts = await read_topic(
            system.kafka_bootstrap, "stock.alerts.v1", expect=10**6, timeout_s=8
        )
        assert any(
            dict(r.headers).get("ce_type") == b"stock.invariant.violated.v1"
            and (data := _data(r))["sku"] == sku
            and data["invariant"] == "reserved_is_open_reservations"
            for r in alerts
        )

        result = await asyncio.to_thread(
            runner.invoke,
            app,
            ["check", "--settle", "0", "--repair", "--yes", "--note", "system test"],
            env=env,
        )
        assert "applied" in result.output, result.output
        repairs = await admin.fetch(
            "SELECT kind, quantity, order_id, reason, reference_type, cause_event_id "
            "FROM stock.movements WHERE sku = $1 AND reference_type = 'repair' ORDER BY id",
            sku,
        )
        assert [(r["kind"], r["quantity"], r["order_id"], r["reason"]) for r in repairs] == [
            ("reservation", 2, None, "repair:reserved_is_open_reservations"),
            ("release", -2, line["order_id"], "repair:reservations_of_terminal_orders"),
        ]
        assert all(r["cause_event_id"].startswith("repair:") for r in repairs)

        after = await check_system(infra.admin_database_url, settle_seconds=0)
        assert ours(after, sku, order_ids) == []
        assert {(v.invariant, v.subject) for v in after} <= {
            (v.invariant, v.subject) for v in before
        }
        audit = await read_topic(system.kafka_bootstrap, "ops.audit.v1", expect=10**6, timeout_s=8)
        assert any(
            json.loads(r.value).get("cause_event_id") == repairs[0]["cause_event_id"] for r in audit
        )

        # The same proposal again is refused: the drift it was made for is gone.
        async with httpx.AsyncClient(base_url=system.url("stock"), timeout=15) as stock_api:
            stale = await stock_api.post(
                "/admin/repairs",
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                json={
                    "repair_id": str(uuid.uuid4()),
                    "operator": "test-check",
                    "corrections": [
                        {
                            "invariant": "reserved_is_open_reservations",
                            "kind": "reservation",
                            "sku": sku,
                            "location": "WH-EAST",
                            "quantity": 2,
                            "drift": -2,
                        }
                    ],
                },
            )
        assert stale.status_code == 409, stale.text
    finally:
        await admin.close()
        await producer.stop()


async def stream_drained(admin, sku: str) -> None:
    """Wait until the stock outbox has sent every levels record (of `sku` among them)."""
    for _ in range(150):
        pending = await admin.fetchval(
            "SELECT count(*) FROM stock.outbox WHERE sent_at IS NULL AND topic = 'stock.levels.v1'"
        )
        if not pending:
            return
        await asyncio.sleep(0.2)
    pytest.fail(f"the stock outbox never drained the levels of {sku}")


async def test_check_and_the_watch_find_a_level_the_stream_does_not_show(system, infra):
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap, acks="all")
    await producer.start()
    admin = await asyncpg.connect(infra.admin_database_url)
    try:
        sku = f"L{uuid.uuid4().hex[:6].upper()}"
        subject = f"{sku}@WH-EAST"
        await seed(system, producer, sku, "WH-EAST", 30)
        await stream_drained(admin, sku)
        assert (
            ours(
                await check_levels_stream(infra.admin_database_url, infra.kafka_bootstrap), sku, []
            )
            == []
        )

        # A rogue record of the same version says other numbers: the checker reads the stream.
        level = await admin.fetchrow("SELECT * FROM stock.levels WHERE sku = $1", sku)
        rogue = StockLevelChanged(
            **{b: level[b] for b in STREAM_BUCKETS},
            sku=sku,
            location="WH-EAST",
            version=level["version"],
            changed_at=level["updated_at"],
        ).model_copy(update={"on_hand": 31, "available": level["available"] + 1})
        record = encode(rogue, source="rogue")
        await producer.send_and_wait(
            record.topic, record.value, key=record.key, headers=record.headers
        )
        found = await check_levels_stream(infra.admin_database_url, infra.kafka_bootstrap)
        assert [(v.invariant, v.subject) for v in ours(found, sku, [])] == [
            ("levels_stream_matches_table", subject)
        ]
        assert "on_hand 30, stock.levels.v1 says 31" in ours(found, sku, [])[0].detail

        # A level changed by stray SQL: no record staged. The service's own watch sees it, and
        # `stockflow check` names both the unpublished change and the stream behind the table.
        await admin.execute("UPDATE stock.levels SET damaged = damaged + 1 WHERE sku = $1", sku)
        for _ in range(50):
            if await gauge(system, "level_changes_published") >= 1:
                break
            await asyncio.sleep(0.2)
        else:
            pytest.fail("the stock service's watch never saw the unpublished change")
        env = {
            "DATABASE_URL": infra.admin_database_url,
            "KAFKA_BOOTSTRAP_SERVERS": infra.kafka_bootstrap,
        }
        result = await asyncio.to_thread(
            CliRunner().invoke, app, ["check", "--settle", "0", "--json"], env=env
        )
        assert result.exit_code == 1, result.output
        named = json.loads(result.output)["violations"]
        assert {(v["invariant"], v["service"]) for v in named if v["subject"] == subject} >= {
            ("level_changes_published", "stock"),
            ("levels_stream_matches_table", "stock"),
        }

        # Undone, and a real receipt publishes the level again: the stream agrees once more.
        await admin.execute("UPDATE stock.levels SET damaged = damaged - 1 WHERE sku = $1", sku)
        await receive(producer, sku, "WH-EAST", 1, "4.00", receipt_id=f"r2-{sku}")
        for _ in range(150):
            if await admin.fetchval("SELECT on_hand FROM stock.levels WHERE sku = $1", sku) == 31:
                break
            await asyncio.sleep(0.2)
        await stream_drained(admin, sku)
        after = await check_levels_stream(infra.admin_database_url, infra.kafka_bootstrap)
        assert ours(after, sku, []) == []
        assert ours(await check_system(infra.admin_database_url, settle_seconds=0), sku, []) == []
    finally:
        await admin.close()
        await producer.stop()
