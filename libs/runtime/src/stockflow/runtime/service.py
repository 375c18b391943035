"""One factory wires a service: migrations, pool, consumers (FastStream), outbox relay, HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse, Response
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.security import BaseSecurity, SASLScram512
from faststream.specification import AsyncAPI
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from stockflow.contracts import EVENT_TYPES, TOPICS
from stockflow.runtime import metrics
from stockflow.runtime.consumer import BatchProcessor, Consumer
from stockflow.runtime.db import create_pool, migrate
from stockflow.runtime.logging import configure_logging, get_logger
from stockflow.runtime.outbox import OutboxRelay, RelayLimits, build_producer, unit_of_work
from stockflow.runtime.settings import Settings
from stockflow.runtime.watchdog import ConsumerProgress, ConsumerWatchdog, WatchedConsumer

log = get_logger(__name__)

STARTUP_TIMEOUT_S = 90


@dataclass
class TaskContext:
    """What a background task can reach at run time, in a service or in a worker."""

    settings: Settings
    pool: asyncpg.Pool

    @property
    def source(self) -> str:
        return f"stockflow/{self.settings.service}"

    def unit_of_work(self, cause=None):
        """A transaction whose staged events reach the outbox when it commits."""
        return unit_of_work(self.pool, source=self.source, cause=cause)


@dataclass
class ServiceContext(TaskContext):
    """What a service's background tasks and routes can reach: also its Kafka producer and
    outbox relay."""

    producer: AIOKafkaProducer
    relay: OutboxRelay


Background = Callable[[ServiceContext], Coroutine[Any, Any, None]]


@dataclass
class ServiceDefinition:
    """Everything that makes one service: the runtime turns it into a process."""

    name: str
    description: str
    migrations: Path | None = None
    consumers: list[Consumer] = field(default_factory=list)
    routers: list[APIRouter] = field(default_factory=list)
    background: list[Background] = field(default_factory=list)


async def _retry_until(what: str, attempt: Callable[[], Awaitable[Any]]) -> Any:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    delay = 0.5
    while True:
        try:
            return await attempt()
        except (OSError, asyncpg.PostgresError, Exception) as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(f"gave up waiting for {what}: {exc!r}") from exc
            log.warning("waiting for dependency", dependency=what, error=repr(exc))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5)


def build_broker(
    definition: ServiceDefinition,
    settings: Settings,
    pool: asyncpg.Pool,
    schema: str,
    stopping: Callable[[], bool] = lambda: False,
    *,
    progress: dict[str, ConsumerProgress] | None = None,
) -> KafkaBroker:
    """A FastStream broker with one batch subscriber per consumer group.

    Offsets are committed by FastStream only after the handler returns, i.e. after the
    database commit (AckPolicy.NACK_ON_ERROR, auto commit off); if the handler raises
    (only when the database stays down while stopping) the batch is sought back and re-read.
    `progress` (group -> ConsumerProgress) receives each consumer's progress, for the watchdog.
    """
    broker = KafkaBroker(
        settings.kafka_bootstrap_servers,
        client_id=definition.name,
        logger=None,
        security=broker_security(settings),
    )
    for consumer in definition.consumers:
        processor = BatchProcessor(
            consumer,
            pool,
            service=definition.name,
            schema=schema,
            attempts=settings.handler_attempts,
            stopping=stopping,
        )
        if progress is not None:
            progress[consumer.group] = processor.progress
        subscriber = broker.subscriber(
            *consumer.topics,
            group_id=consumer.group,
            batch=True,
            max_records=consumer.max_records or settings.batch_max_records,
            batch_timeout_ms=settings.batch_timeout_ms,
            auto_offset_reset="earliest",
            ack_policy=AckPolicy.NACK_ON_ERROR,
            max_partition_fetch_bytes=16 * 1024 * 1024,
            decoder=_no_decode,
            title=f"{definition.name}:{consumer.group}",
            description=f"consumer group {consumer.group}",
        )
        subscriber(_make_handler(processor))
    return broker


def consumer_watchdog(
    broker: KafkaBroker, progress: dict[str, ConsumerProgress], settings: Settings
) -> ConsumerWatchdog:
    """The watchdog over every consumer `build_broker(..., progress=progress)` made."""
    groups = {
        subscriber: getattr(subscriber, "group_id", None) for subscriber in broker.subscribers
    }
    watched = [
        WatchedConsumer(group, subscriber, progress[group])
        for subscriber, group in groups.items()
        if group in progress
    ]
    return ConsumerWatchdog(
        settings.service,
        watched,
        stall_timeout_s=settings.consumer_stall_timeout_s,
        restart_grace_s=settings.consumer_restart_grace_s,
        interval_s=settings.consumer_watchdog_interval_s,
    )


def broker_security(settings: Settings) -> BaseSecurity | None:
    """FastStream's form of the Kafka credentials in `settings` (None for PLAINTEXT)."""
    options = settings.kafka_client_options()
    if not options:
        return None
    return SASLScram512(
        options["sasl_plain_username"],
        options["sasl_plain_password"],
        ssl_context=options.get("ssl_context"),
    )


