"""The foundation: real Kafka works with the aiokafka we pin; roles keep schemas apart."""

import uuid

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from stockflow.runtime.testing.plugin import wait_for_topics

pytestmark = pytest.mark.integration


async def test_aiokafka_admin_idempotent_producer_and_group_commit(infra):
    topic = f"probe.{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=infra.kafka_bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, 3, 1)])
    await admin.close()
    await wait_for_topics(infra.kafka_bootstrap, [topic])

    producer = AIOKafkaProducer(
        bootstrap_servers=infra.kafka_bootstrap, acks="all", enable_idempotence=True
    )
    await producer.start()
    for i in range(20):
        await producer.send(topic, f"v{i}".encode(), key=b"same-key")
    await producer.flush()
    await producer.stop()

    group = f"probe-group-{uuid.uuid4().hex[:6]}"
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=infra.kafka_bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    received = []
    while len(received) < 20:
        for records in (await consumer.getmany(timeout_ms=2000)).values():
            received.extend(records)
    await consumer.commit()
    partition = received[0].partition
    committed = await consumer.committed(TopicPartition(topic, partition))
    await consumer.stop()

    assert [r.value for r in received] == [f"v{i}".encode() for i in range(20)]  # one key, in order
    assert committed == 20


async def test_a_service_role_cannot_read_another_services_schema(infra):
    orders_owner = await asyncpg.connect(infra.role_url("orders_owner"))
    await orders_owner.execute("CREATE TABLE IF NOT EXISTS orders.role_probe (id int)")
    await orders_owner.close()

    stock_app = await asyncpg.connect(infra.role_url("stock_app"))
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
            await stock_app.fetch("SELECT * FROM orders.role_probe")
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
            await stock_app.execute("CREATE TABLE stock.sneaky (id int)")
    finally:
        await stock_app.close()


async def test_the_runtime_role_has_dml_on_its_own_schema(infra):
    owner = await asyncpg.connect(infra.role_url("stock_owner"))
    await owner.execute("CREATE TABLE IF NOT EXISTS stock.role_probe (id int)")
    await owner.close()
    app = await asyncpg.connect(infra.role_url("stock_app"))
    try:
        await app.execute("INSERT INTO role_probe VALUES (1)")  # search_path is its schema
        assert await app.fetchval("SELECT count(*) FROM stock.role_probe") >= 1
        await app.execute("DELETE FROM role_probe")
    finally:
        await app.close()
