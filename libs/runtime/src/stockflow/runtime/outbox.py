"""Transactional outbox: stage events in the handler's transaction; one relay publishes them.

Invariants (see libs/runtime/README.md):
- A row exists only if the transaction that wrote the state change committed.
- Exactly one relay per schema publishes (a session advisory lock held by its connection), and
  it marks rows on that same connection, so a relay that lost its lock can never mark anything.
- Rows are published in id order; the idempotent producer keeps per-partition order, so
  per-key order holds. A crash between publish and mark re-publishes: consumers' inboxes
  absorb the duplicate.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2

from stockflow.contracts import Event, KafkaRecord, encode
from stockflow.contracts.cloudevents import CloudEvent, new_traceparent
from stockflow.runtime import metrics
from stockflow.runtime.db import init_connection
from stockflow.runtime.logging import get_logger

log = get_logger(__name__)

INSERT_SQL = (
    "INSERT INTO outbox (topic, key, value, headers) SELECT t, k, v, h::jsonb "
    "FROM unnest($1::text[], $2::bytea[], $3::bytea[], $4::text[]) AS u(t, k, v, h)"
)


def _headers_to_json(headers: Sequence[tuple[str, bytes]]) -> list[list[str]]:
    return [[name, base64.b64encode(value).decode()] for name, value in headers]


def _headers_from_json(headers: list[list[str]]) -> list[tuple[str, bytes]]:
    return [(name, base64.b64decode(value)) for name, value in headers]


class UnitOfWork:
    """One database transaction and the events it will publish once it commits.

    Handlers and HTTP endpoints get one of these; they never see the broker.
    """

    def __init__(
        self, conn: asyncpg.Connection, *, source: str, cause: CloudEvent | None = None
    ) -> None:
        self.conn = conn
        self.source = source
        self.cause = cause
        self._staged: list[KafkaRecord] = []

    def publish(self, event: Event, *, subject: str | None = None) -> None:
        """Stage `event` for publishing after commit; its trace continues the cause's."""
        parent = self.cause.traceparent if self.cause else None
        self._staged.append(
            encode(event, source=self.source, traceparent=new_traceparent(parent), subject=subject)
        )

    def publish_raw(self, record: KafkaRecord) -> None:
        """Stage a record as is (dead letters keep the original bytes and headers)."""
        self._staged.append(record)

    def with_cause(self, cause: CloudEvent | None) -> UnitOfWork:
        """A view of the same transaction whose published events descend from `cause`."""
        view = UnitOfWork(self.conn, source=self.source, cause=cause)
        view._staged = self._staged
        return view

    @property
    def staged(self) -> list[KafkaRecord]:
        return self._staged

    async def flush(self) -> None:
        """Write the staged records into the outbox (one round trip); called before commit."""
        if not self._staged:
            return
        records, self._staged[:] = list(self._staged), []
        await self.conn.execute(
            INSERT_SQL,
            [r.topic for r in records],
            [r.key for r in records],
            [r.value for r in records],
            [json.dumps(_headers_to_json(r.headers)) for r in records],
        )


@contextlib.asynccontextmanager
async def unit_of_work(pool: asyncpg.Pool, *, source: str, cause: CloudEvent | None = None):
    """Open a transaction; stage events; on success flush them into the outbox and commit."""
    async with pool.acquire() as conn, conn.transaction():
        uow = UnitOfWork(conn, source=source, cause=cause)
        yield uow
        await uow.flush()


@functools.lru_cache(maxsize=65_536)
def _key_hash(key: bytes) -> int:
    return murmur2(key) & 0x7FFFFFFF


