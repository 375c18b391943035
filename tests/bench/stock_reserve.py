"""The real stock service's reserve capacity: one hot SKU against 10,000 uniform SKUs (issue 4).

10,000 products go in through the catalog's bulk import (`POST /imports`, JSON lines) and their
stock through warehouse receipts on `warehouse.receipts.v1`, the paths production uses. Then a
burst of one-line `ReserveStock` commands is produced straight onto `stock.commands.v1` — every
command for the one hot SKU, or each for a SKU drawn uniformly from the 10,000 — and the rate is
the number of answers (`stock.reserved.v1` / `stock.reservation.rejected.v1`) read back from
`stock.events.v1` divided by the time from the first command sent to the last answer read.

The order service is stopped meanwhile: the answers are for orders it never took, and its
consumer would only compete for the two cores with what is measured here.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from benchinfra import ADMIN_TOKEN, BenchInfra, CpuMeter

from stockflow.cli.demo import product_payload, receive
from stockflow.contracts import InvalidMessage, decode, encode
from stockflow.contracts.events.stock import ReserveLine, ReserveStock
from stockflow.runtime.outbox import build_producer

ANSWERS = {"stock.reserved.v1", "stock.reservation.rejected.v1"}
LOCATION = "WH-EAST"
PREFIX = "RSV-"
IMPORT_CHUNK = 1_000


def log(msg: str) -> None:
    print(f"[bench] {msg}", flush=True)


def sku_name(index: int) -> str:
    return f"{PREFIX}{index:05d}"


@dataclass
class Burst:
    label: str
    skus: int
    commands: int
    answered: int = 0
    reserved: int = 0
    seconds: float | None = None
    cpu_percent: dict[str, float] | None = None

    @property
    def per_s(self) -> float | None:
        return round(self.answered / self.seconds, 1) if self.seconds else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "skus": self.skus,
            "commands": self.commands,
            "answered": self.answered,
            "reserved": self.reserved,
            "seconds": round(self.seconds, 3) if self.seconds else None,
            "reserve_commands_per_s": self.per_s,
            "cpu_percent": self.cpu_percent,
        }


class AnswerReader:
    """Counts stock's answers to a set of order ids, from the end of stock.events.v1 on."""

    def __init__(self, bootstrap: str) -> None:
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False
        )
        self.expected: set[str] = set()
        self.answered = 0
        self.reserved = 0
        self.last_at = 0.0
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        await self.consumer.start()
        await self.consumer._client.force_metadata_update()  # a group-less consumer has none yet
        found = self.consumer.partitions_for_topic("stock.events.v1")
        if not found:
            raise RuntimeError("stock.events.v1 has no partitions in the broker's metadata")
        partitions = [TopicPartition("stock.events.v1", p) for p in sorted(found)]
        self.consumer.assign(partitions)
        for tp, offset in (await self.consumer.end_offsets(partitions)).items():
            self.consumer.seek(tp, offset)
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            batch = await self.consumer.getmany(timeout_ms=100, max_records=5_000)
            now = time.perf_counter()
            for records in batch.values():
                for record in records:
                    key = record.key.decode() if record.key else ""
                    if key not in self.expected:
                        continue
                    try:
                        kind = decode(record.value, record.headers).type
                    except InvalidMessage:
                        continue
                    if kind in ANSWERS:
                        self.expected.discard(key)
                        self.answered += 1
                        self.reserved += kind == "stock.reserved.v1"
                        self.last_at = now

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.consumer.stop()


