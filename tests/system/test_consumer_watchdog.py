"""The consumer watchdog in a real service (stock, its own roles, the real broker and database):
a consumer wedged on a lock fails /readyz naming it, logs the task stacks, is restarted and
applies what it had fetched once the lock is gone."""

from __future__ import annotations

import asyncio
import json
import uuid

import asyncpg
import pytest

from stockflow.contracts import encode
from stockflow.runtime.testing.factories import goods_received, variant

pytestmark = pytest.mark.system

WATCHDOG = {
    "consumer_stall_timeout_s": 2,
    "consumer_restart_grace_s": 60,
    "consumer_watchdog_interval_s": 0.2,
}


async def send(producer, event) -> None:
    record = encode(event, source="test")
    await producer.send_and_wait(record.topic, record.value, key=record.key, headers=record.headers)


async def until(probe, timeout_s: float = 60):
    for _ in range(int(timeout_s * 10)):
        if value := await probe():
            return value
        await asyncio.sleep(0.1)
    raise AssertionError("condition never held")


async def test_a_consumer_wedged_on_a_lock_fails_readiness_and_recovers_after_its_restart(
    run_service, producer, infra, capfd
):
    sku = f"T{uuid.uuid4().hex[:8].upper()}-WDG"
    admin = await asyncpg.connect(infra.admin_database_url)
    locker = await asyncpg.connect(infra.admin_database_url)

    async def on_hand() -> int:
        value = await admin.fetchval(
            "SELECT on_hand FROM stock.levels WHERE sku = $1 AND location = 'WH-EAST'", sku
        )
        return value or 0

    async def readiness(client, wanted: str):
        response = await client.get("/readyz")
        check = response.json()["checks"].get("consumer stock.receipts", "")
        return response if wanted in check else None

    try:
        async with run_service("stock", **WATCHDOG) as (_, client):
            await send(producer, variant(sku))
            await send(producer, goods_received(sku, "WH-EAST", 5))
            await until(lambda: on_hand_is(on_hand, 5))
            async with locker.transaction():
                await locker.execute("SELECT 1 FROM stock.levels WHERE sku = $1 FOR UPDATE", sku)
                await send(producer, goods_received(sku, "WH-EAST", 7))
                stalled = await until(lambda: readiness(client, "not processed"))
                assert stalled.status_code == 503
                assert await until(lambda: readiness(client, "restarted after stall"))
                assert await on_hand() == 5  # still waiting for the lock
            # The lock is gone: the restarted consumer re-read the receipt and applies it once.
            await until(lambda: on_hand_is(on_hand, 12))
            ready = await until(lambda: ready_response(client))
            assert "consumer stock.receipts" not in ready.json()["checks"]
    finally:
        await locker.close()
        await admin.close()
    lines = [json.loads(line) for line in capfd.readouterr().out.splitlines() if "stalled" in line]
    stall = next(line for line in lines if line["event"] == "consumer stalled; restarting it")
    assert stall["group"] == "stock.receipts" and stall["level"] == "error"
    assert any("on_receipts" in task["stack"] for task in stall["tasks"])


async def on_hand_is(on_hand, expected: int) -> bool:
    return await on_hand() == expected


async def ready_response(client):
    response = await client.get("/readyz")
    return response if response.status_code == 200 else None
