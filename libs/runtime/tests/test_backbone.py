"""The backbone against the real broker and database: outbox, relay, inbox, DLQ, HTTP writes."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import signal
import subprocess
import sys
from decimal import Decimal
from types import SimpleNamespace
from typing import ClassVar

import asyncpg
import httpx
import pytest
import structlog
from fastapi import FastAPI, Request
from prometheus_client import REGISTRY

from stockflow.contracts import EVENT_TYPES, Event, KafkaRecord, encode
from stockflow.runtime.consumer import Consumer, Inbound, RecordRefused
from stockflow.runtime.db import MigrationError, migrate
from stockflow.runtime.http import idempotent_write
from stockflow.runtime.outbox import (
    OutboxRelay,
    RelayLimits,
    UnitOfWork,
    build_producer,
    partition_for,
    unit_of_work,
)
from stockflow.runtime.service import (
    ServiceDefinition,
    _readiness,
    build_broker,
    consumer_watchdog,
)
from stockflow.runtime.settings import Settings
from stockflow.runtime.testing.infra import INFRA_SCRIPT, lane_profile
from stockflow.runtime.testing.plugin import read_topic
from stockflow.runtime.watchdog import STALL_EXIT_CODE, ConsumerProgress

pytestmark = pytest.mark.integration


class Ping(Event):
    """A test event: `seq` counts per key."""

    event_type: ClassVar[str] = "test.ping.v1"
    topic: ClassVar[str] = "set-per-test"
    key_field: ClassVar[str] = "k"
    k: str
    seq: int


@pytest.fixture(autouse=True)
def _ping_registered(monkeypatch):
    monkeypatch.setitem(EVENT_TYPES, Ping.event_type, Ping)


def ping_record(topic: str, k: str, seq: int, event_id: str | None = None) -> KafkaRecord:
    record = encode(Ping(k=k, seq=seq), source="test", event_id=event_id)
    return KafkaRecord(topic, record.key, record.value, record.headers)


async def stage(pool: asyncpg.Pool, records: list[KafkaRecord]) -> None:
    async with unit_of_work(pool, source="test") as uow:
        for record in records:
            uow.publish_raw(record)


async def run_relay(
    infra,
    schema: str,
    *,
    until_published: int,
    crash_before_mark=False,
    batch_size=500,
    timeout_s=60,
) -> OutboxRelay:
    producer = build_producer(infra.kafka_bootstrap, client_id="test-relay")
    await producer.start()
    relay = OutboxRelay(
        infra.admin_database_url,
        schema,
        producer,
        poll_interval_s=0.1,
        limits=RelayLimits(batch_size=batch_size),
    )
    relay.crash_before_mark = crash_before_mark
    task = asyncio.create_task(relay.run())
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while relay.stats.published < until_published and not task.done():
            assert loop.time() < deadline, f"relay published {relay.stats.published}"
            await asyncio.sleep(0.05)
    finally:
        relay.stop()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await producer.stop()
    return relay


async def outbox_counts(pool) -> tuple[int, int]:
    row = await pool.fetchrow(
        "SELECT count(*) FILTER (WHERE sent_at IS NULL) AS unsent, count(*) AS total FROM outbox"
    )
    return row["unsent"], row["total"]


def test_the_relay_partitions_keys_like_the_java_client():
    from aiokafka.partitioner import DefaultPartitioner

    partitions = list(range(6))
    for key in [b"", b"o-1", b"SKU-0001", "ünïcode".encode(), os.urandom(40)] * 2:
        assert partition_for(key, partitions, partitions) == DefaultPartitioner()(
            key, partitions, partitions
        )
    assert partition_for(None, partitions, [3]) == 3


async def test_a_rolled_back_transaction_stages_nothing(scratch_schema):
    _, pool = scratch_schema
    await pool.execute("CREATE TABLE things (id int)")
    with pytest.raises(RuntimeError):
        async with unit_of_work(pool, source="test") as uow:
            await uow.conn.execute("INSERT INTO things VALUES (1)")
            uow.publish_raw(ping_record("nowhere", "a", 1))
            raise RuntimeError("handler failed")
    assert await outbox_counts(pool) == (0, 0)
    assert await pool.fetchval("SELECT count(*) FROM things") == 0


async def test_per_key_order_survives_a_relay_restart(infra, scratch_schema, new_topic):
    schema, pool = scratch_schema
    topic = await new_topic(partitions=3)
    keys = ["k1", "k2", "k3", "k4"]
    await stage(pool, [ping_record(topic, k, seq) for seq in range(500) for k in keys])

    await run_relay(infra, schema, until_published=600, batch_size=200)  # stopped midway
    unsent, _ = await outbox_counts(pool)
    assert 0 < unsent < 2000
    await run_relay(infra, schema, until_published=unsent, batch_size=200)
    assert (await outbox_counts(pool))[0] == 0

    records = await read_topic(infra.kafka_bootstrap, topic, expect=2000)
    seen: dict[str, list[int]] = {k: [] for k in keys}
    ids = set()
    for record in records:
        event_id = dict(record.headers)["ce_id"]
        if event_id in ids:
            continue  # a re-publish after the restart; consumers' inboxes absorb it
        ids.add(event_id)
        payload = json.loads(record.value)
        seen[payload["k"]].append(payload["seq"])
    assert all(seen[k] == list(range(500)) for k in keys)


async def test_relay_killed_between_publish_and_mark_is_absorbed_by_the_inbox(
    infra, scratch_schema, new_topic
):
    schema, pool = scratch_schema
    topic = await new_topic(partitions=1)
    await new_topic(partitions=1, name=f"{schema}.dlq.v1")
    await pool.execute("CREATE TABLE effects (k text, seq int)")
    await stage(pool, [ping_record(topic, "k", seq) for seq in range(10)])

    with contextlib.suppress(asyncio.CancelledError):
        await run_relay(infra, schema, until_published=1, crash_before_mark=True, timeout_s=10)
    assert (await outbox_counts(pool))[0] == 10  # published, never marked
    await run_relay(infra, schema, until_published=10)
    assert len(await read_topic(infra.kafka_bootstrap, topic, expect=20)) == 20

    async def apply(uow: UnitOfWork, msg: Inbound) -> None:
        await uow.conn.execute("INSERT INTO effects VALUES ($1, $2)", msg.event.k, msg.event.seq)

    async with running_consumer(infra, schema, pool, Consumer("test.effects", [topic], apply)):
        await wait_for(lambda: pool.fetchval("SELECT count(*) FROM inbox"), 10)
        await asyncio.sleep(1)  # give any second copy the time to (wrongly) apply
    assert await pool.fetchval("SELECT count(*) FROM effects") == 10
    assert await pool.fetchval("SELECT count(DISTINCT seq) FROM effects") == 10


async def test_poison_goes_to_the_dlq_with_its_reason_and_the_rest_is_processed(
    infra, scratch_schema, new_topic, producer
):
    schema, pool = scratch_schema
    topic = await new_topic(partitions=1)
    dlq = await new_topic(partitions=1, name=f"{schema}.dlq.v1")
    await pool.execute("CREATE TABLE effects (seq int)")

    async def apply(uow: UnitOfWork, msg: Inbound) -> None:
        if msg.event.seq == 3:
            raise RuntimeError("boom on 3")
        await uow.conn.execute("INSERT INTO effects VALUES ($1)", msg.event.seq)

    first = ping_record(topic, "k", 1)
    sends = [
        first,
        KafkaRecord(topic, b"k", b"\xffnot json at all", []),
        ping_record(topic, "k", 2),
        KafkaRecord(
            topic,
            b"k",
            b'{"k": "k", "seq": "two"}',
            [(n, v) for n, v in first.headers if n != "ce_id"] + [("ce_id", b"bad-seq")],
        ),
        ping_record(topic, "k", 3),
        KafkaRecord(
            topic,
            b"k",
            first.value,
            [
                (n, v if n != "ce_type" else b"test.unknown.v1")
                for n, v in first.headers
                if n != "ce_id"
            ]
            + [("ce_id", b"unknown-type")],
        ),
        first,  # redelivered duplicate
        ping_record(topic, "k", 4),
    ]
    for record in sends:
        await producer.send(topic, record.value, key=record.key, headers=record.headers)
    await producer.flush()

    consumer = Consumer("test.poison", [topic], apply)
    async with running_consumer(infra, schema, pool, consumer):
        await wait_for(lambda: pool.fetchval("SELECT count(*) FROM dead_letters"), 4)
        await wait_for(lambda: pool.fetchval("SELECT count(*) FROM effects"), 3)
        await run_relay(infra, schema, until_published=4)

    assert [r["seq"] for r in await pool.fetch("SELECT seq FROM effects ORDER BY seq")] == [1, 2, 4]
    dead = await read_topic(infra.kafka_bootstrap, dlq, expect=4)
    by_offset = {int(dict(r.headers)["dlq_source_offset"]): r for r in dead}
    assert sorted(by_offset) == [1, 3, 4, 5]
    assert by_offset[1].value == b"\xffnot json at all"  # the original bytes, untouched
    reasons = {o: dict(r.headers)["dlq_reason"].decode() for o, r in by_offset.items()}
    assert "not a CloudEvent" in reasons[1]
    assert "seq" in reasons[3]  # names the field at fault
    assert "boom on 3" in reasons[4] and "3 attempt" in reasons[4]
    assert "unknown event type" in reasons[5]
    assert dict(by_offset[4].headers)["dlq_source_topic"].decode() == topic


async def test_a_refused_record_is_dead_lettered_at_once_with_the_handlers_reason(
    infra, scratch_schema, new_topic, producer
):
    """A valid record the service refuses on its merits (RecordRefused) is not retried: it goes
    to the DLQ with the handler's reason, and the records around it are applied."""
    schema, pool = scratch_schema
    topic = await new_topic(partitions=1)
    await new_topic(partitions=1, name=f"{schema}.dlq.v1")
    await pool.execute("CREATE TABLE effects (seq int)")
    refusals = []

    async def apply(uow: UnitOfWork, msg: Inbound) -> None:
        if msg.event.seq == 2:
            refusals.append(msg.event_id)
            raise RecordRefused("receipt_id: r-1 was already applied with other values")
        await uow.conn.execute("INSERT INTO effects VALUES ($1)", msg.event.seq)

    for seq in (1, 2, 3):
        record = ping_record(topic, "k", seq, event_id=f"refuse-{seq}")
        await producer.send(topic, record.value, key=record.key, headers=record.headers)
    await producer.flush()

    consumer = Consumer("test.refused", [topic], apply)
    async with running_consumer(infra, schema, pool, consumer):
        await wait_for(lambda: pool.fetchval("SELECT count(*) FROM dead_letters"), 1)
        await wait_for(lambda: pool.fetchval("SELECT count(*) FROM effects"), 2)

    assert [r["seq"] for r in await pool.fetch("SELECT seq FROM effects ORDER BY seq")] == [1, 3]
    dead = await pool.fetchrow("SELECT event_id, reason FROM dead_letters")
    assert dict(dead) == {
        "event_id": "refuse-2",
        "reason": "receipt_id: r-1 was already applied with other values",
    }
    # Once in the batch, once alone: never the handler_attempts retries of a failing record.
    assert refusals == ["refuse-2", "refuse-2"]


