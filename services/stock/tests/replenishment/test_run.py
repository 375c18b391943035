"""The replenishment run against real PostgreSQL and Kafka: demand per location from the
handlers, forecasts from seeded histories, ReorderSuggested on stock.alerts.v1, reorder points,
report and charts, the leader-only schedule and the settings API."""

from __future__ import annotations

import asyncio
import json
import math
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import asyncpg
import numpy as np
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from PIL import Image

from stockflow.contracts import decode, encode, parse
from stockflow.contracts.events.stock import ReorderSuggested, ReserveStock
from stockflow.runtime.db import migrate
from stockflow.runtime.outbox import OutboxRelay, build_producer
from stockflow.runtime.service import TaskContext
from stockflow.runtime.settings import Settings
from stockflow.runtime.testing.factories import goods_received, variant
from stockflow.runtime.testing.plugin import ADMIN
from stockflow.stock import app as stock_app
from stockflow.stock.replenishment.forecasting import INTERMITTENT_MODELS
from stockflow.stock.replenishment.run import RunRequest, run_replenishment
from stockflow.stock.replenishment.schedule import run_if_due
from stockflow.stock.replenishment.settings import ReplenishDefaults
from stockflow.stock.replenishment.simulation import SCENARIOS, generate_demand

pytestmark = pytest.mark.integration

MIGRATIONS = Path(stock_app.__file__).parent / "migrations"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
HISTORY_DAYS = 150


def sku_name(tag: str) -> str:
    return f"R{uuid.uuid4().hex[:8].upper()}-{tag}"


@pytest.fixture
async def stock_schema(infra, scratch_schema):
    """A scratch schema with the stock service's tables."""
    schema, pool = scratch_schema
    await migrate(infra.admin_database_url, schema, MIGRATIONS)
    return schema, pool


async def seed_demand(conn, sku: str, location: str, demand, stockout, today: date) -> None:
    start = today - timedelta(days=len(demand))
    await conn.executemany(
        "INSERT INTO demand_daily (sku, location, day, quantity, stockout) "
        "VALUES ($1, $2, $3, $4, $5)",
        [
            (sku, location, start + timedelta(days=i), int(q), bool(s))
            for i, (q, s) in enumerate(zip(demand, stockout, strict=True))
            if q > 0 or s
        ],
    )


async def alerts_end_offsets(consumer: AIOKafkaConsumer, producer) -> None:
    partitions = await producer.partitions_for("stock.alerts.v1")
    parts = [TopicPartition("stock.alerts.v1", p) for p in partitions]
    consumer.assign(parts)
    for tp, offset in (await consumer.end_offsets(parts)).items():
        consumer.seek(tp, offset)


async def read_suggestions(consumer, skus: set[str], timeout_s: float = 30) -> dict:
    found: dict[str, ReorderSuggested] = {}
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not skus <= set(found) and asyncio.get_running_loop().time() < deadline:
        for records in (await consumer.getmany(timeout_ms=300)).values():
            for record in records:
                event = parse(decode(record.value, record.headers))
                if isinstance(event, ReorderSuggested) and event.sku in skus:
                    found[event.sku] = event
    return found


