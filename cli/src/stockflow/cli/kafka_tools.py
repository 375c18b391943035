"""Kafka for the operator commands: bounded reads, record decoding, dead letters, the audit log.

Everything here reads with `group_id=None` (no offsets committed, no rebalances caused) and
writes with an idempotent `acks=all` producer. Every client authenticates as the services do
(STOCKFLOW_KAFKA_*, see `common.kafka_security`). Rendering lives in `ops.py`.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import typer
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    KafkaError,
    TopicAuthorizationFailedError,
)
from rich.console import Console
from rich.markup import escape

from stockflow.cli.common import kafka_identity, kafka_security
from stockflow.contracts.base import dlq_topic
from stockflow.contracts.cloudevents import (
    JSON,
    SPEC_VERSION,
    InvalidMessage,
    decode,
    new_traceparent,
)

T = TypeVar("T")
AUDIT_TOPIC = "ops.audit.v1"
REPLAY_EVENT_TYPE = "ops.dlq.replayed.v1"
REPLAYED_FROM = "stockflow_replayed_from"
AUDIT_SOURCE = "stockflow/cli"
TIMEOUT_S = 30.0
MAX_REQUEST_BYTES = 12_582_912  # the brokers' max.message.bytes: a dead letter may be that big

# Service names and schema names both select a dead-letter topic.
DLQ_SCHEMAS = {
    "catalog": "catalog",
    "stock": "stock",
    "order": "orders",
    "orders": "orders",
    "fulfillment": "fulfillment",
    "accounting": "accounting",
}


class OpsError(Exception):
    """Something the operator must be told about; the command exits non-zero."""


_AUTHORIZATION_ERRORS = (
    TopicAuthorizationFailedError,
    GroupAuthorizationFailedError,
    ClusterAuthorizationFailedError,
)


def kafka_refused(exc: KafkaError) -> OpsError:
    """A broker's refusal as one line: what failed, and as whom (never the password)."""
    if isinstance(exc, _AUTHORIZATION_ERRORS):
        return OpsError(
            f"Kafka refused {kafka_identity()}: {exc} — the principal lacks an ACL for this; "
            "operators use the `ops` principal (STOCKFLOW_KAFKA_USERNAME/_PASSWORD)"
        )
    return OpsError(f"Kafka error {kafka_identity()}: {exc!r}")