async def test_kafka_down_while_handlers_commit_then_everything_is_published(
    infra, scratch_schema, new_topic
):
    if infra.origin != "local":
        pytest.skip("needs the local broker process to kill")
    schema, pool = scratch_schema
    topic = await new_topic(partitions=2)
    producer = build_producer(infra.kafka_bootstrap, client_id="test-relay")
    await producer.start()
    relay = OutboxRelay(infra.admin_database_url, schema, producer, poll_interval_s=0.1)
    task = asyncio.create_task(relay.run())
    try:
        os.killpg(int(infra.kafka_pid_file.read_text()), signal.SIGKILL)
        await asyncio.sleep(0.5)
        await stage(pool, [ping_record(topic, f"k{i % 5}", i) for i in range(300)])
        await asyncio.sleep(1)
        assert relay.stats.published == 0  # nowhere to publish; the rows wait
        await asyncio.to_thread(
            subprocess.run,
            [sys.executable, str(INFRA_SCRIPT), "up", "--profile", lane_profile()],
            check=True,
            capture_output=True,
        )
        await wait_for(lambda: asyncio.sleep(0, relay.stats.published), 300, timeout_s=120)
    finally:
        relay.stop()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await producer.stop()
    assert (await outbox_counts(pool))[0] == 0
    records = await read_topic(infra.kafka_bootstrap, topic, expect=300)
    assert {json.loads(r.value)["seq"] for r in records} == set(range(300))