def partition_for(key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
    """aiokafka's DefaultPartitioner (the Java client's murmur2), with recent keys' hashes cached:
    murmur2 is pure Python in aiokafka, and an order's events share a key, as do a SKU's."""
    if key is None:
        return random.choice(available or all_partitions)
    return all_partitions[_key_hash(key) % len(all_partitions)]


def build_producer(
    bootstrap_servers: str,
    *,
    linger_ms: int = 5,
    client_id: str,
    security: Mapping[str, Any] | None = None,
) -> AIOKafkaProducer:
    """aiokafka defaults are acks=1 without idempotence; a system of record needs both.

    `security` is `Settings.kafka_client_options()` (SASL/SCRAM); none means PLAINTEXT.
    """
    return AIOKafkaProducer(
        **dict(security or {}),
        bootstrap_servers=bootstrap_servers,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=linger_ms,
        max_batch_size=1_048_576,
        max_request_size=12_582_912,
        request_timeout_ms=30_000,
        partitioner=partition_for,
    )


@dataclass
class RelayStats:
    published: int = 0
    backlog: int = 0
    oldest_age_s: float = 0.0
    leader: bool = False


@dataclass(frozen=True)
class RelayLimits:
    """How much the relay publishes per round trip and how long it keeps what it is done with."""

    batch_size: int = 2000
    retention_s: float = 3600.0
    idempotency_retention_s: float = 86400.0


class OutboxRelay:
    """Publishes a schema's outbox to Kafka: LISTEN/NOTIFY wake-ups, polling as a fallback."""

    def __init__(
        self,
        dsn: str,
        schema: str,
        producer: AIOKafkaProducer,
        *,
        poll_interval_s: float = 0.5,
        limits: RelayLimits = RelayLimits(),
        service: str = "",
    ) -> None:
        self.dsn = dsn
        self.schema = schema
        self.producer = producer
        self.poll_interval_s = poll_interval_s
        self.limits = limits
        self.service = service or schema
        self.stats = RelayStats()
        self._wake = asyncio.Event()
        self._stopping = False
        # Test hook: crash after publishing and before marking (proves re-publish is absorbed).
        self.crash_before_mark = False

    def _notified(self, *_args: object) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Run until cancelled: reconnect on database errors, back off on Kafka errors."""
        backoff = 0.2
        while not self._stopping:
            try:
                await self._lead()
                backoff = 0.2
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 — the relay must outlive any failure
                log.warning("outbox relay error; retrying", error=repr(exc), schema=self.schema)
                self.stats.leader = False
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _lead(self) -> None:
        conn = await asyncpg.connect(self.dsn, server_settings={"search_path": self.schema})
        await init_connection(conn)
        try:
            while not await conn.fetchval(
                "SELECT pg_try_advisory_lock(hashtext($1))", f"outbox:{self.schema}"
            ):
                self.stats.leader = False
                await asyncio.sleep(1.0)
            self.stats.leader = True
            await conn.add_listener(f"{self.schema}_outbox", self._notified)
            last_prune = 0.0
            while not self._stopping:
                # Cleared before reading: a NOTIFY during the publish must wake the next wait.
                self._wake.clear()
                sent = await self._publish_batch(conn)
                if time.monotonic() - last_prune > 30:
                    await self._prune_and_measure(conn)
                    last_prune = time.monotonic()
                if sent < self.limits.batch_size:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self.poll_interval_s)
        finally:
            self.stats.leader = False
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 5)

    async def _publish_batch(self, conn: asyncpg.Connection) -> int:
        rows = await conn.fetch(
            "SELECT id, topic, key, value, headers FROM outbox WHERE sent_at IS NULL "
            "ORDER BY id LIMIT $1",
            self.limits.batch_size,
        )
        if not rows:
            self.stats.backlog = 0
            self.stats.oldest_age_s = 0.0
            return 0
        futures = [
            await self.producer.send(
                row["topic"],
                row["value"],
                key=row["key"],
                headers=_headers_from_json(row["headers"]),
            )
            for row in rows
        ]
        await asyncio.gather(*futures)
        if self.crash_before_mark:
            raise asyncio.CancelledError("relay crashed between publish and mark (test hook)")
        await conn.execute(
            "UPDATE outbox SET sent_at = now() WHERE id = ANY($1::bigint[])",
            [r["id"] for r in rows],
        )
        self.stats.published += len(rows)
        metrics.OUTBOX_PUBLISHED.labels(self.service).inc(len(rows))
        return len(rows)

    async def _prune_and_measure(self, conn: asyncpg.Connection) -> None:
        await conn.execute(
            "DELETE FROM outbox WHERE sent_at < now() - make_interval(secs => $1)",
            self.limits.retention_s,
        )
        # Past this window a retried HTTP write is a new request (clients retry within minutes).
        await conn.execute(
            "DELETE FROM http_idempotency WHERE created_at < now() - make_interval(secs => $1)",
            self.limits.idempotency_retention_s,
        )
        row = await conn.fetchrow(
            "SELECT count(*) AS backlog, min(created_at) AS oldest "
            "FROM outbox WHERE sent_at IS NULL"
        )
        self.stats.backlog = row["backlog"]
        self.stats.oldest_age_s = (
            (datetime.now(UTC) - row["oldest"]).total_seconds() if row["oldest"] else 0.0
        )
        metrics.OUTBOX_BACKLOG.labels(self.service).set(self.stats.backlog)
        metrics.OUTBOX_OLDEST_AGE.labels(self.service).set(self.stats.oldest_age_s)

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
