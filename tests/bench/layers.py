"""Layer limits of this machine, measured in the same run as the end-to-end figures.

- PostgreSQL commit latency: pg_test_fsync on the bench cluster's file system.
- The stock reservation's SQL (inbox insert, conditional level update, reservation row, outbox
  row) under pgbench: one hot row and 10,000 rows, one message and 100 messages per transaction.
- Kafka: ProducerPerformance / ConsumerPerformance from the broker's own jars.
- A raw aiokafka consume → produce → commit loop, and the backbone runtime's loop
  (FastStream batch subscriber → BatchProcessor transaction with inbox → outbox → OutboxRelay
  publish) with a trivial forwarding handler, batched and one record per batch.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from benchinfra import LOCAL, ROOT, BenchInfra

from stockflow.cli.checkout_sim import LOAD_MIX, Catalog, OrderFactory
from stockflow.contracts import KafkaRecord

PG_BIN = Path("/usr/lib/postgresql/15/bin")
STOCK_MIGRATIONS = ROOT / "services" / "stock" / "src" / "stockflow" / "stock" / "migrations"
SCRATCH_DB = "bench_scratch"
PARTITIONS = 6


def log(msg: str) -> None:
    print(f"[bench] {msg}", flush=True)


# ----------------------------------------------------------------------------- PostgreSQL

FSYNC_LINE = re.compile(r"^\s+(\S.*?)\s+([\d.]+) ops/sec\s+(\d+) usecs/op")


def parse_pg_test_fsync(text: str) -> dict[str, Any]:
    """Sections of pg_test_fsync output → {section: {method: {ops_per_s, usecs_per_op}}}."""
    sections: dict[str, dict[str, dict[str, float]]] = {}
    current = "unknown"
    for line in text.splitlines():
        if line and not line.startswith(" ") and line.rstrip().endswith(":"):
            current = line.rstrip(":").strip()
            continue
        match = FSYNC_LINE.match(line)
        if match:
            method, ops, usecs = match.groups()
            sections.setdefault(current, {})[method.strip()] = {
                "ops_per_s": float(ops),
                "usecs_per_op": int(usecs),
            }
    return sections


def pg_test_fsync(infra: BenchInfra, seconds: int) -> dict[str, Any]:
    """Commit latency: fdatasync (Linux's default wal_sync_method) of one 8 kB write."""
    target = infra.state / "pg_test_fsync.tmp"
    started = time.perf_counter()
    result = subprocess.run(
        [str(PG_BIN / "pg_test_fsync"), "-s", str(seconds), "-f", str(target)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    target.unlink(missing_ok=True)
    if result.returncode != 0:
        return {"error": (result.stdout + result.stderr)[-400:]}
    sections = parse_pg_test_fsync(result.stdout)
    one_write = next((v for k, v in sections.items() if "one 8kB write" in k), {})
    fdatasync = one_write.get("fdatasync", {})
    return {
        "commit_fdatasync_ops_per_s": fdatasync.get("ops_per_s"),
        "commit_fdatasync_latency_us": fdatasync.get("usecs_per_op"),
        "sections": sections,
        "seconds": round(time.perf_counter() - started, 1),
    }


PGBENCH_ONE = """\
\\set n random(1, :nrows)
BEGIN;
INSERT INTO stock.inbox (consumer_group, event_id, event_type)
  VALUES ('stock.commands', gen_random_uuid()::text, 'stock.command.reserve.v1');
UPDATE stock.levels SET reserved = reserved + 1, version = version + 1, updated_at = now()
  WHERE sku = 'SKU-' || :n AND location = 'WH-1'
    AND on_hand - reserved - damaged - quality_control - safety_stock >= 1;
INSERT INTO stock.reservations (order_id, line_id, sku, location, quantity)
  VALUES (gen_random_uuid()::text, 'L1', 'SKU-' || :n, 'WH-1', 1);
INSERT INTO stock.outbox (topic, key, value, headers)
  VALUES ('stock.events.v1', convert_to('SKU-' || :n, 'UTF8'), convert_to(repeat('x', 400), 'UTF8'),
          '[]');
END;
"""

# 100 messages in one transaction, set-based: the rows are locked in sku order first (as a
# batch handler must, or concurrent batches deadlock), then one UPDATE ... FROM aggregates
# the quantities per level. Sku g of the batch is (base + 97 g) mod nrows: distinct on 10,000
# rows, all the same sku on one hot row.
PGBENCH_BATCH = """\
\\set base random(0, :nrows - 1)
BEGIN;
INSERT INTO stock.inbox (consumer_group, event_id, event_type)
  SELECT 'stock.commands', gen_random_uuid()::text, 'stock.command.reserve.v1'
  FROM generate_series(1, :batch);
SELECT 1 FROM stock.levels WHERE location = 'WH-1' AND sku IN (
    SELECT 'SKU-' || ((:base + g * 97) % :nrows + 1) FROM generate_series(1, :batch) g)
  ORDER BY sku FOR UPDATE;
UPDATE stock.levels l SET reserved = l.reserved + d.q, version = l.version + 1,
    updated_at = now()
  FROM (SELECT 'SKU-' || ((:base + g * 97) % :nrows + 1) AS sku, count(*)::int AS q
        FROM generate_series(1, :batch) g GROUP BY 1) d
  WHERE l.sku = d.sku AND l.location = 'WH-1'
    AND l.on_hand - l.reserved - l.damaged - l.quality_control - l.safety_stock >= d.q;
INSERT INTO stock.reservations (order_id, line_id, sku, location, quantity)
  SELECT gen_random_uuid()::text, 'L1', 'SKU-' || ((:base + g * 97) % :nrows + 1), 'WH-1', 1
  FROM generate_series(1, :batch) g;
INSERT INTO stock.outbox (topic, key, value, headers)
  SELECT 'stock.events.v1', convert_to('SKU-' || g, 'UTF8'), convert_to(repeat('x', 400), 'UTF8'),
         '[]'
  FROM generate_series(1, :batch) g;
END;
"""

FALLBACK_DDL = """
CREATE TABLE stock.levels (sku text, location text, on_hand integer NOT NULL DEFAULT 0,
  reserved integer NOT NULL DEFAULT 0, damaged integer NOT NULL DEFAULT 0,
  quality_control integer NOT NULL DEFAULT 0, safety_stock integer NOT NULL DEFAULT 0,
  version bigint NOT NULL DEFAULT 0, updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (sku, location), CHECK (on_hand - reserved >= 0));
CREATE TABLE stock.reservations (order_id text, line_id text, sku text, location text,
  quantity integer NOT NULL, created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (order_id, line_id, sku, location));
"""


def scratch_url(infra: BenchInfra) -> str:
    return infra.admin_url.rsplit("/", 1)[0] + f"/{SCRATCH_DB}"


async def prepare_scratch(infra: BenchInfra, rows: int = 10_000) -> str:
    """A scratch database with the real backbone and stock tables (schema `stock`)."""
    from stockflow.runtime.db import migrate

    admin = await asyncpg.connect(infra.admin_url)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {SCRATCH_DB} WITH (FORCE)")
        await admin.execute(f"CREATE DATABASE {SCRATCH_DB}")
    finally:
        await admin.close()
    url = scratch_url(infra)
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("CREATE SCHEMA stock")
        source = "stock migrations"
        try:
            await migrate(url, "stock", STOCK_MIGRATIONS if STOCK_MIGRATIONS.is_dir() else None)
            if not await conn.fetchval("SELECT to_regclass('stock.levels') IS NOT NULL"):
                await conn.execute(FALLBACK_DDL)
                source = "backbone migration + fallback stock tables"
        except Exception as exc:  # noqa: BLE001 — an unfinished stock schema must not stop the bench
            log(f"stock migrations did not apply ({exc!r}); using fallback tables")
            await conn.execute("DROP SCHEMA stock CASCADE; CREATE SCHEMA stock")
            await migrate(url, "stock", None)
            await conn.execute(FALLBACK_DDL)
            source = "backbone migration + fallback stock tables"
        await conn.execute(
            "INSERT INTO stock.levels (sku, location, on_hand) "
            "SELECT 'SKU-' || g, 'WH-1', 1000000000 FROM generate_series(1, $1) g",
            rows,
        )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    return source


async def reset_scratch(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("TRUNCATE stock.inbox, stock.reservations, stock.outbox")
        await conn.execute("UPDATE stock.levels SET reserved = 0")
        await conn.execute("VACUUM ANALYZE stock.levels")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


PGBENCH_TPS = re.compile(r"tps = ([\d.]+) \(without initial connection time\)")
PGBENCH_LAT = re.compile(r"latency average = ([\d.]+) ms")
PGBENCH_FAILED = re.compile(r"number of failed transactions: (\d+)")


def parse_pgbench(text: str) -> dict[str, float | None]:
    tps = PGBENCH_TPS.search(text)
    lat = PGBENCH_LAT.search(text)
    failed = PGBENCH_FAILED.search(text)
    return {
        "tps": float(tps.group(1)) if tps else None,
        "latency_avg_ms": float(lat.group(1)) if lat else None,
        "failed": int(failed.group(1)) if failed else 0,
    }


async def pgbench_reservations(infra: BenchInfra, seconds: int, clients: int = 8) -> dict[str, Any]:
    """The reservation SQL on one hot row and on 10,000 rows, 1 and 100 messages per tx."""
    source = await prepare_scratch(infra)
    url = scratch_url(infra)
    results: dict[str, Any] = {"schema": source, "clients": clients, "seconds": seconds}
    with tempfile.TemporaryDirectory() as tmp:
        scripts = {"one": Path(tmp) / "one.sql", "batch": Path(tmp) / "batch.sql"}
        scripts["one"].write_text(PGBENCH_ONE)
        scripts["batch"].write_text(PGBENCH_BATCH)
        for rows, rows_name in ((1, "hot_row"), (10_000, "rows_10000")):
            for per_tx, script in ((1, "one"), (100, "batch")):
                await reset_scratch(url)
                cmd = [
                    str(PG_BIN / "pgbench"),
                    "-n",
                    "-M",
                    "prepared",
                    "-c",
                    str(clients),
                    "-j",
                    "2",
                    "-T",
                    str(seconds),
                    "-D",
                    f"nrows={rows}",
                    "-D",
                    f"batch={per_tx}",
                    "-f",
                    str(scripts[script]),
                    url,
                ]
                result = await asyncio.to_thread(
                    subprocess.run, cmd, capture_output=True, text=True, timeout=seconds + 120
                )
                parsed = parse_pgbench(result.stdout)
                name = f"{rows_name}_{per_tx}_per_tx"
                if result.returncode != 0 or parsed["tps"] is None:
                    results[name] = {"error": (result.stdout + result.stderr)[-400:]}
                    log(f"pgbench {name} failed: {results[name]['error'][-200:]}")
                    continue
                parsed["reservations_per_s"] = round(parsed["tps"] * per_tx, 1)
                results[name] = parsed
                log(f"pgbench {name}: {parsed['reservations_per_s']:,.0f} reservations/s")
    admin = await asyncpg.connect(infra.admin_url)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {SCRATCH_DB} WITH (FORCE)")
    finally:
        await admin.close()
    return results


# ----------------------------------------------------------------------------- Kafka


async def create_topics(bootstrap: str, names: list[str], partitions: int = PARTITIONS) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, partitions, 1) for n in names])
    finally:
        await admin.close()
    probe = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await probe.start()
    try:
        for name in names:
            await asyncio.wait_for(probe.partitions_for(name), 30)
    finally:
        await probe.stop()


async def delete_topics(bootstrap: str, names: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics(names)
    except Exception as exc:  # noqa: BLE001 — leftovers in the bench broker are harmless
        log(f"could not delete topics {names}: {exc!r}")
    finally:
        await admin.close()


PERF_PRODUCER = re.compile(
    r"(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\), ([\d.]+) ms avg latency, "
    r"([\d.]+) ms max latency, (\d+) ms 50th, (\d+) ms 95th, (\d+) ms 99th"
)


def parse_producer_perf(text: str) -> dict[str, float] | None:
    matches = PERF_PRODUCER.findall(text)
    if not matches:
        return None
    sent, rate, mb, avg, _max, _p50, _p95, p99 = matches[-1]
    return {
        "records": int(sent),
        "records_per_s": float(rate),
        "mb_per_s": float(mb),
        "latency_avg_ms": float(avg),
        "latency_p99_ms": float(p99),
    }


def parse_consumer_perf(text: str) -> dict[str, float] | None:
    lines = [line for line in text.splitlines() if line.strip()]
    for index, line in enumerate(lines):
        if line.startswith("start.time"):
            header = [h.strip() for h in line.split(",")]
            values = [v.strip() for v in lines[index + 1].split(",")]
            row = dict(zip(header, values, strict=False))
            return {
                "records": int(float(row["data.consumed.in.nMsg"])),
                "records_per_s": float(row["nMsg.sec"]),
                "fetch_records_per_s": float(row["fetch.nMsg.sec"]),
                "mb_per_s": float(row["MB.sec"]),
                "rebalance_ms": float(row["rebalance.time.ms"]),
            }
    return None


async def kafka_perf_tools(infra: BenchInfra, records: int, size: int = 500) -> dict[str, Any]:
    """ProducerPerformance (acks=all, idempotent, linger 5 ms like the relay) and
    ConsumerPerformance, both from the broker's own jars."""
    topic = f"bench.perf.{uuid.uuid4().hex[:8]}"
    await create_topics(infra.kafka_bootstrap, [topic])
    libs = LOCAL.kafka_libs()
    produce = LOCAL.kafka_java(
        libs,
        "org.apache.kafka.tools.ProducerPerformance",
        "--topic",
        topic,
        "--num-records",
        str(records),
        "--record-size",
        str(size),
        "--throughput",
        "-1",
        "--producer-props",
        f"bootstrap.servers={infra.kafka_bootstrap}",
        "acks=all",
        "enable.idempotence=true",
        "linger.ms=5",
        "batch.size=262144",
        heap="512m",
    )
    consume = LOCAL.kafka_java(
        libs,
        "org.apache.kafka.tools.ConsumerPerformance",
        "--bootstrap-server",
        infra.kafka_bootstrap,
        "--topic",
        topic,
        "--messages",
        str(records),
        "--timeout",
        "30000",
        "--group",
        f"bench-perf-{uuid.uuid4().hex[:6]}",
        heap="512m",
    )
    out: dict[str, Any] = {"record_size": size}
    for name, cmd in (("producer", produce), ("consumer", consume)):
        result = await asyncio.to_thread(
            subprocess.run, cmd, capture_output=True, text=True, timeout=300
        )
        text = result.stdout + result.stderr
        parsed = (parse_producer_perf if name == "producer" else parse_consumer_perf)(text)
        out[name] = parsed or {"error": text[-400:]}
        if parsed:
            log(f"kafka {name} perf: {parsed['records_per_s']:,.0f} records/s")
    await delete_topics(infra.kafka_bootstrap, [topic])
    return out


def sample_records(count: int) -> list[KafkaRecord]:
    """Realistic inputs: checkout orders (1 to 5 lines, about 560 bytes as CloudEvents)."""
    catalog = Catalog(skus=[f"SKU-{i}" for i in range(1, 201)], prices={})
    factory = OrderFactory(catalog, mix=LOAD_MIX, seed=1, run_id="bench")
    return [factory.next().record for _ in range(count)]


async def preload(bootstrap: str, topic: str, records: list[KafkaRecord]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=5,
        enable_idempotence=True,
        max_batch_size=1_048_576,
    )
    await producer.start()
    try:
        futures = [
            await producer.send(topic, r.value, key=r.key, headers=r.headers) for r in records
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def topic_size(consumer: AIOKafkaConsumer, partitions: list[TopicPartition]) -> int:
    ends = await consumer.end_offsets(partitions)
    return sum(ends.values())


async def wait_for_output(
    bootstrap: str, topic: str, expect: int, timeout_s: float
) -> float | None:
    """perf_counter() at which `topic` first held `expect` records (polled every 20 ms)."""
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await probe.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        deadline = time.perf_counter() + timeout_s
        while time.perf_counter() < deadline:
            if await topic_size(probe, partitions) >= expect:
                return time.perf_counter()
            await asyncio.sleep(0.02)
        return None
    finally:
        await probe.stop()


@dataclass
class LoopResult:
    records: int
    seconds: float | None

    def as_dict(self) -> dict[str, Any]:
        rate = self.records / self.seconds if self.seconds else None
        return {
            "records": self.records,
            "seconds": round(self.seconds, 3) if self.seconds else None,
            "msgs_per_s": round(rate, 1) if rate else None,
        }


async def raw_aiokafka_loop(bootstrap: str, records: list[KafkaRecord]) -> LoopResult:
    """consume a batch → produce each record to another topic → commit offsets; no database.

    Same client settings as the runtime (500-record batches, acks=all idempotent producer,
    linger 5 ms), timed from the first record fetched to the last output acknowledged.
    """
    from stockflow.runtime.outbox import build_producer

    source, sink = f"bench.raw.in.{uuid.uuid4().hex[:8]}", f"bench.raw.out.{uuid.uuid4().hex[:8]}"
    await create_topics(bootstrap, [source, sink])
    await preload(bootstrap, source, records)
    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=bootstrap,
        group_id=f"bench.raw.{uuid.uuid4().hex[:6]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=16 * 1024 * 1024,
    )
    producer = build_producer(bootstrap, client_id="bench-raw")
    await consumer.start()
    await producer.start()
    started: float | None = None
    seen = 0
    try:
        deadline = time.perf_counter() + 300
        while seen < len(records) and time.perf_counter() < deadline:
            batch = await consumer.getmany(timeout_ms=20, max_records=500)
            if not batch:
                continue
            started = started or time.perf_counter()
            futures = []
            for items in batch.values():
                for r in items:
                    futures.append(
                        await producer.send(sink, r.value, key=r.key, headers=list(r.headers))
                    )
            await asyncio.gather(*futures)
            await consumer.commit()
            seen += len(futures)
        finished = time.perf_counter()
    finally:
        await consumer.stop()
        await producer.stop()
    await delete_topics(bootstrap, [source, sink])
    return LoopResult(seen, finished - started if started and seen >= len(records) else None)


async def runtime_loop(
    infra: BenchInfra, records: list[KafkaRecord], *, max_records: int | None
) -> LoopResult:
    """The backbone loop with a trivial handler that forwards each record through the outbox.

    build_broker's batch subscriber → BatchProcessor (decode, validate, one transaction with the
    inbox rows) → outbox rows → OutboxRelay publishes them; timed from the handler's first call
    until the output topic holds every record.
    """
    from stockflow.runtime.consumer import Consumer
    from stockflow.runtime.db import create_pool, migrate
    from stockflow.runtime.outbox import OutboxRelay, RelayLimits, build_producer
    from stockflow.runtime.service import ServiceDefinition, build_broker
    from stockflow.runtime.settings import Settings

    bootstrap = infra.kafka_bootstrap
    tag = uuid.uuid4().hex[:8]
    source, sink, schema = f"bench.rt.in.{tag}", f"bench.rt.out.{tag}", f"bench_rt_{tag}"
    await create_topics(bootstrap, [source, sink])
    await preload(bootstrap, source, records)
    admin = await asyncpg.connect(infra.admin_url)
    await admin.execute(f"CREATE SCHEMA {schema}")
    await migrate(infra.admin_url, schema, None)
    pool = await create_pool(
        infra.admin_url, schema, application_name="bench-runtime", min_size=2, max_size=10
    )
    first_call: list[float] = []

    async def forward(uow, items) -> None:
        if not first_call:
            first_call.append(time.perf_counter())
        for item in items:
            r = item.record
            uow.publish_raw(KafkaRecord(sink, r.key, r.value, list(r.headers or ())))

    settings = Settings(service="stock", kafka_bootstrap_servers=bootstrap)
    definition = ServiceDefinition(
        name="bench",
        description="backbone loop benchmark",
        consumers=[
            Consumer(
                f"bench.loop.{tag}",
                [source],
                handle_batch=forward,
                event_types={"checkout.order.submitted.v1"},
                max_records=max_records,
            )
        ],
    )
    producer = build_producer(
        bootstrap, linger_ms=settings.kafka_linger_ms, client_id="bench-outbox"
    )
    await producer.start()
    relay = OutboxRelay(
        infra.admin_url,
        schema,
        producer,
        service="bench",
        poll_interval_s=settings.outbox_poll_interval_s,
        limits=RelayLimits(batch_size=settings.outbox_batch_size),
    )
    relay_task = asyncio.create_task(relay.run())
    broker = build_broker(definition, settings, pool, schema)
    try:
        await broker.start()
        done_at = await wait_for_output(bootstrap, sink, len(records), timeout_s=300)
        seconds = done_at - first_call[0] if done_at and first_call else None
    finally:
        await broker.stop()
        relay.stop()
        relay_task.cancel()
        await asyncio.gather(relay_task, return_exceptions=True)
        await producer.stop()
        await pool.close()
        await admin.execute(f"DROP SCHEMA {schema} CASCADE")
        await admin.close()
    await delete_topics(bootstrap, [source, sink])
    return LoopResult(len(records), seconds)


async def backbone(infra: BenchInfra, batched: int, per_message: int) -> dict[str, Any]:
    """Raw aiokafka loop vs the runtime loop (batched and max_records=1), with the ratios."""
    records = sample_records(batched)
    sizes = [len(r.value) for r in records]
    raw = (await raw_aiokafka_loop(infra.kafka_bootstrap, records)).as_dict()
    log(f"raw aiokafka loop: {raw['msgs_per_s']} msgs/s")
    batch = (await runtime_loop(infra, records, max_records=None)).as_dict()
    log(f"runtime loop (batched): {batch['msgs_per_s']} msgs/s")
    single = (await runtime_loop(infra, records[:per_message], max_records=1)).as_dict()
    log(f"runtime loop (max_records=1): {single['msgs_per_s']} msgs/s")

    def ratio(a: float | None, b: float | None) -> float | None:
        return round(a / b, 3) if a and b else None

    return {
        "record_bytes_avg": round(sum(sizes) / len(sizes)),
        "raw_aiokafka_loop": raw,
        "runtime_loop_batched": batch,
        "runtime_loop_per_message": single,
        "runtime_over_raw": ratio(batch["msgs_per_s"], raw["msgs_per_s"]),
        "batched_over_per_message": ratio(batch["msgs_per_s"], single["msgs_per_s"]),
    }


def cpu_count() -> int:
    return os.cpu_count() or 1