async def _no_decode(_msg: Any) -> None:
    # The runtime decodes CloudEvents itself so that a bad record reaches the DLQ intact.
    return None


def _make_handler(processor: BatchProcessor) -> Callable[..., Awaitable[None]]:
    async def handle_batch(message: KafkaMessage) -> None:
        raw = message.raw_message
        records = raw if isinstance(raw, tuple) else (raw,)
        await processor.process(records)

    return handle_batch


def asyncapi_document(definition: ServiceDefinition, broker: KafkaBroker) -> dict[str, Any]:
    spec = AsyncAPI(
        broker,
        title=f"stockflow {definition.name}",
        version="1.0.0",
        description=definition.description,
    )
    return spec.to_specification().to_jsonable()


def tune_garbage_collector() -> None:
    """Every event allocates thousands of short-lived objects; CPython's default (a young
    collection per 700 allocations, each full one re-walking every module, model and pool made
    at startup) spent a fifth of a service's CPU in the collector under load. Startup's objects
    are frozen out of its view; young collections run per 50,000 allocations."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def create_app(definition: ServiceDefinition, settings: Settings | None = None) -> FastAPI:
    """The service process: FastAPI serves HTTP; its lifespan runs consumers and the relay."""
    settings = settings or Settings(service=definition.name)
    configure_logging(definition.name, settings.log_level)
    state: dict[str, Any] = {"stopping": False}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        schema = settings.schema_name
        if settings.migration_database_url:
            applied = await _retry_until(
                "postgres (migrations)",
                lambda: migrate(settings.migration_database_url, schema, definition.migrations),
            )
            if applied:
                log.info("migrations applied", applied=applied)
        pool = await _retry_until(
            "postgres",
            lambda: create_pool(
                settings.database_url,
                schema,
                application_name=definition.name,
                min_size=settings.db_pool_min,
                max_size=settings.db_pool_max,
            ),
        )
        producer = build_producer(
            settings.kafka_bootstrap_servers,
            linger_ms=settings.kafka_linger_ms,
            client_id=f"{definition.name}-outbox",
            security=settings.kafka_client_options(),
        )
        await _retry_until("kafka (producer)", producer.start)
        relay = OutboxRelay(
            settings.database_url,
            schema,
            producer,
            poll_interval_s=settings.outbox_poll_interval_s,
            limits=RelayLimits(
                batch_size=settings.outbox_batch_size,
                retention_s=settings.outbox_retention_s,
                idempotency_retention_s=settings.idempotency_retention_s,
            ),
            service=definition.name,
        )
        context = ServiceContext(settings, pool, producer, relay)
        progress: dict[str, ConsumerProgress] = {}
        broker = build_broker(
            definition, settings, pool, schema, lambda: state["stopping"], progress=progress
        )
        watchdog = consumer_watchdog(broker, progress, settings)
        app.state.pool = pool
        app.state.settings = settings
        app.state.source = context.source
        app.state.context = context
        app.state.broker = broker
        app.state.definition = definition
        app.state.watchdog = watchdog
        tasks = [asyncio.create_task(relay.run(), name="outbox-relay")]
        tasks += [
            asyncio.create_task(task(context), name=getattr(task, "__name__", "task"))
            for task in definition.background
        ]
        tasks.append(asyncio.create_task(_measure_lag(broker, definition.name), name="lag"))
        await _retry_until("kafka (consumers)", broker.start)
        watching = asyncio.create_task(watchdog.run(), name="consumer-watchdog")
        tune_garbage_collector()
        log.info(
            "service started",
            port=settings.http_port,
            consumers=[c.group for c in definition.consumers],
        )
        try:
            yield
        finally:
            state["stopping"] = True
            watching.cancel()
            await broker.stop()
            relay.stop()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, watching, return_exceptions=True)
            await producer.stop()
            await pool.close()
            log.info("service stopped")

    app = FastAPI(
        title=f"stockflow {definition.name}",
        description=definition.description,
        version="1.0.0",
        lifespan=lifespan,
    )

    _add_ops_routes(app, definition)
    for router in definition.routers:
        app.include_router(router)
    return app


def _add_ops_routes(app: FastAPI, definition: ServiceDefinition) -> None:
    """Request metrics, liveness, readiness, Prometheus and AsyncAPI: the same in every service."""

    @app.middleware("http")
    async def count_requests(request, call_next):
        started = time.perf_counter()
        response = await call_next(request)
        metrics.HTTP_REQUESTS.labels(
            definition.name, request.method, str(response.status_code)
        ).inc()
        metrics.HTTP_SECONDS.labels(definition.name).observe(time.perf_counter() - started)
        return response

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        """Liveness: the process and its event loop answer."""
        return {"status": "ok", "service": definition.name}

    @app.get("/readyz", tags=["ops"])
    async def readyz() -> JSONResponse:
        """Readiness: the database and Kafka are reachable, and no consumer is stalled."""
        checks = await _readiness(app)
        ok = all(value == "ok" for value in checks.values())
        return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)

    @app.get("/metrics", tags=["ops"])
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/asyncapi.json", tags=["ops"])
    async def asyncapi() -> dict[str, Any]:
        """The AsyncAPI document of this service's consumers."""
        return asyncapi_document(definition, app.state.broker)