async def test_run_forecasts_publishes_sets_reorder_points_and_writes_the_report(
    infra, stock_schema, tmp_path
):
    schema, pool = stock_schema
    today = datetime.now(UTC).date()
    weekly, sparse, plenty = sku_name("WEEKLY"), sku_name("SLOW"), sku_name("PLENTY")
    bundle, young = sku_name("BUNDLE"), sku_name("YOUNG")
    smooth = generate_demand(SCENARIOS["weekly"], HISTORY_DAYS, seed=3)
    slow = generate_demand(SCENARIOS["intermittent"], HISTORY_DAYS, seed=3)
    async with pool.acquire() as conn:
        await conn.execute("INSERT INTO locations (code, name) VALUES ('WH1', 'WH1')")
        await conn.executemany(
            "INSERT INTO skus (sku, tracked, bundle_components) VALUES ($1, $2, $3)",
            [
                (weekly, True, []),
                (sparse, True, []),
                (plenty, True, []),
                (bundle, False, [{"sku": weekly, "quantity": 2}]),
            ],
        )
        await conn.executemany(
            "INSERT INTO levels (sku, location, on_hand, incoming, reorder_point) "
            "VALUES ($1, 'WH1', $2, $3, $4)",
            [(weekly, 10, 5, 3), (sparse, 0, 0, None), (plenty, 100_000, 0, None)],
        )
        # A stockout week for the weekly SKU: censored, so imputed rather than learnt as zero.
        stockout = np.zeros(HISTORY_DAYS, bool)
        stockout[100:107] = True
        observed = np.where(stockout, 0, smooth.demand)
        await seed_demand(conn, weekly, "WH1", observed, stockout, today)
        await seed_demand(conn, sparse, "WH1", slow.demand, slow.stockout, today)
        await seed_demand(conn, plenty, "WH1", smooth.demand, smooth.stockout, today)
        await seed_demand(conn, bundle, "WH1", smooth.demand, smooth.stockout, today)
        await seed_demand(conn, young, "WH1", [3] * 10, [False] * 10, today)
        # Per-SKU settings: supplier packs of 12, at least 48, ten days' lead time; the slow
        # mover has a SKU-wide lead time and a location-specific service level.
        await conn.execute(
            "INSERT INTO replenishment_settings (sku, lead_time_days, pack_size, min_order_qty) "
            "VALUES ($1, 10, 12, 48)",
            weekly,
        )
        await conn.execute(
            "INSERT INTO replenishment_settings (sku, location, lead_time_days) "
            "VALUES ($1, '*', 14), ($1, 'WH1', NULL)",
            sparse,
        )
        await conn.execute(
            "UPDATE replenishment_settings SET service_level = 0.99 "
            "WHERE sku = $1 AND location = 'WH1'",
            sparse,
        )

    consumer = AIOKafkaConsumer(bootstrap_servers=infra.kafka_bootstrap, group_id=None)
    await consumer.start()
    producer = build_producer(infra.kafka_bootstrap, client_id="test-replenish-relay")
    await producer.start()
    try:
        await alerts_end_offsets(consumer, producer)
        seen: list[tuple[int, int]] = []
        request = RunRequest(
            "cli",
            skus=[weekly, sparse, plenty, bundle, young],
            apply_reorder_points=True,
            report_dir=tmp_path / "report",
            today=today,
        )
        run = await run_replenishment(
            pool,
            request,
            source="stockflow/stock",
            defaults=ReplenishDefaults(interval_s=0),
            progress=lambda done, total: seen.append((done, total)),
        )
        assert seen[-1] == (3, 3)
        by_sku = {r.series.sku: r for r in run.results}
        assert set(by_sku) == {weekly, sparse, plenty}  # the bundle is not forecast
        assert [s[0] for s in run.skipped] == [young]  # ten days of history is too short

        smooth_result = by_sku[weekly]
        assert smooth_result.forecast.demand_class == "smooth"
        assert smooth_result.forecast.model != "naive_seasonal"  # weekly structure is learnt
        assert smooth_result.forecast.chosen_score.wape < smooth_result.baseline_wape
        assert smooth_result.forecast.imputed[100:107].all()
        assert by_sku[sparse].forecast.demand_class == "intermittent"
        assert by_sku[sparse].forecast.model in INTERMITTENT_MODELS
        assert by_sku[sparse].settings.lead_time_days == 14
        assert by_sku[sparse].settings.service_level == 0.99

        suggestion = smooth_result.suggestion
        assert suggestion.inventory_position == 15  # available 10 + incoming 5
        assert suggestion.should_order and suggestion.order_qty >= 48
        assert suggestion.order_qty % 12 == 0
        assert not by_sku[plenty].suggestion.should_order
        assert run.published == 2 and {r.series.sku for r in run.suggestions} == {weekly, sparse}

        # Staged in the outbox: only the relay publishes. Run one for this schema.
        relay = OutboxRelay(infra.admin_database_url, schema, producer, poll_interval_s=0.1)
        relay_task = asyncio.create_task(relay.run())
        try:
            events = await read_suggestions(consumer, {weekly, sparse})
        finally:
            relay.stop()
            relay_task.cancel()
            await asyncio.gather(relay_task, return_exceptions=True)
    finally:
        await producer.stop()
        await consumer.stop()

    assert set(events) == {weekly, sparse}
    event = events[weekly]
    assert (event.location, event.order_quantity) == ("WH1", suggestion.order_qty)
    assert event.reorder_point == math.ceil(suggestion.reorder_point)
    assert event.safety_stock == math.ceil(suggestion.safety_stock)
    assert event.lead_time_days == 10
    assert event.model == smooth_result.forecast.model and event.wape is not None
    assert float(event.days_of_cover) == pytest.approx(15 / suggestion.forecast_daily, abs=0.05)
    assert events[sparse].lead_time_days == 14

    async with pool.acquire() as conn:
        points = {
            r["sku"]: r["reorder_point"]
            for r in await conn.fetch("SELECT sku, reorder_point FROM levels")
        }
        runs = await conn.fetch("SELECT * FROM replenishment_runs")
    assert points == {
        sku: math.ceil(by_sku[sku].suggestion.reorder_point) for sku in (weekly, sparse, plenty)
    }
    assert points[weekly] != 3  # the old point was replaced
    assert [
        (r["trigger"], r["series"], r["suggestions"], r["reorder_points_set"]) for r in runs
    ] == [("cli", 3, 2, 3)]

    report = tmp_path / "report"
    assert run.report == report / "report.md"
    body = json.loads((report / "report.json").read_text())
    assert {item["sku"] for item in body["items"]} == {weekly, sparse, plenty}
    item = next(i for i in body["items"] if i["sku"] == weekly)
    assert item["should_order"] and item["order_qty"] == suggestion.order_qty
    assert item["reasoning"]["model"] == smooth_result.forecast.model
    assert item["reasoning"]["days_of_cover"] is not None
    markdown = (report / "report.md").read_text()
    assert weekly in markdown and "safety stock" in markdown and young in markdown
    for entry in body["items"]:
        chart = report / entry["chart"]
        assert chart.read_bytes().startswith(PNG_SIGNATURE)
        with Image.open(chart) as image:
            image.verify()
            assert image.size == (900, 600)


