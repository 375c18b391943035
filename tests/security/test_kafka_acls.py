"""Kafka with SASL/SCRAM-SHA-512 and the KRaft StandardAuthorizer: the ACLs of the access table.

Uses deploy/local's `secure` profile (conftest.py: own ports and .state/secure/), provisions the
ACLs again through the runtime bootstrap, and shows that each principal can do exactly what
stockflow.runtime.security grants it.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.conn import create_conn
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
)
from aiokafka.structs import TopicPartition

from stockflow.runtime.bootstrap import ensure_acls, ensure_scram_users
from stockflow.runtime.outbox import build_producer
from stockflow.runtime.security import OPERATOR, SUPER_USER, acl_bindings, local_password
from stockflow.runtime.settings import Settings

pytestmark = pytest.mark.integration

HOST, PORT = "127.0.0.1", 39092  # the `secure` profile of deploy/local/infra.py
BOOTSTRAP = f"{HOST}:{PORT}"
CLIENT_TIMEOUT_S = 30


def credentials(principal: str, password: str | None = None) -> dict[str, Any]:
    settings = Settings(
        kafka_bootstrap_servers=BOOTSTRAP,
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_username=principal,
        kafka_password=password or local_password(principal),
    )
    return settings.kafka_client_options()


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


async def test_the_bootstrap_creates_and_rotates_scram_users(provisioned: str) -> None:
    # The init's --scram-users path (AlterUserScramCredentials): a user it creates can log in,
    # and upserting a new password rotates it (the old one stops working).
    first, second = uuid.uuid4().hex, uuid.uuid4().hex
    admin = credentials(SUPER_USER)
    assert await ensure_scram_users(provisioned, {"scram-probe": first}, security=admin) == [
        "scram-probe"
    ]
    conn = await asyncio.wait_for(
        create_conn(HOST, PORT, **credentials("scram-probe", first)), CLIENT_TIMEOUT_S
    )
    conn.close()
    await ensure_scram_users(provisioned, {"scram-probe": second}, security=admin)
    with pytest.raises(SaslAuthenticationFailed):
        await asyncio.wait_for(
            create_conn(HOST, PORT, **credentials("scram-probe", first)), CLIENT_TIMEOUT_S
        )
    conn = await asyncio.wait_for(
        create_conn(HOST, PORT, **credentials("scram-probe", second)), CLIENT_TIMEOUT_S
    )
    conn.close()


async def test_only_the_super_user_manages_scram_users(provisioned: str) -> None:
    with pytest.raises(ClusterAuthorizationFailedError):
        await ensure_scram_users(provisioned, {"stock": "hijacked"}, security=credentials(OPERATOR))