async def test_a_changed_applied_migration_is_refused(infra, scratch_schema, tmp_path):
    schema, _ = scratch_schema
    (tmp_path / "0001_things.sql").write_text("CREATE TABLE things (id int);")
    assert await migrate(infra.admin_database_url, schema, tmp_path) == ["0001_things.sql"]
    assert await migrate(infra.admin_database_url, schema, tmp_path) == []
    (tmp_path / "0001_things.sql").write_text("CREATE TABLE things (id bigint);")
    with pytest.raises(MigrationError, match=r"0001_things\.sql .* changed"):
        await migrate(infra.admin_database_url, schema, tmp_path)


async def test_idempotency_key_replays_the_first_response_and_refuses_a_new_body(scratch_schema):
    _, pool = scratch_schema
    await pool.execute("CREATE TABLE things (id serial PRIMARY KEY, name text)")
    app = FastAPI()
    app.state.pool = pool
    app.state.source = "test"

    @app.post("/things")
    async def create(request: Request):
        async def action(uow: UnitOfWork):
            body = await request.json()
            new_id = await uow.conn.fetchval(
                "INSERT INTO things (name) VALUES ($1) RETURNING id", body["name"]
            )
            return 201, {"id": new_id, "name": body["name"]}

        return await idempotent_write(request, action)

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        headers = {"Idempotency-Key": "abc-1"}
        first, second = await asyncio.gather(
            client.post("/things", json={"name": "a"}, headers=headers),
            client.post("/things", json={"name": "a"}, headers=headers),
        )
        other = await client.post("/things", json={"name": "b"}, headers=headers)
        unkeyed = [await client.post("/things", json={"name": "c"}) for _ in range(2)]
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert other.status_code == 422 and "different request body" in other.json()["detail"]
    assert [r.status_code for r in unkeyed] == [201, 201]
    assert await pool.fetchval("SELECT count(*) FROM things WHERE name = 'a'") == 1