async def seed(
    infra: BenchInfra, producer: AIOKafkaProducer, skus: int, on_hand: int, timeout_s: float
) -> float:
    """Products through the catalog import, stock through receipts; returns seconds taken."""
    started = time.perf_counter()
    admin = await asyncpg.connect(infra.admin_url)
    try:
        have = await admin.fetchval(
            "SELECT count(*) FROM stock.levels WHERE sku LIKE $1 AND on_hand > 0", PREFIX + "%"
        )
        if have >= skus:
            return 0.0
        headers = {
            "Authorization": f"Bearer {ADMIN_TOKEN}",
            "Content-Type": "application/x-ndjson",
        }
        async with httpx.AsyncClient(base_url=infra.url("catalog"), timeout=120) as http:
            for first in range(1, skus + 1, IMPORT_CHUNK):
                lines = [
                    json.dumps(
                        product_payload(
                            sku_name(i).lower(),
                            f"Reserve bench {sku_name(i)}",
                            [(sku_name(i), "10.00", True, False, [])],
                        )
                    )
                    for i in range(first, min(first + IMPORT_CHUNK, skus + 1))
                ]
                response = await http.post(
                    "/imports",
                    params={"format": "jsonl", "first_row": first},
                    content="\n".join(lines).encode(),
                    headers={**headers, "Idempotency-Key": f"rsv-import-{skus}-{first}"},
                )
                if response.status_code != 200:
                    raise RuntimeError(
                        f"catalog import refused: {response.status_code} {response.text[:300]}"
                    )
        log(f"stock reserve: {skus:,} products imported in {time.perf_counter() - started:.0f}s")
        run = uuid.uuid4().hex[:6]
        for i in range(1, skus + 1):
            await receive(
                producer, sku_name(i), LOCATION, on_hand, "4.00", receipt_id=f"rsv-{run}-{i}"
            )
        await producer.flush()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            have = await admin.fetchval(
                "SELECT count(*) FROM stock.levels WHERE sku LIKE $1 AND on_hand > 0",
                PREFIX + "%",
            )
            known = await admin.fetchval(
                "SELECT count(*) FROM stock.skus WHERE sku LIKE $1", PREFIX + "%"
            )
            if have >= skus and known >= skus:
                return time.perf_counter() - started
            await asyncio.sleep(0.5)
        raise RuntimeError(
            f"stock holds {have} of {skus} seeded SKUs and knows {known} after {timeout_s:.0f}s"
        )
    finally:
        await admin.close()


async def burst(
    infra: BenchInfra,
    producer: AIOKafkaProducer,
    label: str,
    skus: list[str],
    commands: int,
    groups: dict[str, list[int]],
    timeout_s: float,
) -> Burst:
    """`commands` one-line ReserveStock commands as fast as they go; time to the last answer."""
    result = Burst(label, len(skus), commands)
    pick = random.Random(label).choice
    tag = uuid.uuid4().hex[:6]
    records = [
        encode(
            ReserveStock(
                order_id=f"rsv-{tag}-{n}",
                lines=[ReserveLine(line_id="L1", sku=pick(skus), quantity=1)],
            ),
            source="stockflow/bench",
        )
        for n in range(commands)
    ]
    reader = AnswerReader(infra.kafka_bootstrap)
    await reader.start()
    reader.expected = {r.key.decode() for r in records}
    cpu = CpuMeter(groups, recursive=frozenset({"postgres"}))
    cpu.start()
    started = time.perf_counter()
    try:
        futures = [
            await producer.send(r.topic, r.value, key=r.key, headers=r.headers) for r in records
        ]
        await asyncio.gather(*futures)
        deadline = time.monotonic() + timeout_s
        while reader.expected and time.monotonic() < deadline:  # noqa: ASYNC110 — the reader task counts
            await asyncio.sleep(0.05)
    finally:
        result.cpu_percent = cpu.stop()
        await reader.stop()
    result.answered, result.reserved = reader.answered, reader.reserved
    if reader.answered:
        result.seconds = reader.last_at - started
    log(
        f"stock reserve {label}: {result.answered}/{commands} answered "
        f"({result.reserved} reserved) → {result.per_s} commands/s"
    )
    return result


async def measure(
    infra: BenchInfra,
    groups: dict[str, list[int]],
    *,
    skus: int = 10_000,
    commands: int = 5_000,
    timeout_s: float = 120,
) -> dict[str, Any]:
    """Hot SKU and uniform over `skus` SKUs, `commands` reserve commands each."""
    producer = build_producer(infra.kafka_bootstrap, client_id="bench-stock-reserve")
    await producer.start()
    try:
        seconds = await seed(infra, producer, skus, 1_000_000, timeout_s=max(timeout_s, 180))
        log(f"stock reserve: {skus:,} SKUs seeded in {seconds:.0f}s")
        names = [sku_name(i) for i in range(1, skus + 1)]
        hot = await burst(infra, producer, "hot", names[:1], commands, groups, timeout_s)
        uniform = await burst(infra, producer, "uniform", names, commands, groups, timeout_s)
    finally:
        await producer.stop()
    ratio = round(hot.per_s / uniform.per_s, 3) if hot.per_s and uniform.per_s else None
    return {
        "seed_seconds": round(seconds, 1),
        "hot_sku": hot.as_dict(),
        "uniform_skus": uniform.as_dict(),
        "hot_over_uniform": ratio,
        "note": "one-line ReserveStock straight onto stock.commands.v1; order service stopped",
    }
