"""pytest plugin with the fixtures every package's integration tests share."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from stockflow.contracts import encode
from stockflow.contracts.base import Event
from stockflow.runtime.bootstrap import KafkaSetup, bootstrap
from stockflow.runtime.db import create_pool, migrate
from stockflow.runtime.testing.infra import Infra, resolve_infra


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    """Real Kafka and PostgreSQL with stockflow's roles, schemas and topics in place."""
    resolved = resolve_infra()
    asyncio.run(
        bootstrap(
            resolved.admin_database_url,
            KafkaSetup(resolved.kafka_bootstrap),
            local_passwords=True,
        )
    )
    yield resolved
    resolved.close()


@pytest.fixture
async def scratch_schema(infra: Infra) -> AsyncIterator[tuple[str, asyncpg.Pool]]:
    """A throw-away schema with the backbone tables, and a pool whose search_path is it."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(infra.admin_database_url)
    await admin.execute(f"CREATE SCHEMA {schema}")
    await migrate(infra.admin_database_url, schema, None)
    pool = await create_pool(
        infra.admin_database_url, schema, application_name="test", min_size=1, max_size=8
    )
    try:
        yield schema, pool
    finally:
        await pool.close()
        await admin.execute(f"DROP SCHEMA {schema} CASCADE")
        await admin.close()


@pytest.fixture
def new_topic(infra: Infra) -> Callable[..., Awaitable[str]]:
    """Create a fresh topic: `await new_topic(partitions=3)` returns its name."""

    async def create(partitions: int = 3, prefix: str = "test", name: str | None = None) -> str:
        name = name or f"{prefix}.{uuid.uuid4().hex[:10]}"
        admin = AIOKafkaAdminClient(bootstrap_servers=infra.kafka_bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(name, partitions, 1)])
        finally:
            await admin.close()
        await wait_for_topics(infra.kafka_bootstrap, [name])
        return name

    return create


async def send(producer: AIOKafkaProducer, event: Event, source: str = "stockflow/test") -> None:
    """Publish a contract event as its CloudEvent record, and wait for the broker's ack."""
    record = encode(event, source=source)
    await producer.send_and_wait(record.topic, record.value, key=record.key, headers=record.headers)


@pytest.fixture
async def producer(infra: Infra) -> AsyncIterator[AIOKafkaProducer]:
    p = AIOKafkaProducer(
        bootstrap_servers=infra.kafka_bootstrap,
        acks="all",
        enable_idempotence=True,
        max_request_size=12_582_912,
    )
    await p.start()
    yield p
    await p.stop()


async def wait_for_topics(bootstrap_servers: str, topics: list[str], timeout_s: float = 30) -> None:
    """Topic creation is asynchronous in KRaft: wait until every leader is known."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers)
    await producer.start()
    try:
        for topic in topics:
            await asyncio.wait_for(producer.partitions_for(topic), timeout_s)
    finally:
        await producer.stop()


def reader_from_start(bootstrap_servers: str, topic: str) -> AIOKafkaConsumer:
    """A consumer of `topic` from its first record, outside any group, that fits the largest
    record a broker accepts (12 MB)."""
    return AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=16 * 1024 * 1024,
    )


async def read_topic(
    bootstrap_servers: str, topic: str, *, expect: int, timeout_s: float = 30.0
) -> list:
    """Read a topic from the start until `expect` records arrived (or the timeout)."""
    consumer = reader_from_start(bootstrap_servers, topic)
    await consumer.start()
    records: list = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while len(records) < expect and loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for partition_records in batch.values():
                records.extend(partition_records)
    finally:
        await consumer.stop()
    return records


@pytest.fixture(scope="module")
def system(infra: Infra):
    """The five services running as processes against the test infrastructure.

    Module-scoped: a service run in-process by `run_service` must not share its consumer
    groups with these processes, so they only live while a system-test module runs.
    """
    from stockflow.runtime.testing.system import System

    running = System(infra, env=SYSTEM_ENV)
    running.start_all()
    yield running
    running.stop_all()


@pytest.fixture
def run_service(infra: Infra):
    """Run a service in-process: `async with run_service("stock") as (app, client): ...`.

    Migrations, consumers, the outbox relay and background tasks all run, against the real
    broker and database, with the service's own roles; `client` is an httpx client on its API.
    """
    import contextlib

    import httpx

    from stockflow.runtime.serve import load_definition
    from stockflow.runtime.service import create_app
    from stockflow.runtime.settings import SCHEMAS, Settings

    @contextlib.asynccontextmanager
    async def run(service: str, **overrides):
        schema = SCHEMAS[service]
        settings = Settings(
            service=service,
            kafka_bootstrap_servers=infra.kafka_bootstrap,
            database_url=infra.role_url(f"{schema}_app"),
            migration_database_url=infra.role_url(f"{schema}_owner"),
            api_tokens=TEST_TOKENS,
            **overrides,
        )
        app = create_app(load_definition(service), settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url=f"http://{service}", timeout=30
            ) as client:
                yield app, client

    return run


# System tests run the demo's warehouse autopilot so that orders reach a terminal state.
SYSTEM_ENV = {
    "STOCKFLOW_FULFILLMENT_AUTO_SHIP": "true",
    "STOCKFLOW_FULFILLMENT_AUTO_SHIP_DELAY_S": "0.5",
    "STOCKFLOW_FULFILLMENT_AUTO_DELIVER_DELAY_S": "1",
}
TEST_TOKENS = {
    "test-admin": "admin",
    "test-warehouse": "warehouse",
    "test-support": "support",
    "test-read": "read",
}
ADMIN = {"Authorization": "Bearer test-admin"}
