"""The consumer watchdog in a real stock service (its own roles, the real broker and database):
a consumer wedged on a row lock fails /readyz naming it and is restarted; one still wedged after
that logs the task stacks and exits the process for its supervisor."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import uuid

import asyncpg
import httpx
import pytest

from stockflow.runtime.testing.factories import goods_received, variant
from stockflow.runtime.testing.plugin import send
from stockflow.runtime.testing.system import System
from stockflow.runtime.watchdog import STALL_EXIT_CODE

pytestmark = pytest.mark.system

WATCHDOG = {
    "consumer_stall_timeout_s": 2,
    "consumer_restart_grace_s": 60,
    "consumer_watchdog_interval_s": 0.2,
}


async def until(probe, timeout_s: float = 60):
    for _ in range(int(timeout_s * 10)):
        if value := await probe():
            return value
        await asyncio.sleep(0.1)
    raise AssertionError("condition never held")


async def test_a_consumer_wedged_on_a_lock_fails_readiness_and_recovers_after_its_restart(
    run_service, producer, infra
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


async def on_hand_is(on_hand, expected: int) -> bool:
    return await on_hand() == expected


async def ready_response(client):
    response = await client.get("/readyz")
    return response if response.status_code == 200 else None


def spawn_stock(system: System, port: int, env: dict[str, str]) -> subprocess.Popen:
    service_env = system.local.service_env(system.profile, "stock")
    with (system.logs / "stock-watchdog.log").open("ab") as log:
        return subprocess.Popen(
            system.local.service_cmd("stock", port),
            env=service_env | {"STOCKFLOW_HTTP_PORT": str(port)} | env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


async def wait_ready(url: str, proc: subprocess.Popen) -> None:
    async def ready():
        assert proc.poll() is None, f"stock exited with {proc.returncode}"
        with contextlib.suppress(httpx.HTTPError):
            return (await client.get(f"{url}/readyz")).status_code == 200
        return False

    async with httpx.AsyncClient(timeout=2) as client:
        await until(ready, timeout_s=90)


async def test_a_consumer_still_wedged_after_its_restart_exits_the_process_for_its_supervisor(
    producer, infra
):
    system = System(infra)
    system.logs.mkdir(parents=True, exist_ok=True)
    log_file = system.logs / "stock-watchdog.log"
    log_start = len(log_file.read_text().splitlines()) if log_file.exists() else 0
    port = system.profile.http_port("stock") + 150
    env = {
        "STOCKFLOW_CONSUMER_STALL_TIMEOUT_S": "2",
        "STOCKFLOW_CONSUMER_RESTART_GRACE_S": "4",
        "STOCKFLOW_CONSUMER_WATCHDOG_INTERVAL_S": "0.2",
    }
    sku = f"T{uuid.uuid4().hex[:8].upper()}-EXIT"
    admin = await asyncpg.connect(infra.admin_database_url)
    locker = await asyncpg.connect(infra.admin_database_url)
    procs = [await asyncio.to_thread(spawn_stock, system, port, env)]

    async def on_hand_is(expected: int) -> bool:
        value = await admin.fetchval(
            "SELECT on_hand FROM stock.levels WHERE sku = $1 AND location = 'WH-EAST'", sku
        )
        return value == expected

    try:
        await wait_ready(f"http://127.0.0.1:{port}", procs[0])
        await send(producer, variant(sku))
        await send(producer, goods_received(sku, "WH-EAST", 5))
        await until(lambda: on_hand_is(5))
        async with locker.transaction():
            await locker.execute("SELECT 1 FROM stock.levels WHERE sku = $1 FOR UPDATE", sku)
            await send(producer, goods_received(sku, "WH-EAST", 7))
            exit_code = await asyncio.to_thread(procs[0].wait, 90)
        assert exit_code == STALL_EXIT_CODE
        # Its supervisor starts it again: the receipt it never applied is applied, once.
        procs.append(await asyncio.to_thread(spawn_stock, system, port, env))
        await wait_ready(f"http://127.0.0.1:{port}", procs[1])
        await until(lambda: on_hand_is(12))
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                await asyncio.to_thread(proc.wait, 30)
        await locker.close()
        await admin.close()
    logged = (system.logs / "stock-watchdog.log").read_text().splitlines()
    events = [json.loads(line) for line in logged[log_start:] if line.startswith("{")]
    stall = next(e for e in events if e["event"] == "consumer stalled; restarting it")
    assert stall["group"] == "stock.receipts" and stall["level"] == "error"
    # Every task's await chain: the receipts handler, waiting for the row lock.
    assert any("on_receipts" in task["stack"] for task in stall["tasks"])
    assert any(e["event"].startswith("consumer still stalled after a restart") for e in events)