async def test_publish_off_stages_nothing_and_keeps_reorder_points(stock_schema):
    _, pool = stock_schema
    today = datetime.now(UTC).date()
    sku = sku_name("DRY")
    history = generate_demand(SCENARIOS["flat"], 60, seed=1)
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO levels (sku, location, on_hand, reorder_point) VALUES ($1, 'WH1', 0, 7)",
            sku,
        )
        await seed_demand(conn, sku, "WH1", history.demand, history.stockout, today)
    run = await run_replenishment(
        pool, RunRequest("cli", publish=False, today=today), source="stockflow/stock"
    )
    assert len(run.suggestions) == 1 and run.published == 0 and run.report is None
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM outbox") == 0
        assert await conn.fetchval("SELECT reorder_point FROM levels WHERE sku = $1", sku) == 7


async def test_the_schedule_runs_once_per_interval_and_only_on_the_lock_holder(infra, stock_schema):
    _, pool = stock_schema
    context = TaskContext(Settings(service="stock"), pool)
    defaults = ReplenishDefaults(interval_s=3600)
    lock = "replenish:stock"  # what run_if_due takes for the stock schema
    other = await asyncpg.connect(infra.admin_database_url)
    try:
        assert await other.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", lock)
        assert await run_if_due(context, defaults) is None  # another instance leads
        await other.execute("SELECT pg_advisory_unlock(hashtext($1))", lock)

        assert await run_if_due(context, defaults) is not None
        assert await run_if_due(context, defaults) is None  # the interval has not passed
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM replenishment_runs") == 1
            await conn.execute(
                "UPDATE replenishment_runs SET finished_at = now() - interval '2 hours'"
            )
        assert await run_if_due(context, defaults) is not None
        # The lock was let go: another instance could take it now.
        assert await other.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", lock)
        await other.execute("SELECT pg_advisory_unlock(hashtext($1))", lock)
    finally:
        await other.close()


# ----------------------------------------------------------------------------- the service


async def send(producer, event) -> None:
    record = encode(event, source="test")
    await producer.send_and_wait(record.topic, record.value, key=record.key, headers=record.headers)


async def until(probe, timeout_s: float = 20):
    for _ in range(int(timeout_s * 10)):
        if await probe():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("condition never held")