def run_command(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine; an OpsError or a broker's refusal (e.g. a missing ACL) is
    printed as one line and exits 1, Ctrl-C ends quietly."""
    try:
        return asyncio.run(coroutine)
    except (OpsError, KafkaError) as exc:
        error = kafka_refused(exc) if isinstance(exc, KafkaError) else exc
        Console(stderr=True).print(f"[red]error:[/] {escape(str(error))}")
        raise typer.Exit(1) from exc
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


def _security() -> dict[str, Any]:
    try:
        return kafka_security()
    except ValueError as exc:
        raise OpsError(str(exc)) from exc


def _unreachable(bootstrap: str, exc: BaseException) -> OpsError:
    identity = kafka_identity()
    if identity.startswith("without"):
        hint = (
            "; if the cluster requires SASL, set STOCKFLOW_KAFKA_SECURITY_PROTOCOL, "
            "STOCKFLOW_KAFKA_USERNAME and STOCKFLOW_KAFKA_PASSWORD"
        )
    else:
        hint = "; check STOCKFLOW_KAFKA_USERNAME and STOCKFLOW_KAFKA_PASSWORD"
    reason = repr(exc) if str(exc) else type(exc).__name__
    return OpsError(f"cannot connect to Kafka at {bootstrap} {identity}: {reason}{hint}")


def dlq_topic_of(service: str) -> str:
    """`stock` → `stock.dlq.v1`; `order` and `orders` → `orders.dlq.v1`."""
    schema = DLQ_SCHEMAS.get(service.lower())
    if schema is None:
        raise OpsError(f"unknown service {service!r}: one of {', '.join(sorted(DLQ_SCHEMAS))}")
    return dlq_topic(schema)


def utc(timestamp_ms: int | None) -> datetime | None:
    if timestamp_ms is None or timestamp_ms < 0:
        return None
    return datetime.fromtimestamp(timestamp_ms / 1000, UTC)


def now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def text_or_hex(raw: bytes | None) -> str | None:
    """UTF-8 text when it is, else `0x<hex>`."""
    if raw is None:
        return None
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return "0x" + raw.hex()


def hexdump(raw: bytes, width: int = 16) -> str:
    """The classic `offset  hex bytes  |ascii|` dump."""
    lines = []
    for start in range(0, len(raw), width):
        chunk = raw[start : start + width]
        hex_part = " ".join(f"{b:02x}" for b in chunk).ljust(width * 3 - 1)
        ascii_part = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{start:08x}  {hex_part}  |{ascii_part}|")
    return "\n".join(lines)


# --- reading -------------------------------------------------------------------------------


@asynccontextmanager
async def _reader(bootstrap: str) -> AsyncIterator[AIOKafkaConsumer]:
    consumer = AIOKafkaConsumer(
        **_security(),
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=16 * 1024 * 1024,
        request_timeout_ms=int(TIMEOUT_S * 1000),
    )
    try:
        await asyncio.wait_for(consumer.start(), TIMEOUT_S)
    except Exception as exc:  # any start failure means "broker unreachable"
        await consumer.stop()
        raise _unreachable(bootstrap, exc) from exc
    try:
        yield consumer
    finally:
        await consumer.stop()


@asynccontextmanager
async def _admin(bootstrap: str) -> AsyncIterator[AIOKafkaAdminClient]:
    admin = AIOKafkaAdminClient(
        **_security(),
        bootstrap_servers=bootstrap,
        client_id="stockflow-cli",
        request_timeout_ms=int(TIMEOUT_S * 1000),
    )
    try:
        await asyncio.wait_for(admin.start(), TIMEOUT_S)
    except Exception as exc:  # any start failure means "broker unreachable"
        await admin.close()
        raise _unreachable(bootstrap, exc) from exc
    try:
        yield admin
    finally:
        await admin.close()


async def _partition_ids(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, list[int]]:
    """Partition ids per existing topic (absent topics are left out)."""
    found: dict[str, list[int]] = {}
    for topic in await admin.describe_topics(names):
        if topic["error_code"] == TopicAuthorizationFailedError.errno:
            raise OpsError(
                f"not authorized to describe topic {topic['topic']} {kafka_identity()}: "
                "the principal lacks an ACL for it"
            )
        if topic["error_code"] == 0 and topic["partitions"]:
            found[topic["topic"]] = sorted(p["partition"] for p in topic["partitions"])
    return found


async def _partitions(bootstrap: str, topic: str) -> list[TopicPartition]:
    async with _admin(bootstrap) as admin:
        ids = (await _partition_ids(admin, [topic])).get(topic)
    if not ids:
        raise OpsError(f"topic {topic} does not exist")
    return [TopicPartition(topic, p) for p in ids]


async def scan(
    bootstrap: str,
    topic: str,
    *,
    last: int | None = None,
    start: dict[int, int] | None = None,
    follow: bool = False,
) -> AsyncIterator[list[Any]]:
    """Yield batches of a topic's records.

    From the beginning, or the `last` N records of each partition, or `start` {partition:
    offset} (only those partitions). Without `follow` it stops at the end offsets it saw when
    it began, so it always terminates, however busy the topic.
    """
    tps = await _partitions(bootstrap, topic)
    async with _reader(bootstrap) as consumer:
        if start is not None:
            tps = [tp for tp in tps if tp.partition in start]
        if not tps:
            return
        consumer.assign(tps)
        first = await asyncio.wait_for(consumer.beginning_offsets(tps), TIMEOUT_S)
        end = await asyncio.wait_for(consumer.end_offsets(tps), TIMEOUT_S)
        for tp in tps:
            if start is not None:
                consumer.seek(tp, max(start[tp.partition], first[tp]))
            elif last is not None:
                consumer.seek(tp, max(end[tp] - last, first[tp]))
            else:
                consumer.seek(tp, first[tp])
        loop = asyncio.get_running_loop()
        idle_since = loop.time()
        while True:
            if not follow:
                positions = {tp: await consumer.position(tp) for tp in tps}
                if all(positions[tp] >= end[tp] for tp in tps):
                    return
                # Compaction or transaction markers can leave the end unreachable by records.
                if loop.time() - idle_since > TIMEOUT_S / 3:
                    return
            batch = await consumer.getmany(timeout_ms=500, max_records=2000)
            records = [r for tp in sorted(batch) for r in batch[tp] if follow or r.offset < end[tp]]
            if records:
                idle_since = loop.time()
                yield records


async def read_all(bootstrap: str, topic: str, **kwargs: Any) -> list[Any]:
    records: list[Any] = []
    async for batch in scan(bootstrap, topic, **kwargs):
        records.extend(batch)
    return records


async def last_per_key(bootstrap: str, topic: str) -> dict[bytes | None, Any]:
    """The topic as compaction leaves it: the last record of every key, read from the start."""
    last: dict[bytes | None, Any] = {}
    async for batch in scan(bootstrap, topic):
        for record in batch:  # a key lives in one partition, read in offset order
            last[record.key] = record
    return last


# --- decoded records (topics tail) ----------------------------------------------------------


@dataclass(frozen=True)
class Shown:
    """A record as `topics tail` shows it: the CloudEvent it holds, or why it holds none."""

    topic: str
    partition: int
    offset: int
    timestamp: datetime | None
    key: str | None
    mode: str  # "binary", "structured" or "invalid"
    id: str | None = None
    type: str | None = None
    source: str | None = None
    subject: str | None = None
    time: datetime | None = None
    data: Any = None
    error: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "timestamp": _iso(self.timestamp),
            "key": self.key,
            "mode": self.mode,
            "id": self.id,
            "type": self.type,
            "source": self.source,
            "subject": self.subject,
            "time": _iso(self.time),
            "data": self.data,
            "error": self.error,
            "headers": self.headers,
        }

    def matches(
        self, *, types: Iterable[str] = (), key: str | None = None, order: str | None = None
    ) -> bool:
        """`types` are exact types or globs (`order.*`); `order` matches key, subject or data."""
        types = list(types)
        if types and not any(fnmatch.fnmatchcase(self.type or "", t) for t in types):
            return False
        if key is not None and self.key != key:
            return False
        if order is not None:
            in_data = isinstance(self.data, dict) and self.data.get("order_id") == order
            return order in (self.key, self.subject) or in_data
        return True


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


def describe(record: Any) -> Shown:
    """Decode a record in either content mode; a record that is no CloudEvent says why."""
    headers = {name: text_or_hex(raw) or "" for name, raw in record.headers or ()}
    base: dict[str, Any] = {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": utc(record.timestamp),
        "key": text_or_hex(record.key),
        "headers": headers,
    }
    try:
        event = decode(record.value, record.headers)
    except InvalidMessage as exc:
        return Shown(**base, mode="invalid", data=_preview(record.value), error=exc.reason)
    except Exception as exc:  # noqa: BLE001 — a record we cannot read is shown, never fatal
        return Shown(**base, mode="invalid", data=_preview(record.value), error=repr(exc))
    attrs: dict[str, Any] = {
        "id": event.id,
        "type": event.type,
        "source": event.source,
        "subject": event.subject,
        "time": event.time,
    }
    if isinstance(event.data, dict):
        return Shown(**base, mode="structured", data=event.data, **attrs)
    try:
        data = json.loads(event.data)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return Shown(
            **base, mode="binary", data=_preview(event.data), error="data is not JSON", **attrs
        )
    return Shown(**base, mode="binary", data=data, **attrs)


def _preview(value: bytes | None, limit: int = 2000) -> str | None:
    if value is None:
        return None
    text = text_or_hex(value[:limit]) or ""
    return text + ("…" if len(value) > limit else "")


# --- dead letters ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DeadLetter:
    """A record of a dead-letter topic: the original key, bytes and headers plus dlq_* headers."""

    topic: str
    partition: int
    offset: int
    timestamp: datetime | None
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]

    @classmethod
    def of(cls, record: Any) -> DeadLetter:
        return cls(
            record.topic,
            record.partition,
            record.offset,
            utc(record.timestamp),
            record.key,
            record.value or b"",
            [(name, raw or b"") for name, raw in record.headers or ()],
        )

    @property
    def position(self) -> str:
        """`<dlq topic>/<partition>/<offset>`: the key of its audit records."""
        return f"{self.topic}/{self.partition}/{self.offset}"

    def header(self, name: str) -> str | None:
        for header, raw in self.headers:
            if header == name:
                return text_or_hex(raw)
        return None

    @property
    def source_topic(self) -> str | None:
        return self.header("dlq_source_topic")

    @property
    def reason(self) -> str:
        return self.header("dlq_reason") or ""

    @property
    def failed_at(self) -> str:
        return self.header("dlq_failed_at") or (_iso(self.timestamp) or "")

    @property
    def source(self) -> str:
        partition, offset = self.header("dlq_source_partition"), self.header("dlq_source_offset")
        return f"{self.source_topic or '?'}/{partition or '?'}/{offset or '?'}"

    @property
    def event_type(self) -> str | None:
        return self.header("ce_type") or self._structured().get("type")

    @property
    def event_id(self) -> str | None:
        return self.header("ce_id") or self._structured().get("id")

    def _structured(self) -> dict[str, Any]:
        try:
            envelope = json.loads(self.value)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return {}
        if not isinstance(envelope, dict):
            return {}
        return {k: v for k, v in envelope.items() if k in ("type", "id") and isinstance(v, str)}

    def replay_headers(self) -> list[tuple[str, bytes]]:
        """The original headers (an earlier replay mark replaced) plus where it is replayed from."""
        kept = [
            (name, raw)
            for name, raw in self.headers
            if not name.startswith("dlq_") and name != REPLAYED_FROM
        ]
        return [*kept, (REPLAYED_FROM, self.position.encode())]

    def as_json(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "partition": self.partition,
            "offset": self.offset,
            "timestamp": _iso(self.timestamp),
            "failed_at": self.failed_at,
            "source": self.source,
            "group": self.header("dlq_consumer_group"),
            "service": self.header("dlq_service"),
            "event_type": self.event_type,
            "event_id": self.event_id,
            "reason": self.reason,
            "key": text_or_hex(self.key),
        }


async def dead_letters(
    bootstrap: str, topic: str, *, last: int | None = None, source_topic: str | None = None
) -> list[DeadLetter]:
    """The dead letters of a topic (the `last` N per partition), optionally of one source topic."""
    records = await read_all(bootstrap, topic, last=last)
    letters = [DeadLetter.of(r) for r in records]
    if source_topic:
        letters = [d for d in letters if d.source_topic == source_topic]
    return sorted(letters, key=lambda d: (d.partition, d.offset))


async def dead_letters_at(
    bootstrap: str, topic: str, positions: list[tuple[int, int]]
) -> dict[tuple[int, int], DeadLetter]:
    """The dead letters at (partition, offset); missing positions are absent from the result."""
    found: dict[tuple[int, int], DeadLetter] = {}
    for partition, offset in sorted(set(positions)):
        async for batch in scan(bootstrap, topic, start={partition: offset}):
            hit = next((r for r in batch if r.offset >= offset), None)
            if hit is not None:
                if hit.offset == offset:
                    found[(partition, offset)] = DeadLetter.of(hit)
                break
    return found


# --- the audit log of operator actions ------------------------------------------------------


@dataclass(frozen=True)
class Replay:
    """An audit record: a dead letter was re-published, by whom, when, and where it landed."""

    position: str
    replayed_at: str
    replayed_by: str
    target: str
    forced: bool = False
    note: str | None = None


@dataclass(frozen=True)
class ReplayRequest:
    """Who replays, why, and whether a dead letter replayed before may go again."""

    who: str
    note: str | None = None
    forced: bool = False


async def topic_exists(bootstrap: str, topic: str) -> bool:
    async with _admin(bootstrap) as admin:
        return topic in await admin.list_topics()


async def replays(bootstrap: str, audit_topic: str = AUDIT_TOPIC) -> dict[str, list[Replay]]:
    """Every recorded replay by dead-letter position, oldest first; none when there is no log."""
    if not await topic_exists(bootstrap, audit_topic):
        return {}
    found: dict[str, list[Replay]] = {}
    for record in await read_all(bootstrap, audit_topic):
        headers = {name: raw for name, raw in record.headers or ()}
        if headers.get("ce_type") != REPLAY_EVENT_TYPE.encode():
            continue
        try:
            data = json.loads(record.value)
            replay = Replay(
                position=data["dlq_position"],
                replayed_at=data["replayed_at"],
                replayed_by=data["replayed_by"],
                target=data["target"],
                forced=bool(data.get("forced")),
                note=data.get("note"),
            )
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
            continue  # a damaged audit record must not hide the others
        found.setdefault(replay.position, []).append(replay)
    return found


def _audit_record(
    letter: DeadLetter, target: str, request: ReplayRequest
) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    moment = now_text()
    data = {
        "action": "dlq.replay",
        "dlq_position": letter.position,
        "dlq_topic": letter.topic,
        "dlq_partition": letter.partition,
        "dlq_offset": letter.offset,
        "source": letter.source,
        "target": target,
        "event_id": letter.event_id,
        "event_type": letter.event_type,
        "reason": letter.reason,
        "consumer_group": letter.header("dlq_consumer_group"),
        "replayed_by": request.who,
        "replayed_at": moment,
        "forced": request.forced,
        "note": request.note,
    }
    headers = [
        ("ce_specversion", SPEC_VERSION.encode()),
        ("ce_id", str(uuid.uuid4()).encode()),
        ("ce_source", AUDIT_SOURCE.encode()),
        ("ce_type", REPLAY_EVENT_TYPE.encode()),
        ("ce_time", moment.encode()),
        ("ce_subject", letter.position.encode()),
        ("content-type", JSON.encode()),
        ("traceparent", new_traceparent().encode()),
    ]
    return letter.position.encode(), json.dumps(data).encode(), headers


@asynccontextmanager
async def writer(bootstrap: str, *, linger_ms: int = 0) -> AsyncIterator[AIOKafkaProducer]:
    """An idempotent acks=all producer with the operator's credentials; a broker it cannot
    reach or that refuses the credentials is an OpsError saying which."""
    producer = AIOKafkaProducer(
        **_security(),
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=linger_ms,
        max_request_size=MAX_REQUEST_BYTES,
        request_timeout_ms=int(TIMEOUT_S * 1000),
    )
    try:
        await asyncio.wait_for(producer.start(), TIMEOUT_S)
    except Exception as exc:  # any start failure means "broker unreachable"
        await producer.stop()
        raise _unreachable(bootstrap, exc) from exc
    try:
        yield producer
    finally:
        await producer.stop()


async def replay(
    bootstrap: str,
    letters: list[DeadLetter],
    request: ReplayRequest,
    *,
    audit_topic: str = AUDIT_TOPIC,
    chunk: int = 500,
) -> list[Replay]:
    """Re-publish dead letters to their source topics, then record each in the audit log.

    A record's audit entry is only written once its re-publication was acknowledged; if the
    audit write then fails, the error names the records that went out unrecorded.
    """
    if not await topic_exists(bootstrap, audit_topic):
        raise OpsError(
            f"the audit topic {audit_topic} does not exist: run the bootstrap "
            "(python -m stockflow.runtime.bootstrap) before replaying"
        )
    for letter in letters:
        if not letter.source_topic:
            raise OpsError(f"{letter.position} has no dlq_source_topic header: not a dead letter")
    done: list[Replay] = []
    async with writer(bootstrap) as producer:
        for begin in range(0, len(letters), chunk):
            part = letters[begin : begin + chunk]
            sent = [
                await producer.send(
                    letter.source_topic or "",
                    letter.value,
                    key=letter.key,
                    headers=letter.replay_headers(),
                )
                for letter in part
            ]
            metadata = await asyncio.gather(*sent)
            targets = [f"{m.topic}/{m.partition}/{m.offset}" for m in metadata]
            audits = [
                _audit_record(letter, target, request)
                for letter, target in zip(part, targets, strict=True)
            ]
            try:
                futures = [
                    await producer.send(audit_topic, value, key=key, headers=headers)
                    for key, value, headers in audits
                ]
                await asyncio.gather(*futures)
            except Exception as exc:  # whatever failed, name what went out
                unrecorded = ", ".join(letter.position for letter in part)
                raise OpsError(
                    f"replayed but NOT recorded in {audit_topic}: {unrecorded} ({exc!r})"
                ) from exc
            for (_, value, _), target in zip(audits, targets, strict=True):
                data = json.loads(value)
                done.append(
                    Replay(
                        data["dlq_position"],
                        data["replayed_at"],
                        data["replayed_by"],
                        target,
                        request.forced,
                        request.note,
                    )
                )
    return done


# --- topics and consumer lag ----------------------------------------------------------------


@dataclass(frozen=True)
class TopicInfo:
    name: str
    first_offsets: dict[int, int]
    end_offsets: dict[int, int]
    cleanup_policy: str

    @property
    def partitions(self) -> int:
        return len(self.end_offsets)

    @property
    def records(self) -> int:
        """Records retained (an upper bound on compacted topics)."""
        return sum(self.end_offsets[p] - self.first_offsets.get(p, 0) for p in self.end_offsets)


async def topics(
    bootstrap: str, patterns: Iterable[str] = (), *, internal: bool = False
) -> list[TopicInfo]:
    """Topics (matching any glob of `patterns`) with partitions, offsets and cleanup policy."""
    patterns = list(patterns)
    async with _admin(bootstrap) as admin:
        names = sorted(
            name
            for name in await admin.list_topics()
            if (internal or not name.startswith("__"))
            and (not patterns or any(fnmatch.fnmatchcase(name, p) for p in patterns))
        )
        if not names:
            return []
        policies = await _cleanup_policies(admin, names)
        ids = await _partition_ids(admin, names)
    tps = [TopicPartition(name, p) for name in names for p in ids.get(name, ())]
    async with _reader(bootstrap) as consumer:
        first = await asyncio.wait_for(consumer.beginning_offsets(tps), TIMEOUT_S)
        end = await asyncio.wait_for(consumer.end_offsets(tps), TIMEOUT_S)
    return [
        TopicInfo(
            name,
            {tp.partition: first[tp] for tp in tps if tp.topic == name},
            {tp.partition: end[tp] for tp in tps if tp.topic == name},
            policies.get(name, "?"),
        )
        for name in names
    ]


async def _cleanup_policies(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, str]:
    resources = [
        ConfigResource(ConfigResourceType.TOPIC, name, {"cleanup.policy": None}) for name in names
    ]
    policies: dict[str, str] = {}
    for response in await admin.describe_configs(resources):
        # resources: (error_code, error_message, resource_type, resource_name, config_entries)
        for _error, _message, _kind, name, entries in response.resources:
            for entry in entries:
                if entry[0] == "cleanup.policy":
                    policies[name] = entry[1]
    return policies


@dataclass(frozen=True)
class Lag:
    group: str
    topic: str
    partition: int
    committed: int
    end: int

    @property
    def lag(self) -> int:
        return max(self.end - self.committed, 0)


async def consumer_lag(bootstrap: str, groups: Iterable[str] = ()) -> dict[str, list[Lag]]:
    """Committed offsets against end offsets, per group and partition (all groups by default)."""
    wanted = list(groups)
    async with _admin(bootstrap) as admin:
        names = wanted or sorted(g[0] for g in await admin.list_consumer_groups())
        existing = set(await admin.list_topics())
        committed: dict[str, dict[TopicPartition, int]] = {}
        for name in names:
            offsets = await admin.list_consumer_group_offsets(name)
            committed[name] = {
                tp: meta.offset
                for tp, meta in offsets.items()
                if meta.offset >= 0 and tp.topic in existing
            }
    tps = sorted({tp for offsets in committed.values() for tp in offsets})
    end: dict[TopicPartition, int] = {}
    if tps:
        async with _reader(bootstrap) as consumer:
            end = await asyncio.wait_for(consumer.end_offsets(tps), TIMEOUT_S)
    return {
        name: [
            Lag(name, tp.topic, tp.partition, offset, end[tp])
            for tp, offset in sorted(committed[name].items())
        ]
        for name in names
    }
