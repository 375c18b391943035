"""Long fault-injection scenarios (`make test-chaos`): processes, broker and database killed,
the relay crashed between publish and mark, replays, races, timeouts and rebalances."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest

from stockflow.cli.checkout_sim import DEMO_MIX, Scenario, order_payload
from stockflow.cli.checkout_sim import SOURCE as CHECKOUT_SOURCE
from stockflow.contracts import encode
from stockflow.contracts.events.checkout import (
    CheckoutOrderCancelRequested,
    CheckoutOrderSubmitted,
    CheckoutPaymentConfirmed,
)
from stockflow.runtime.outbox import OutboxRelay, build_producer

pytestmark = [pytest.mark.chaos, pytest.mark.system, pytest.mark.timeout(900)]
CONSUMING = ("stock", "order", "fulfillment", "accounting")


def prefix(letter: str) -> str:
    return f"{letter}{uuid.uuid4().hex[:6].upper()}"


def order(order_id: str, lines, *, pending_for_s: float | None = None, policy=None):
    payment = None
    if pending_for_s is not None:
        deadline = datetime.now(UTC) + timedelta(seconds=pending_for_s)
        payment = {"status": "pending", "reference": f"pay-{order_id}", "deadline": deadline}
    payload = order_payload(order_id, lines, customer_id="cust-chaos", payment=payment)
    if policy:
        payload["backorder_policy"] = policy
    return encode(CheckoutOrderSubmitted.model_validate(payload), source=CHECKOUT_SOURCE)


async def test_sigkill_each_service_at_random_moments(harness, kit, record):
    """SIGKILL of each service at a random moment under load, and restart."""
    catalog = await harness.seed(prefix("E"))
    mark = await harness.dlq_mark()
    load = kit.Load(harness.producer, catalog, seed=21).start()
    kills = []
    for service in harness.random.sample(list(kit_services()), k=5):
        pause = round(harness.random.uniform(1.0, 6.0), 1)
        await asyncio.sleep(pause)
        await asyncio.to_thread(harness.system.restart, service, signal.SIGKILL)
        kills.append(f"{service}@+{pause}s")
    await asyncio.sleep(5)
    await harness.conclude(load, mark, record)
    record.injected = "SIGKILL + restart of every service in random order: " + ", ".join(kills)
    record.numbers.update(kills=len(kills), load_seconds=round(load.duration_s, 1))


def kit_services():
    return ("catalog", "stock", "order", "fulfillment", "accounting")


async def test_kafka_broker_sigkill_and_restart(harness, kit, record):
    """Kafka broker SIGKILL under load, restarted 5 s later."""
    catalog = await harness.seed(prefix("B"))
    mark = await harness.dlq_mark()
    load = kit.Load(harness.producer, catalog, seed=23).start()
    await asyncio.sleep(5)
    pid = harness.kafka_pid()
    kit.kill_process_group(pid)
    down_at = time.monotonic()
    await asyncio.sleep(5)
    await asyncio.to_thread(harness.infra_up)
    outage = round(time.monotonic() - down_at, 1)
    await asyncio.to_thread(harness.wait_all_ready)
    await asyncio.sleep(8)
    await harness.conclude(load, mark, record)
    record.injected = f"SIGKILL of the Kafka broker (pid {pid}) under load; restarted after 5 s"
    record.numbers.update(outage_s=outage, load_seconds=round(load.duration_s, 1))


async def test_postgres_restart_under_load(harness, kit, record):
    """PostgreSQL restart (immediate shutdown: a crash) under load."""
    catalog = await harness.seed(prefix("G"))
    mark = await harness.dlq_mark()
    load = kit.Load(harness.producer, catalog, seed=29).start()
    await asyncio.sleep(5)
    local, profile = harness.system.local, harness.system.profile
    started = time.monotonic()
    result = await asyncio.to_thread(
        subprocess.run,
        local.as_pg_user(
            [
                local.pg_bin("pg_ctl"),
                "restart",
                "-D",
                str(profile.state / "pg"),
                "-m",
                "immediate",
                "-w",
                "-l",
                str(profile.state / "logs" / "postgres.log"),
            ]
        ),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-500:]
    restart_s = round(time.monotonic() - started, 1)
    await asyncio.to_thread(harness.wait_all_ready)
    await asyncio.sleep(8)
    await harness.conclude(load, mark, record)
    record.injected = "pg_ctl restart -m immediate (crash + recovery) 5 s into the load"
    record.numbers.update(restart_s=restart_s, load_seconds=round(load.duration_s, 1))


async def test_outbox_relay_killed_between_publish_and_mark(harness, kit, record):
    """The outbox relay killed between publish and mark: every row published again."""
    catalog = await harness.seed(prefix("R"))
    mark = await harness.dlq_mark()
    load = kit.Load(harness.producer, catalog, seed=31).start()
    await asyncio.sleep(6)
    services = {"order": "orders", "stock": "stock"}
    # Both die together: killing one first would starve the other of input while it restarts.
    await asyncio.gather(
        *(asyncio.to_thread(harness.system.kill, s, signal.SIGKILL) for s in services)
    )
    republished = {}
    for service, schema in services.items():
        # Rows it published in its last 4 s are, as far as the outbox knows, unpublished:
        # exactly what a crash between publish and mark leaves behind.
        count = await harness.val(
            f"WITH u AS (UPDATE {schema}.outbox SET sent_at = NULL WHERE sent_at > "
            f"(SELECT max(sent_at) FROM {schema}.outbox) - interval '4 seconds' RETURNING 1) "
            "SELECT count(*) FROM u"
        )
        assert count > 0, f"{service} published nothing under load"
        # The runtime's own relay and producer, crashing after it published and before it marked.
        producer = build_producer(harness.infra.kafka_bootstrap, client_id="chaos-relay")
        await producer.start()
        relay = OutboxRelay(harness.infra.role_url(f"{schema}_app"), schema, producer)
        relay.crash_before_mark = True
        try:
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(relay.run(), 60)
        finally:
            await producer.stop()
        still = await harness.val(f"SELECT count(*) FROM {schema}.outbox WHERE sent_at IS NULL")
        assert still >= count, "the crashed relay marked rows it should not have"
        republished[service] = count
    for service in services:  # their own relays publish every unmarked row again
        await asyncio.to_thread(harness.system.start, service)
    await asyncio.sleep(6)
    await harness.conclude(load, mark, record)
    record.injected = (
        "order and stock SIGKILLed; their last 4 s of outbox rows unmarked; the runtime relay "
        "run with crash_before_mark; restarted (each row published 3 times)"
    )
    record.numbers.update(rows_republished=republished, load_seconds=round(load.duration_s, 1))


async def test_replay_every_input_from_offset_zero(harness, kit, record):
    """Every input replayed from offset zero: nothing changes twice."""
    catalog = await harness.seed(prefix("Z"))
    mark = await harness.dlq_mark()
    # No backorders: every order of the first run ends, so its footprint stops changing.
    mix = {k: v for k, v in DEMO_MIX.items() if k is not Scenario.BACKORDER}
    first = await kit.Load(harness.producer, catalog, seed=37, mix=mix).run_for(10)
    await harness.assert_invariants(first, terminal=True)

    async def snapshot():
        return (
            await harness.states(first),
            [
                tuple(r)
                for r in await harness.sql(
                    "SELECT sku, location, on_hand, reserved, backordered FROM stock.levels "
                    "WHERE sku LIKE $1 ORDER BY 1, 2",
                    catalog.skus[0].split("-")[0] + "-%",
                )
            ],
            await harness.val(
                "SELECT count(*) FROM stock.movements WHERE order_id = ANY($1::text[])", first
            ),
            await harness.val(
                "SELECT count(*) FROM orders.timeline WHERE order_id = ANY($1::text[])", first
            ),
            await harness.val(
                "SELECT count(*) FROM accounting.journal_lines WHERE order_id = ANY($1::text[])",
                first,
            ),
            await harness.val(
                "SELECT count(*) FROM fulfillment.shipments WHERE order_id = ANY($1::text[])",
                first,
            ),
        )

    other = await harness.seed(prefix("Y"))  # fresh load on other skus: the first run's stay put
    before = await snapshot()
    wiring = kit.consumer_wiring()
    groups: dict[str, list[str]] = {}
    for topic, consumers in wiring.items():
        for _service, group, _types in consumers:
            groups.setdefault(group, []).append(topic)
    for service in CONSUMING:
        await asyncio.to_thread(harness.system.kill, service, signal.SIGTERM)
    partitions = await harness.rewind_groups(groups)
    backlog = await harness.group_lag(list(groups))
    second = kit.Load(harness.producer, other, seed=41)
    for service in CONSUMING:
        await asyncio.to_thread(harness.system.start, service)
    second.start()
    replay_started = time.monotonic()
    for _ in range(200):  # bounded: 400 s
        if await harness.group_lag(list(groups)) == 0:
            break
        await asyncio.sleep(2)
        if time.monotonic() - replay_started > 20 and not second.stopped:
            await second.stop()  # 20 s of fresh load beside the replay is enough
    replay_s = round(time.monotonic() - replay_started, 1)
    second_ids = await second.stop()
    await harness.assert_invariants([*first, *second_ids], record)
    assert await snapshot() == before
    await harness.assert_no_dead_letters(mark, record)
    record.injected = (
        f"every consumer group of {len(groups)} rewound to offset zero on {partitions} "
        "partitions, services restarted, fresh load meanwhile"
    )
    record.checks.append("state of the first run's orders, stock, ledger, journal unchanged")
    record.numbers.update(replayed_records=backlog, replay_s=replay_s, groups=len(groups))


async def test_cancel_races_reservation(harness, kit, record):
    """Cancel racing the reservation: cancelled orders hold nothing, others shipped."""
    catalog = await harness.seed(prefix("C"), stock=200)
    hot = catalog.skus[0]
    mark = await harness.dlq_mark()
    load = kit.Load(harness.producer, catalog, seed=43).start()
    ids = [f"ord-race-{uuid.uuid4().hex[:8]}" for _ in range(40)]
    for n, order_id in enumerate(ids):
        await kit.send_reliably(harness.producer, order(order_id, [(hot, 2)]))
        await asyncio.sleep(harness.random.uniform(0.0, 0.4) if n % 2 else 0.0)
        cancel = CheckoutOrderCancelRequested(order_id=order_id, reason="race")
        await kit.send_reliably(harness.producer, encode(cancel, source=CHECKOUT_SOURCE))
    states = await harness.conclude(load, mark, record, focus=ids)
    cancelled = [o for o in ids if states[o] == "cancelled"]
    delivered = [o for o in ids if states[o] == "delivered"]
    assert len(cancelled) + len(delivered) == len(ids), states
    assert cancelled, "no cancel won the race: the scenario tested nothing"
    held = await harness.val(
        "SELECT coalesce(sum(quantity), 0) FROM stock.reservations WHERE order_id = ANY($1)", ids
    )
    shipped = await harness.sql(
        "SELECT order_id, sum(quantity) AS q FROM stock.movements "
        "WHERE kind = 'shipment' AND order_id = ANY($1) GROUP BY order_id",
        ids,
    )
    shipped_by = {r["order_id"]: abs(int(r["q"])) for r in shipped}
    assert held == 0
    assert set(shipped_by) == set(delivered)
    assert all(q == 2 for q in shipped_by.values()), shipped_by
    record.injected = "40 orders each followed by its cancel 0-400 ms later, under load"
    record.checks.append("cancelled orders hold and ship nothing; the others ship exactly once")
    record.numbers.update(cancelled=len(cancelled), delivered=len(delivered))


async def test_restock_races_reservations(harness, kit, record):
    """Restock racing reservations on a scarce sku: never oversold, units conserved."""
    catalog = await harness.seed(prefix("S"))
    scarce = f"{catalog.skus[0].split('-')[0]}-SCARCE"
    await harness.upsert_variant(scarce)
    await harness.receive(scarce, "WH-EAST", 5)
    await harness.wait_for(lambda: harness.on_hand(scarce), (5, 0), what="initial scarce stock")
    mark = await harness.dlq_mark()
    load = kit.Load(harness.producer, catalog, seed=47).start()
    ids = [f"ord-scarce-{uuid.uuid4().hex[:8]}" for _ in range(40)]

    async def buyers():
        for order_id in ids:
            await kit.send_reliably(
                harness.producer, order(order_id, [(scarce, 1)], policy="reject")
            )
            await asyncio.sleep(0.05)

    async def restocks():
        for n in range(20):
            await harness.receive(scarce, harness.random.choice(kit.LOCATIONS), 1)
            await asyncio.sleep(0.1 if n % 3 else 0.0)

    await asyncio.gather(buyers(), restocks())
    states = await harness.conclude(load, mark, record, focus=ids)
    delivered = sum(1 for s in states.values() if s == "delivered")
    rejected = sum(1 for s in states.values() if s == "rejected")
    assert delivered + rejected == len(ids), states
    assert delivered <= 25
    on_hand, reserved = await harness.on_hand(scarce)
    assert (on_hand, reserved) == (25 - delivered, 0)
    record.injected = (
        "40 one-unit orders (backorder: reject) racing 20 one-unit receipts on 5 units"
    )
    record.checks.append("delivered <= units received; on_hand == received - delivered")
    record.numbers.update(delivered=delivered, rejected=rejected, left_on_hand=on_hand)


async def test_payment_timeout_then_late_payment(harness, kit, record):
    """Payment timeout, then the payment arrives late: the order stays cancelled."""
    catalog = await harness.seed(prefix("T"), stock=200)
    mark = await harness.dlq_mark()
    load = kit.Load(harness.producer, catalog, seed=53).start()
    late = [f"ord-late-{uuid.uuid4().hex[:8]}" for _ in range(10)]
    on_time = [f"ord-paid-{uuid.uuid4().hex[:8]}" for _ in range(5)]
    for order_id in late + on_time:
        await kit.send_reliably(
            harness.producer,
            order(order_id, [(catalog.skus[0], 1)], pending_for_s=3),
        )

    def paid(order_id):
        event = CheckoutPaymentConfirmed(order_id=order_id, reference=f"pay-{order_id}")
        return encode(event, source=CHECKOUT_SOURCE)

    for order_id in on_time:
        await kit.send_reliably(harness.producer, paid(order_id))
    timed_out = await harness.settle(late, states=("cancelled",), timeout_s=120)
    assert set(timed_out.values()) == {"cancelled"}, timed_out
    for order_id in late:
        await kit.send_reliably(harness.producer, paid(order_id))
    await asyncio.sleep(5)
    states = await harness.conclude(load, mark, record, focus=late + on_time)
    assert {states[o] for o in late} == {"cancelled"}
    assert {states[o] for o in on_time} == {"delivered"}
    reasons = await harness.sql(
        "SELECT order_id, saga->>'reason' AS reason FROM orders.orders WHERE order_id = ANY($1)",
        late,
    )
    assert {r["reason"] for r in reasons} == {"payment_timeout"}, reasons
    late_moves = await harness.val(
        "SELECT count(*) FROM stock.movements WHERE order_id = ANY($1) AND kind = 'shipment'",
        late,
    )
    assert late_moves == 0
    record.injected = "10 pending orders left to time out (3 s), then paid; 5 paid in time"
    record.checks.append("late-paid orders stay cancelled (payment_timeout), nothing shipped")
    record.numbers.update(timed_out=len(late), paid_in_time=len(on_time))


async def test_rebalance_with_a_second_instance_of_stock_and_order(harness, kit, record):
    """Consumer-group rebalance: a second stock and order instance started, then stopped."""
    catalog = await harness.seed(prefix("L"))
    mark = await harness.dlq_mark()
    load = kit.Load(harness.producer, catalog, seed=59).start()
    await asyncio.sleep(3)
    extras = {}
    for offset, service in ((20, "stock"), (21, "order")):
        extras[service] = await asyncio.to_thread(harness.spawn_extra, service, offset)
    await asyncio.sleep(8)
    for service, proc in extras.items():
        kit.kill_process_group(proc.pid, signal.SIGTERM if service == "stock" else signal.SIGKILL)
        await asyncio.to_thread(proc.wait, 60)
    await asyncio.sleep(6)
    await harness.conclude(load, mark, record)
    record.injected = (
        "second stock and order processes joined the groups under load for 8 s, then left "
        "(stock by SIGTERM, order by SIGKILL)"
    )
    record.numbers.update(rebalances=4, load_seconds=round(load.duration_s, 1))


WATCHDOG_ENV = {
    "STOCKFLOW_CONSUMER_STALL_TIMEOUT_S": "3",
    "STOCKFLOW_CONSUMER_RESTART_GRACE_S": "60",
    "STOCKFLOW_CONSUMER_WATCHDOG_INTERVAL_S": "0.5",
}


async def stalled_consumers(url: str, wanted: str, timeout_s: float = 60) -> dict[str, str]:
    """The consumer checks of `url`/readyz once one of them says `wanted`."""
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(timeout=5) as client:
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                response = await client.get(f"{url}/readyz")
                checks = {
                    name: check
                    for name, check in response.json()["checks"].items()
                    if name.startswith("consumer ")
                }
                if any(wanted in check for check in checks.values()):
                    assert response.status_code == 503, checks
                    return checks
            await asyncio.sleep(0.2)
    raise AssertionError(f"no consumer of {url} reported {wanted!r} within {timeout_s} s")


async def test_a_consumer_wedged_on_a_lock_is_restarted_by_its_watchdog(harness, kit, record):
    """A consumer wedged on a row lock under load: unready, restarted, recovered."""
    system = harness.system
    saved = dict(system.env)
    system.env.update(WATCHDOG_ENV)
    try:
        await asyncio.to_thread(system.restart, "stock", signal.SIGTERM)
        log_file = system.logs / "stock.log"
        log_start = log_file.stat().st_size
        catalog = await harness.seed(prefix("W"))
        mark = await harness.dlq_mark()
        load = kit.Load(harness.producer, catalog, seed=37).start()
        await asyncio.sleep(3)
        locker = await asyncpg.connect(harness.dsn)
        try:
            async with locker.transaction():
                await locker.execute(
                    "SELECT 1 FROM stock.levels WHERE sku = ANY($1) FOR UPDATE", catalog.skus
                )
                locked_at = time.monotonic()
                stalled = await stalled_consumers(system.url("stock"), "stalled:")
                await stalled_consumers(system.url("stock"), "restarted after stall")
                held_s = round(time.monotonic() - locked_at, 1)
        finally:
            await locker.close()
        await asyncio.to_thread(harness.wait_all_ready)
        await harness.conclude(load, mark, record)
        assert system.procs["stock"].poll() is None, "stock exited: the restart did not help"
        with log_file.open("rb") as log:
            log.seek(log_start)
            logged = [json.loads(line) for line in log if b"consumer stalled" in line]
        assert logged and all(entry["tasks"] for entry in logged), "no task stacks logged"
    finally:
        system.env.clear()
        system.env.update(saved)
        await asyncio.to_thread(system.restart, "stock", signal.SIGTERM)
    record.injected = (
        "the stocked SKUs' level rows locked FOR UPDATE under load until the stock watchdog "
        "(stall 3 s) restarted the wedged consumers; then released"
    )
    record.checks.append("/readyz names the stalled consumers; task stacks logged; no exit")
    record.numbers.update(
        stalled=", ".join(sorted(name.removeprefix("consumer ") for name in stalled)),
        lock_held_s=held_s,
        load_seconds=round(load.duration_s, 1),
    )