async def test_demand_is_recorded_per_location_with_unserved_demand_as_stockout(
    run_service, producer, infra
):
    tee, mug = sku_name("TEE"), sku_name("MUG")
    first, second = f"RA{uuid.uuid4().hex[:6]}", f"RB{uuid.uuid4().hex[:6]}"
    admin = await asyncpg.connect(infra.admin_database_url)
    try:
        async with run_service("stock"):
            for sku in (tee, mug):
                await send(producer, variant(sku))
            for sku, location, quantity in ((tee, first, 3), (tee, second, 2), (mug, second, 1)):
                await send(producer, goods_received(sku, location, quantity, unit_cost="1.00"))

            async def received() -> bool:
                return (
                    await admin.fetchval(
                        "SELECT count(*) FROM stock.levels "
                        "WHERE sku = ANY($1::text[]) AND on_hand > 0",
                        [tee, mug],
                    )
                    == 3
                    and await admin.fetchval(
                        "SELECT count(*) FROM stock.skus WHERE sku = ANY($1::text[])", [tee, mug]
                    )
                    == 2
                )

            await until(received)
            orders = [
                ("split", [(tee, 4)], "allow"),  # 3 at the first location, 1 at the second
                ("short", [(tee, 5)], "allow"),  # the last unit, 4 backordered
                ("rejected", [(mug, 5)], "reject"),  # nothing held: all of it unserved
            ]
            for name, lines, policy in orders:  # one at a time: each sees the last one's holds
                order_id = f"o-{name}-{tee}"
                await send(
                    producer,
                    ReserveStock(
                        order_id=order_id,
                        backorder_policy=policy,
                        lines=[
                            {"line_id": f"L{i}", "sku": sku, "quantity": q}
                            for i, (sku, q) in enumerate(lines, 1)
                        ],
                    ),
                )

                async def answered(order_id: str = order_id) -> bool:
                    return bool(
                        await admin.fetchval(
                            "SELECT 1 FROM stock.order_reservations WHERE order_id = $1", order_id
                        )
                    )

                await until(answered)
        rows = await admin.fetch(
            "SELECT sku, location, sum(quantity) AS quantity, bool_or(stockout) AS stockout "
            "FROM stock.demand_daily WHERE sku = ANY($1::text[]) GROUP BY sku, location",
            [tee, mug],
        )
    finally:
        await admin.close()
    assert {(r["sku"], r["location"]): (r["quantity"], r["stockout"]) for r in rows} == {
        (tee, first): (3 + 4, True),  # served 3, then 4 backordered where the backorder waits
        (tee, second): (1 + 1, False),
        (mug, second): (5, True),  # rejected: recorded at the SKU's location
    }


async def test_settings_api_stores_rows_and_shows_the_effective_settings(run_service):
    sku = sku_name("API")
    async with run_service("stock") as (_, client):
        answer = await client.put(
            "/replenishment/settings",
            headers=ADMIN | {"Idempotency-Key": f"k-{sku}"},
            json={"sku": sku, "lead_time_days": 12, "pack_size": 6},
        )
        assert answer.status_code == 200, answer.text
        local = await client.put(
            "/replenishment/settings",
            headers=ADMIN,
            json={"sku": sku, "location": "WH1", "service_level": 0.98},
        )
        assert local.status_code == 200, local.text
        bad = await client.put(
            "/replenishment/settings", headers=ADMIN, json={"sku": sku, "service_level": 1.2}
        )
        assert bad.status_code == 422 and "service_level" in bad.text
        refused = await client.put("/replenishment/settings", json={"sku": sku})
        assert refused.status_code == 401
        point = await client.put(  # gives the SKU a level at WH1 and WH2
            "/reorder-points",
            headers=ADMIN,
            json={"sku": sku, "location": "WH1", "reorder_point": 1},
        )
        assert point.status_code == 200
        await client.put(
            "/reorder-points",
            headers=ADMIN,
            json={"sku": sku, "location": "WH2", "reorder_point": 1},
        )
        shown = (await client.get(f"/replenishment/settings/{sku}")).json()
    assert [row["location"] for row in shown["stored"]] == ["*", "WH1"]
    wh1, wh2 = shown["effective"]["WH1"], shown["effective"]["WH2"]
    assert (wh1["lead_time_days"], wh1["pack_size"], wh1["service_level"]) == (12, 6, 0.98)
    assert (wh2["lead_time_days"], wh2["pack_size"], wh2["service_level"]) == (12, 6, 0.95)
    assert wh1["method"] == wh2["method"] == "eoq"  # from the service's defaults