async def test_the_relay_forgets_idempotency_keys_after_their_retention(infra, scratch_schema):
    schema, pool = scratch_schema
    await pool.execute(
        "INSERT INTO http_idempotency (idempotency_key, method, path, fingerprint, created_at) "
        "VALUES ('old', 'POST', '/x', 'f', now() - interval '2 days'), "
        "('fresh', 'POST', '/x', 'f', now() - interval '1 hour')"
    )
    relay = OutboxRelay(infra.admin_database_url, schema, producer=None)
    async with pool.acquire() as conn:
        await relay._prune_and_measure(conn)
    kept = await pool.fetch("SELECT idempotency_key FROM http_idempotency")
    assert [row["idempotency_key"] for row in kept] == ["fresh"]


@contextlib.asynccontextmanager
async def running_consumer(infra, schema, pool, consumer: Consumer):
    definition = ServiceDefinition(name="test", description="test", consumers=[consumer])
    settings = Settings(
        service="stock", kafka_bootstrap_servers=infra.kafka_bootstrap, handler_attempts=3
    )
    broker = build_broker(definition, settings, pool, schema)
    await broker.start()
    try:
        yield broker
    finally:
        await broker.stop()


async def wait_for(probe, expected, timeout_s: float = 30) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    value = None
    while loop.time() < deadline:
        value = await probe()
        if value >= expected:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"waited for {expected}, last saw {value}")


def failures(group: str, fault: str) -> float:
    value = REGISTRY.get_sample_value(
        "stockflow_handler_failures_total", {"service": "test", "group": group, "fault": fault}
    )
    return value or 0.0


