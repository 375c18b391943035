"""The consumer runtime: a batch of records, one transaction, offsets after the commit.

Write path of every batch (see libs/runtime/README.md for the invariants):
  decode each record (CloudEvents, either mode) → open one transaction → record the inbox rows
  and drop duplicates → run the handler → stage outgoing events and dead letters in the outbox
  → commit → FastStream commits the offsets.
A handler failure rolls the batch back and replays it one record per transaction, so only the
record at fault goes to the dead-letter topic; the rest are applied. What a failure means is
decided in one place, stockflow.runtime.faults: a poison record (invalid, nested too deep, a value
PostgreSQL cannot hold) is dead-lettered on first sight, an unknown failure after
`handler_attempts` tries, and infrastructure failures (database or network down, deadlocks) are
retried with backoff and never dead-letter anything: the records are not at fault.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import structlog
from aiokafka.structs import ConsumerRecord

from stockflow.contracts import CloudEvent, Event, InvalidMessage, KafkaRecord, decode, parse
from stockflow.contracts.base import dlq_topic
from stockflow.runtime import metrics
from stockflow.runtime.faults import TRANSIENT_ERRORS as TRANSIENT_ERRORS
from stockflow.runtime.faults import Fault, classify, poison_reason
from stockflow.runtime.faults import RecordRefused as RecordRefused
from stockflow.runtime.faults import RetryLater as RetryLater
from stockflow.runtime.faults import is_transient as is_transient
from stockflow.runtime.logging import get_logger
from stockflow.runtime.outbox import UnitOfWork
from stockflow.runtime.watchdog import ConsumerProgress

log = get_logger(__name__)


@dataclass(frozen=True)
class Inbound:
    """One decoded, validated, not-yet-seen record handed to a handler."""

    record: ConsumerRecord
    cloud: CloudEvent
    event: Event

    @property
    def event_id(self) -> str:
        return self.cloud.id


Handler = Callable[[UnitOfWork, Inbound], Awaitable[None]]
BatchHandler = Callable[[UnitOfWork, list[Inbound]], Awaitable[None]]
InvalidHandler = Callable[
    [UnitOfWork, ConsumerRecord, CloudEvent | None, InvalidMessage], Awaitable[bool]
]


@dataclass
class Consumer:
    """A consumer group of a service: which topics, which event types, which handler.

    `handle` applies one record; `handle_batch` (for hot paths) applies all new records of a
    batch at once. `on_invalid` may answer an invalid record itself (return True) instead of
    dead-lettering it, e.g. the order service rejecting a malformed order it can still identify.
    Records of known types outside `event_types` are skipped; unknown types are dead letters.
    """

    group: str
    topics: list[str]
    handle: Handler | None = None
    handle_batch: BatchHandler | None = None
    event_types: set[str] | None = None
    on_invalid: InvalidHandler | None = None
    max_records: int | None = None

    def wants(self, event_type: str) -> bool:
        return self.event_types is None or event_type in self.event_types


@dataclass
class _Decoded:
    record: ConsumerRecord
    inbound: Inbound | None = None
    cloud: CloudEvent | None = None
    invalid: InvalidMessage | None = None


@dataclass
class BatchProcessor:
    """Applies batches for one Consumer; independent of FastStream so it is testable alone."""

    consumer: Consumer
    pool: asyncpg.Pool
    service: str
    schema: str
    attempts: int = 3
    backoff_s: Sequence[float] = (0.05, 0.25, 1.0)
    stopping: Callable[[], bool] = field(default=lambda: False)
    progress: ConsumerProgress = field(default_factory=ConsumerProgress)

    async def process(self, records: Sequence[ConsumerRecord]) -> None:
        """Apply `records` exactly once each; return only when all are applied or dead-lettered."""
        if not records:
            return
        self.progress.batch_started(len(records))
        done = False
        try:
            await self._process(records)
            done = True
        finally:
            self.progress.batch_finished(done=done)

    async def _process(self, records: Sequence[ConsumerRecord]) -> None:
        decoded = [self._decode(r) for r in records]
        topic = records[0].topic
        metrics.MESSAGES_CONSUMED.labels(self.service, topic).inc(len(records))
        metrics.BATCH_SIZE.labels(self.service, topic).observe(len(records))
        started = time.perf_counter()
        delay = 0.1
        while True:
            try:
                await self._apply(decoded)
                break
            except Exception as exc:
                fault = self._failed(exc, topic, len(records))
                if fault is Fault.TRANSIENT:
                    if self.stopping():
                        raise
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
                    self.progress.beat()  # retrying the surroundings is progress, not a stall
                    continue
                # A batch of one has just made its record's first attempt.
                await self._apply_one_by_one(decoded, exc if len(decoded) == 1 else None)
                break
        metrics.HANDLER_SECONDS.labels(self.service, topic).observe(time.perf_counter() - started)

    def _failed(self, exc: Exception, topic: str, records: int) -> Fault:
        """Classify and count one failed attempt, and say what happens next."""
        fault = classify(exc)
        metrics.HANDLER_FAILURES.labels(self.service, self.consumer.group, fault.value).inc()
        if fault is Fault.TRANSIENT:
            message = "transient failure; retrying batch"
        else:
            metrics.MESSAGES_FAILED.labels(self.service, topic).inc()
            message = "batch failed; applying one record at a time"
        log.warning(
            message,
            error=repr(exc)[:1000],
            fault=fault.value,
            group=self.consumer.group,
            records=records,
        )
        return fault

    def _decode(self, record: ConsumerRecord) -> _Decoded:
        cloud = None
        try:
            cloud = decode(record.value, record.headers)
            if cloud.type in _known_types() and not self.consumer.wants(cloud.type):
                return _Decoded(record, cloud=cloud)
            event = parse(cloud)
            return _Decoded(record, inbound=Inbound(record, cloud, event), cloud=cloud)
        except InvalidMessage as exc:
            return _Decoded(record, cloud=cloud, invalid=exc)
        except RecursionError as exc:  # structured mode: json.loads of a too-deep document
            return _Decoded(record, cloud=cloud, invalid=InvalidMessage(poison_reason(exc)))

    async def _apply(self, decoded: Sequence[_Decoded]) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            uow = UnitOfWork(conn, source=f"stockflow/{self.service}")
            fresh = await self._claim(conn, [d.inbound for d in decoded if d.inbound])
            fresh_ids = {id(item) for item in fresh}
            # Records are applied in offset order: valid runs go to the handler together, and
            # an invalid record in between is answered or dead-lettered at its own position.
            run: list[Inbound] = []
            for item in decoded:
                if item.inbound is not None and id(item.inbound) in fresh_ids:
                    run.append(item.inbound)
                elif item.invalid is not None:
                    if run:
                        await self._run_handler(uow, run)
                        run = []
                    await self._reject(uow, item, item.invalid.reason)
            if run:
                await self._run_handler(uow, run)
            await uow.flush()
        self._count(decoded, fresh)

    async def _apply_one_by_one(
        self, decoded: Sequence[_Decoded], first_failure: Exception | None = None
    ) -> None:
        for item in decoded:
            await self._apply_alone(item, first_failure)
            first_failure = None

    async def _apply_alone(self, item: _Decoded, failure: Exception | None) -> None:
        """One record in its own transaction: poison is dead-lettered at its first failure, an
        unknown failure after `attempts` tries; a transient one retries the batch (re-read).
        `failure` is the record's first attempt when the batch held only this record."""
        attempt = 0 if failure is None else 1
        while True:
            if failure is None:
                attempt += 1
                try:
                    await self._apply([item])
                    return
                except Exception as exc:  # noqa: BLE001 — classified below
                    failure = exc
                    metrics.HANDLER_FAILURES.labels(
                        self.service, self.consumer.group, classify(exc).value
                    ).inc()
            fault = classify(failure)
            if fault is Fault.TRANSIENT:
                raise failure
            if fault is Fault.POISON:
                await self._dead_letter_alone(item, poison_reason(failure))
                return
            if attempt >= self.attempts:
                reason = f"handler failed after {attempt} attempt(s): {failure!r}"[:1000]
                await self._dead_letter_alone(item, reason)
                return
            await asyncio.sleep(self.backoff_s[min(attempt - 1, len(self.backoff_s) - 1)])
            failure = None

    async def _claim(self, conn: asyncpg.Connection, inbound: list[Inbound]) -> list[Inbound]:
        """Record inbox rows; return the records not seen before, first occurrence only."""
        if not inbound:
            return []
        rows = await conn.fetch(
            "INSERT INTO inbox (consumer_group, event_id, event_type) "
            "SELECT $1, * FROM unnest($2::text[], $3::text[]) "
            "ON CONFLICT DO NOTHING RETURNING event_id",
            self.consumer.group,
            [i.event_id for i in inbound],
            [i.cloud.type for i in inbound],
        )
        new_ids = {row["event_id"] for row in rows}
        fresh = []
        for item in inbound:
            if item.event_id in new_ids:
                new_ids.discard(item.event_id)
                fresh.append(item)
        return fresh

    async def _run_handler(self, uow: UnitOfWork, fresh: list[Inbound]) -> None:
        if self.consumer.handle_batch is not None:
            await self.consumer.handle_batch(uow, fresh)
            return
        assert self.consumer.handle is not None, f"{self.consumer.group} has no handler"
        for item in fresh:
            with structlog.contextvars.bound_contextvars(
                event_id=item.event_id,
                event_type=item.cloud.type,
                key=item.record.key.decode(errors="replace") if item.record.key else None,
                traceparent=item.cloud.traceparent,
            ):
                await self.consumer.handle(uow.with_cause(item.cloud), item)

    async def _reject(self, uow: UnitOfWork, item: _Decoded, reason: str) -> None:
        """An invalid record: the consumer may answer it itself; otherwise dead-letter it."""
        assert item.invalid is not None
        if self.consumer.on_invalid is not None:
            # An answered record is an applied event: a redelivery must not be answered again.
            if item.cloud is not None and await uow.conn.fetchval(
                "SELECT true FROM inbox WHERE consumer_group = $1 AND event_id = $2",
                self.consumer.group,
                item.cloud.id,
            ):
                return
            handled = await self.consumer.on_invalid(
                uow.with_cause(item.cloud), item.record, item.cloud, item.invalid
            )
            if handled:
                if item.cloud is not None:
                    await self._claim_answered(uow.conn, item.cloud)
                return
        await self._stage_dead_letter(uow, item, reason)

    async def _claim_answered(self, conn: asyncpg.Connection, cloud: CloudEvent) -> None:
        await conn.execute(
            "INSERT INTO inbox (consumer_group, event_id, event_type) VALUES ($1, $2, $3) "
            "ON CONFLICT DO NOTHING",
            self.consumer.group,
            cloud.id,
            cloud.type,
        )

    async def _dead_letter_alone(self, item: _Decoded, reason: str) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            uow = UnitOfWork(conn, source=f"stockflow/{self.service}")
            await self._stage_dead_letter(uow, item, reason)
            await uow.flush()

    async def _stage_dead_letter(self, uow: UnitOfWork, item: _Decoded, reason: str) -> None:
        record = item.record
        inserted = await uow.conn.fetchval(
            "INSERT INTO dead_letters (consumer_group, topic, partition, kafka_offset, event_id, "
            "event_type, reason) VALUES ($1, $2, $3, $4, $5, $6, $7) "
            "ON CONFLICT DO NOTHING RETURNING true",
            self.consumer.group,
            record.topic,
            record.partition,
            record.offset,
            item.cloud.id if item.cloud else None,
            item.cloud.type if item.cloud else None,
            reason,
        )
        if not inserted:
            return  # already dead-lettered by an earlier delivery of the same position
        log.warning(
            "dead-lettered a record",
            reason=reason,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            group=self.consumer.group,
        )
        metrics.MESSAGES_DEAD_LETTERED.labels(self.service, record.topic).inc()
        uow.publish_raw(
            dead_letter_record(
                record, reason, group=self.consumer.group, schema=self.schema, service=self.service
            )
        )

    def _count(self, decoded: Sequence[_Decoded], fresh: list[Inbound]) -> None:
        topic = decoded[0].record.topic
        applied = len(fresh)
        invalid = sum(1 for d in decoded if d.invalid is not None)
        duplicates = sum(1 for d in decoded if d.inbound) - applied
        skipped = len(decoded) - applied - invalid - duplicates
        for outcome, count in (
            ("applied", applied),
            ("duplicate", duplicates),
            ("invalid", invalid),
            ("skipped", skipped),
        ):
            if count:
                metrics.MESSAGES_PROCESSED.labels(self.service, topic, outcome).inc(count)


def dead_letter_record(
    record: ConsumerRecord, reason: str, *, group: str, schema: str, service: str
) -> KafkaRecord:
    """The original key, bytes and headers, plus dlq_* headers saying where it came from and why."""
    extra = {
        "dlq_reason": reason,
        "dlq_source_topic": record.topic,
        "dlq_source_partition": str(record.partition),
        "dlq_source_offset": str(record.offset),
        "dlq_consumer_group": group,
        "dlq_service": service,
        "dlq_failed_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
    }
    headers = [(k, bytes(v)) for k, v in (record.headers or ())]
    headers += [(k, v.encode()) for k, v in extra.items()]
    return KafkaRecord(dlq_topic(schema), record.key, record.value or b"", headers)


def _known_types() -> dict[str, Any]:
    from stockflow.contracts import EVENT_TYPES

    return EVENT_TYPES
