"""Kafka with SASL/SCRAM-SHA-512 and the KRaft StandardAuthorizer: the ACLs of the access table.

Starts deploy/local's `secure` profile (own ports and .state/secure/; the shared `test` and
`dev` profiles are never touched), provisions the ACLs through the runtime bootstrap, and shows
that each principal can do exactly what stockflow.runtime.security grants it.
The profile is stopped at the end of the module if this module started it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.conn import create_conn
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
)
from aiokafka.structs import TopicPartition

from stockflow.runtime.bootstrap import ensure_acls
from stockflow.runtime.outbox import build_producer
from stockflow.runtime.security import SUPER_USER, acl_bindings, local_password
from stockflow.runtime.settings import Settings

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "deploy/local/infra.py"
HOST, PORT = "127.0.0.1", 39092  # the `secure` profile of deploy/local/infra.py
BOOTSTRAP = f"{HOST}:{PORT}"
UP_TIMEOUT_S = 240
CLIENT_TIMEOUT_S = 30


def _port_open() -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((HOST, PORT)) == 0


def _infra(command: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(INFRA), command, "--profile", "secure"],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, "STOCKFLOW_PROFILE": "secure"},
    )


def credentials(principal: str, password: str | None = None) -> dict[str, Any]:
    settings = Settings(
        kafka_bootstrap_servers=BOOTSTRAP,
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_username=principal,
        kafka_password=password or local_password(principal),
    )
    return settings.kafka_client_options()


@pytest.fixture(scope="module")
def secure_kafka() -> Iterator[str]:
    """The secure profile: reused if already up, started (bounded) otherwise."""
    started_here = not _port_open()
    try:
        result = _infra("up", UP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        _infra("down", 120)
        pytest.fail(
            f"the secure profile did not come up within {UP_TIMEOUT_S}s; "
            "see .state/secure/logs/kafka.log"
        )
    if result.returncode != 0:
        if started_here:
            _infra("down", 120)
        pytest.fail(f"`infra.py up --profile secure` failed: {result.stderr.strip()[-800:]}")
    try:
        yield BOOTSTRAP
    finally:
        if started_here:  # ours: free its memory; someone else's `make up-secure` stays up
            _infra("down", 120)


@pytest.fixture(scope="module")
async def provisioned(secure_kafka: str) -> str:
    """ACLs from the access table, created again through the runtime (idempotent)."""
    count = await asyncio.wait_for(
        ensure_acls(secure_kafka, security=credentials(SUPER_USER)), CLIENT_TIMEOUT_S
    )
    assert count == len(acl_bindings())
    return secure_kafka


@pytest.fixture
async def stock_producer(provisioned: str) -> AsyncIterator[AIOKafkaProducer]:
    # The services' own factory: idempotent, acks=all, SCRAM credentials from Settings.
    producer = build_producer(provisioned, client_id="test-stock", security=credentials("stock"))
    await asyncio.wait_for(producer.start(), CLIENT_TIMEOUT_S)
    try:
        yield producer
    finally:
        await producer.stop()


async def test_stock_can_produce_its_own_topic_idempotently(
    stock_producer: AIOKafkaProducer,
) -> None:
    # No IDEMPOTENT_WRITE on the cluster is granted: WRITE on the topic suffices (KIP-679).
    metadata = await asyncio.wait_for(
        stock_producer.send_and_wait("stock.events.v1", b"{}", key=b"acl-test"), CLIENT_TIMEOUT_S
    )
    assert metadata.offset >= 0


async def test_stock_cannot_write_orders_events(stock_producer: AIOKafkaProducer) -> None:
    with pytest.raises(TopicAuthorizationFailedError):
        await asyncio.wait_for(
            stock_producer.send_and_wait("orders.events.v1", b"{}", key=b"forged"),
            CLIENT_TIMEOUT_S,
        )


@contextlib.asynccontextmanager
async def _consumer(topic: str, group: str, principal: str) -> AsyncIterator[AIOKafkaConsumer]:
    consumer = AIOKafkaConsumer(
        topic,
        group_id=group,
        bootstrap_servers=BOOTSTRAP,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        request_timeout_ms=10_000,
        **credentials(principal),
    )
    try:
        await asyncio.wait_for(consumer.start(), CLIENT_TIMEOUT_S)
        yield consumer
    finally:
        await consumer.stop()


async def test_stock_consumes_its_commands_in_its_group(provisioned: str) -> None:
    # The saga's writer of the command topic is the order principal.
    marker = uuid.uuid4().hex.encode()
    order = AIOKafkaProducer(bootstrap_servers=provisioned, acks="all", **credentials("order"))
    await asyncio.wait_for(order.start(), CLIENT_TIMEOUT_S)
    try:
        sent = await order.send_and_wait("stock.commands.v1", marker, key=marker)
    finally:
        await order.stop()

    async with _consumer("stock.commands.v1", "stock.commands", "stock") as consumer:
        seen = False
        async with asyncio.timeout(CLIENT_TIMEOUT_S):
            while not seen:
                batches = await consumer.getmany(timeout_ms=1000)
                seen = any(r.value == marker for records in batches.values() for r in records)
        await consumer.commit()
        tp = TopicPartition("stock.commands.v1", sent.partition)
        assert (await consumer.committed(tp) or 0) > sent.offset


async def test_stock_cannot_read_orders_events(provisioned: str) -> None:
    with pytest.raises(TopicAuthorizationFailedError):
        async with _consumer("orders.events.v1", "stock.snoop", "stock") as consumer:
            await asyncio.wait_for(consumer.getmany(timeout_ms=5000), CLIENT_TIMEOUT_S)


async def test_stock_cannot_join_another_services_group(provisioned: str) -> None:
    with pytest.raises(GroupAuthorizationFailedError):
        async with _consumer("stock.commands.v1", "order.checkout", "stock") as consumer:
            await asyncio.wait_for(consumer.getmany(timeout_ms=5000), CLIENT_TIMEOUT_S)


async def test_a_wrong_password_fails_authentication(provisioned: str) -> None:
    good = await asyncio.wait_for(create_conn(HOST, PORT, **credentials("stock")), CLIENT_TIMEOUT_S)
    good.close()
    with pytest.raises(SaslAuthenticationFailed):
        await asyncio.wait_for(
            create_conn(HOST, PORT, **credentials("stock", "not-the-password")), CLIENT_TIMEOUT_S
        )
    producer = AIOKafkaProducer(bootstrap_servers=provisioned, **credentials("stock", "nope"))
    with pytest.raises(KafkaConnectionError):
        await asyncio.wait_for(producer.start(), CLIENT_TIMEOUT_S)
    await producer.stop()


async def test_no_credentials_no_access(provisioned: str) -> None:
    # A PLAINTEXT client cannot even complete the handshake with a SASL listener.
    producer = AIOKafkaProducer(bootstrap_servers=provisioned, request_timeout_ms=5000)
    with pytest.raises((KafkaConnectionError, asyncio.TimeoutError)):
        await asyncio.wait_for(producer.start(), 15)
    await producer.stop()