async def test_poison_is_dead_lettered_on_first_sight_and_transient_failures_keep_retrying(
    infra, scratch_schema, new_topic, producer
):
    schema, pool = scratch_schema
    topic = await new_topic(partitions=1)
    dlq = await new_topic(partitions=1, name=f"{schema}.dlq.v1")
    await pool.execute("CREATE TABLE effects (seq int, amount numeric(6, 2), k varchar(64))")
    attempts: collections.Counter[int] = collections.Counter()
    deadlocks_left = [2]

    async def apply(uow: UnitOfWork, msg: Inbound) -> None:
        attempts[msg.event.seq] += 1
        if msg.event.seq == 5 and deadlocks_left[0]:
            deadlocks_left[0] -= 1
            raise asyncpg.exceptions.DeadlockDetectedError("deadlock detected")
        await uow.conn.execute(
            "INSERT INTO effects VALUES ($1, $2, $3)",
            msg.event.seq,
            Decimal(msg.event.seq) / 1000,
            msg.event.k,
        )

    first = ping_record(topic, "k", 1)
    deep = b"[" * 5000 + b"]" * 5000
    structured = (
        json.dumps(
            {"id": "deep-structured", "type": Ping.event_type, "source": "t", "specversion": "1.0"}
        ).encode()[:-1]
        + b', "data": {"k": "k", "seq": 9, "x": '
        + deep
        + b"}}"
    )
    binary_headers = [(n, v) for n, v in first.headers if n != "ce_id"] + [("ce_id", b"deep-bin")]
    sends = [
        first,
        KafkaRecord(topic, b"k", structured, [("content-type", b"application/cloudevents+json")]),
        KafkaRecord(topic, b"k", b'{"k": "k", "seq": 8, "x": ' + deep + b"}", binary_headers),
        ping_record(topic, "k", 3_000_000_000),  # beyond the int column: asyncpg refuses it
        ping_record(topic, "k", 100_000_000),  # amount beyond numeric(6, 2): PostgreSQL refuses
        ping_record(topic, "k" * 100, 7),  # longer than its varchar(64) column
        ping_record(topic, "k", 5),  # two deadlocks, then applied
        ping_record(topic, "k", 6),
    ]
    for record in sends:
        await producer.send(topic, record.value, key=record.key, headers=record.headers)
    await producer.flush()

    group = f"test.first-sight.{schema}"
    # One record per batch, so every attempt counted is an attempt on that record alone.
    consumer = Consumer(group, [topic], apply, max_records=1)
    async with running_consumer(infra, schema, pool, consumer):
        await wait_for(lambda: pool.fetchval("SELECT count(*) FROM effects"), 3)
        await wait_for(lambda: pool.fetchval("SELECT count(*) FROM dead_letters"), 5)
        await run_relay(infra, schema, until_published=5)

    assert [r["seq"] for r in await pool.fetch("SELECT seq FROM effects ORDER BY seq")] == [1, 5, 6]
    assert attempts[3_000_000_000] == attempts[100_000_000] == attempts[7] == 1
    assert attempts[5] == 3  # transient failures keep their retries and never dead-letter
    assert (failures(group, "poison"), failures(group, "transient")) == (3, 2)
    assert failures(group, "unknown") == 0
    dead = await read_topic(infra.kafka_bootstrap, dlq, expect=5)
    reasons = {
        int(dict(r.headers)["dlq_source_offset"]): dict(r.headers)["dlq_reason"].decode()
        for r in dead
    }
    assert sorted(reasons) == [1, 2, 3, 4, 5]
    assert "nested too deep" in reasons[1]
    assert "recursion limit" in reasons[2]
    assert "DataError" in reasons[3] and "out of int32 range" in reasons[3]
    assert "NumericValueOutOfRangeError" in reasons[4]
    assert "StringDataRightTruncationError" in reasons[5]


@contextlib.asynccontextmanager
async def watched_consumer(infra, schema, pool, consumer: Consumer, **timing: float):
    """The consumer under build_broker as create_app runs it, with its watchdog; the watchdog's
    exit is recorded instead of ending the test process."""
    definition = ServiceDefinition(name="test", description="test", consumers=[consumer])
    settings = Settings(service="stock", kafka_bootstrap_servers=infra.kafka_bootstrap, **timing)
    progress: dict[str, ConsumerProgress] = {}
    broker = build_broker(definition, settings, pool, schema, progress=progress)
    await broker.start()
    watchdog = consumer_watchdog(broker, progress, settings)
    exits: list[int] = []
    watchdog.exit = exits.append
    task = asyncio.create_task(watchdog.run())
    try:
        yield broker, watchdog, exits
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await broker.stop()


async def readiness(pool, producer, watchdog) -> dict[str, str]:
    state = SimpleNamespace(
        pool=pool, context=SimpleNamespace(producer=producer), watchdog=watchdog
    )
    return await _readiness(SimpleNamespace(state=state))  # type: ignore[arg-type]


def stalled_gauge(group: str) -> float | None:
    return REGISTRY.get_sample_value(
        "stockflow_consumer_stalled", {"service": "stock", "group": group}
    )


async def until(predicate, timeout_s: float = 30) -> None:
    await wait_for(lambda: asyncio.sleep(0, bool(predicate())), True, timeout_s)