async def database_check(pool: asyncpg.Pool) -> str:
    """ "ok" when the database answers within 2 s, else why not (for /readyz)."""
    try:
        async with pool.acquire(timeout=2) as conn:
            await conn.fetchval("SELECT 1")
    except Exception as exc:  # noqa: BLE001 — any failure means not ready
        return f"unreachable: {exc!r}"[:200]
    return "ok"


async def _readiness(app: FastAPI) -> dict[str, str]:
    checks = {"database": await database_check(app.state.pool)}
    try:
        producer: AIOKafkaProducer = app.state.context.producer
        await asyncio.wait_for(producer.client.fetch_all_metadata(), 2)
        checks["kafka"] = "ok"
    except Exception as exc:  # noqa: BLE001
        checks["kafka"] = f"unreachable: {exc!r}"[:200]
    for group, problem in app.state.watchdog.problems().items():
        checks[f"consumer {group}"] = problem
    return checks


async def _measure_lag(broker: KafkaBroker, service: str) -> None:
    """Consumer lag per partition from the consumers' own fetch positions, every 5 s."""
    while True:
        await asyncio.sleep(5)
        for subscriber in broker.subscribers:
            consumer = getattr(subscriber, "consumer", None)
            if consumer is None:
                continue
            with contextlib.suppress(Exception):
                for tp in consumer.assignment():
                    highwater = consumer.highwater(tp)
                    if highwater is None:
                        continue
                    position = await consumer.position(tp)
                    metrics.CONSUMER_LAG.labels(
                        service,
                        getattr(subscriber, "group_id", None) or "",
                        tp.topic,
                        str(tp.partition),
                    ).set(max(highwater - position, 0))


def known_topics() -> list[str]:
    return sorted(TOPICS)


def known_event_types() -> list[str]:
    return sorted(EVENT_TYPES)
