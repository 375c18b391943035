"""stock.levels.v1 against real Kafka and PostgreSQL: what survives compaction rebuilds every level.

Compaction keeps the last record per Kafka key and nothing else; a storefront that reads the
topic from the beginning sees exactly that. The tests apply the same rule to what they read (the
broker's cleaner runs on its own schedule, the guarantee is the rule) and compare the result
with the levels table and the API.
"""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from stockflow.contracts import decode, encode, parse
from stockflow.contracts.events.stock import LEVELS, ReserveStock, StockLevelChanged
from stockflow.runtime.testing.factories import goods_received, variant
from stockflow.runtime.testing.plugin import read_topic

pytestmark = pytest.mark.integration

BUCKETS = (
    "on_hand",
    "reserved",
    "available",
    "incoming",
    "backordered",
    "damaged",
    "quality_control",
    "safety_stock",
)


async def send(producer, event) -> None:
    record = encode(event, source="test")
    await producer.send_and_wait(record.topic, record.value, key=record.key, headers=record.headers)


async def drained(admin: asyncpg.Connection) -> bool:
    return not await admin.fetchval(
        "SELECT count(*) FROM stock.outbox WHERE sent_at IS NULL AND topic = $1", LEVELS
    )


async def total(admin: asyncpg.Connection, sku: str, bucket: str, units: int) -> bool:
    query = f"SELECT coalesce(sum({bucket}), 0) FROM stock.levels WHERE sku = $1"
    return bool(await admin.fetchval(query, sku) == units)


async def until(probe, timeout_s: float = 60) -> None:
    for _ in range(int(timeout_s * 10)):
        if await probe():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("condition never held")


async def compacted_levels(bootstrap: str) -> dict[tuple[str, str], StockLevelChanged]:
    """The topic as compaction leaves it (last record per key), rebuilt into levels."""
    records = await read_topic(bootstrap, LEVELS, expect=10**9, timeout_s=5)
    last_per_key = {record.key: record for record in records}
    levels: dict[tuple[str, str], StockLevelChanged] = {}
    for record in last_per_key.values():
        event = parse(decode(record.value, record.headers))
        assert isinstance(event, StockLevelChanged)
        seen = levels.get((event.sku, event.location))
        if seen is None or seen.version < event.version:  # a reader drops stale versions
            levels[(event.sku, event.location)] = event
    return levels


@pytest.fixture
async def admin(infra):
    conn = await asyncpg.connect(infra.admin_database_url)
    yield conn
    await conn.close()


async def test_the_compacted_stream_rebuilds_every_location_of_a_sku(
    run_service, producer, infra, admin
):
    sku = f"T{uuid.uuid4().hex[:8].upper()}-LVL"
    async with run_service("stock") as (_, client):
        await send(producer, variant(sku))
        await send(producer, goods_received(sku, "WH-EAST", 5))
        await send(producer, goods_received(sku, "WH-WEST", 7))
        await until(lambda: total(admin, sku, "on_hand", 12))
        reserve = ReserveStock(
            order_id=f"o-lvl-{uuid.uuid4().hex[:8]}",
            lines=[{"line_id": "L1", "sku": sku, "quantity": 6}],
        )
        await send(producer, reserve)
        await until(lambda: total(admin, sku, "reserved", 6))
        await until(lambda: drained(admin))
        table = await admin.fetch("SELECT * FROM stock.levels WHERE sku = $1", sku)
        api = (await client.get(f"/levels/{sku}")).json()

    stream = await compacted_levels(infra.kafka_bootstrap)
    rebuilt = {key: event for key, event in stream.items() if key[0] == sku}
    assert set(rebuilt) == {(sku, "WH-EAST"), (sku, "WH-WEST")}
    for row in table:
        event = rebuilt[(sku, row["location"])]
        assert {b: getattr(event, b) for b in BUCKETS} == {b: row[b] for b in BUCKETS}
        assert event.version == row["version"]
    by_location = {level["location"]: level for level in api["locations"]}
    for (_, location), event in rebuilt.items():
        assert event.on_hand == by_location[location]["on_hand"]
        assert event.available == by_location[location]["available"]


def test_a_level_record_is_keyed_by_sku_and_location():
    event = StockLevelChanged(
        sku="TEE-M",
        location="WH-1",
        on_hand=1,
        reserved=0,
        available=1,
        incoming=0,
        backordered=0,
        version=1,
        changed_at="2024-05-01T12:00:00Z",
    )
    assert encode(event, source="test").key == b"TEE-M@WH-1"


async def test_a_level_without_a_record_of_its_version_is_published_once_at_start(
    run_service, producer, infra, admin
):
    """Levels from before the key named the location (migration 0006 leaves them unpublished)
    get one record each under their sku@location key when the service starts."""
    sku = f"T{uuid.uuid4().hex[:8].upper()}-OLD"
    key = f"{sku}@WH-EAST".encode()
    async with run_service("stock"):
        await send(producer, variant(sku))
        await send(producer, goods_received(sku, "WH-EAST", 4))
        await until(lambda: total(admin, sku, "on_hand", 4))
        await until(lambda: drained(admin))
    await admin.execute("UPDATE stock.levels SET published_version = 0 WHERE sku = $1", sku)
    async with run_service("stock"):
        await until(
            lambda: admin.fetchval(
                "SELECT version = published_version FROM stock.levels WHERE sku = $1", sku
            )
        )
        await until(lambda: drained(admin))
    records = await read_topic(infra.kafka_bootstrap, LEVELS, expect=10**9, timeout_s=5)
    ours = [parse(decode(r.value, r.headers)) for r in records if r.key == key]
    assert [(e.version, e.on_hand) for e in ours] == [(1, 4), (1, 4)]