async def test_a_wedged_consumer_fails_readiness_is_restarted_and_processes_again(
    infra, scratch_schema, new_topic, producer
):
    schema, pool = scratch_schema
    topic = await new_topic(partitions=1)
    await pool.execute("CREATE TABLE effects (seq int)")
    never = asyncio.Event()
    wedged = []

    async def apply(uow: UnitOfWork, msg: Inbound) -> None:
        if msg.event.seq == 1 and not wedged:
            wedged.append(msg.event_id)
            await never.wait()  # the first delivery hangs for good
        await uow.conn.execute("INSERT INTO effects VALUES ($1)", msg.event.seq)

    group = f"test.wedge.{schema}"
    timing = dict(
        consumer_stall_timeout_s=2, consumer_restart_grace_s=20, consumer_watchdog_interval_s=0.2
    )
    with structlog.testing.capture_logs() as logs:
        async with watched_consumer(
            infra, schema, pool, Consumer(group, [topic], apply), **timing
        ) as (_, watchdog, exits):
            assert stalled_gauge(group) == 0
            record = ping_record(topic, "k", 1)
            await producer.send_and_wait(
                topic, record.value, key=record.key, headers=record.headers
            )
            await until(lambda: group in watchdog.problems())
            assert stalled_gauge(group) == 1
            checks = await readiness(pool, producer, watchdog)
            assert "not processed" in checks[f"consumer {group}"]
            # Restarted: the group is rejoined and the wedged record re-read and applied.
            await wait_for(lambda: pool.fetchval("SELECT count(*) FROM effects"), 1)
            record = ping_record(topic, "k", 2)
            await producer.send_and_wait(
                topic, record.value, key=record.key, headers=record.headers
            )
            await wait_for(lambda: pool.fetchval("SELECT count(*) FROM effects"), 2)
            await until(lambda: not watchdog.problems())
            assert all(v == "ok" for v in (await readiness(pool, producer, watchdog)).values())
            assert stalled_gauge(group) == 0
            assert exits == []
    stalls = [e for e in logs if e["event"].startswith("consumer stalled")]
    assert len(stalls) == 1 and stalls[0]["group"] == group
    # The stack shows where the handler waits: in `apply`, on the event.
    assert any("in apply" in t["stack"] and "in wait" in t["stack"] for t in stalls[0]["tasks"])
    assert (
        REGISTRY.get_sample_value(
            "stockflow_consumer_restarts_total", {"service": "stock", "group": group}
        )
        == 1
    )


async def test_a_consumer_wedged_again_after_its_restart_exits_for_the_supervisor(
    infra, scratch_schema, new_topic, producer
):
    schema, pool = scratch_schema
    topic = await new_topic(partitions=1)
    never = asyncio.Event()

    async def apply(uow: UnitOfWork, msg: Inbound) -> None:
        await never.wait()

    group = f"test.wedged-for-good.{schema}"
    timing = dict(
        consumer_stall_timeout_s=1, consumer_restart_grace_s=4, consumer_watchdog_interval_s=0.2
    )
    async with watched_consumer(infra, schema, pool, Consumer(group, [topic], apply), **timing) as (
        _,
        _watchdog,
        exits,
    ):
        record = ping_record(topic, "k", 1)
        await producer.send_and_wait(topic, record.value, key=record.key, headers=record.headers)
        await until(lambda: exits)
    assert exits[0] == STALL_EXIT_CODE


async def test_an_idle_consumer_is_not_stalled_and_a_dead_consume_loop_is_restarted(
    infra, scratch_schema, new_topic, producer
):
    schema, pool = scratch_schema
    topic = await new_topic(partitions=1)
    await pool.execute("CREATE TABLE effects (seq int)")

    async def apply(uow: UnitOfWork, msg: Inbound) -> None:
        await uow.conn.execute("INSERT INTO effects VALUES ($1)", msg.event.seq)

    group = f"test.dead-loop.{schema}"
    timing = dict(
        consumer_stall_timeout_s=0.5, consumer_restart_grace_s=10, consumer_watchdog_interval_s=0.1
    )
    async with watched_consumer(infra, schema, pool, Consumer(group, [topic], apply), **timing) as (
        broker,
        watchdog,
        exits,
    ):
        await asyncio.sleep(3)  # nothing to fetch, many watchdog rounds: idle is not stalled
        assert watchdog.problems() == {}
        (subscriber,) = broker.subscribers
        for task in subscriber.tasks:
            task.cancel()
        await until(lambda: group in watchdog.problems())
        assert "consume loop not running" in watchdog.problems()[group]
        record = ping_record(topic, "k", 7)
        await producer.send_and_wait(topic, record.value, key=record.key, headers=record.headers)
        await wait_for(lambda: pool.fetchval("SELECT count(*) FROM effects"), 1)
        await until(lambda: not watchdog.problems())
        assert exits == []
