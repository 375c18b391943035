"""The books of orders that walk the less common paths, through the five running services.

Orders go in on checkout.orders.v1, stock comes in as warehouse receipts, the warehouse
autopilot picks, ships and delivers; what is checked is what accounting posted.
"""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from stockflow.cli.checkout_sim import order_payload
from stockflow.cli.demo import receive
from stockflow.contracts import encode
from stockflow.contracts.events.checkout import CheckoutOrderSubmitted
from stockflow.runtime.testing.factories import variant

pytestmark = pytest.mark.system

ADMIN = {"Authorization": "Bearer dev-admin-token"}


@pytest.fixture(scope="module")
async def producer(system, infra):
    producer = AIOKafkaProducer(
        bootstrap_servers=infra.kafka_bootstrap, acks="all", enable_idempotence=True
    )
    await producer.start()
    yield producer
    await producer.stop()


async def send(producer: AIOKafkaProducer, event) -> None:
    record = encode(event, source="stockflow/test")
    await producer.send_and_wait(record.topic, record.value, key=record.key, headers=record.headers)


async def stocked(system, producer, sku: str, units: int) -> None:
    """A tracked variant with `units` received at WH-EAST, once stock has them on hand."""
    await send(producer, variant(sku))
    await receive(producer, sku, "WH-EAST", units, "4.00", receipt_id=f"r-{sku}")
    async with httpx.AsyncClient(base_url=system.url("stock"), timeout=15) as stock_api:
        for _ in range(150):
            totals = (await stock_api.get(f"/levels/{sku}")).json().get("totals") or {}
            if int(totals.get("on_hand", 0)) == units:
                return
            await asyncio.sleep(0.2)
    pytest.fail(f"stock never recorded the receipt of {sku}")


async def order_ends(system, order_id: str, state: str) -> None:
    async with httpx.AsyncClient(base_url=system.url("order"), headers=ADMIN, timeout=15) as api:
        for _ in range(240):
            response = await api.get(f"/orders/{order_id}")
            if response.status_code == 200 and response.json().get("state") == state:
                return
            await asyncio.sleep(0.25)
    pytest.fail(f"order {order_id} never reached {state}: {response.text}")


async def revenue_by_sku(system, order_id: str, skus: set[str]) -> dict[str, Decimal]:
    """Revenue credited per sku for the order, once every sku in `skus` has some (or 20 s)."""
    revenue: dict[str, Decimal] = {}
    async with httpx.AsyncClient(
        base_url=system.url("accounting"), headers=ADMIN, timeout=15
    ) as api:
        for _ in range(80):
            entries = (await api.get("/journal", params={"order_id": order_id})).json()
            revenue = {}
            for entry in entries["entries"]:
                for line in entry["lines"]:
                    if line["account"] == "revenue":
                        amount = Decimal(line["credit"]) - Decimal(line["debit"])
                        revenue[line["sku"]] = revenue.get(line["sku"], Decimal(0)) + amount
            if skus <= revenue.keys():
                break
            await asyncio.sleep(0.25)
    return revenue


async def test_a_digital_line_posts_its_revenue_when_the_order_delivers_it(system, producer):
    prefix = f"BK{uuid.uuid4().hex[:6].upper()}"
    book, ebook = f"{prefix}-BOOK", f"{prefix}-EBOOK"
    await stocked(system, producer, book, 5)
    await send(producer, variant(ebook, tracked=False))
    order_id = f"o-{prefix.lower()}"
    payload = order_payload(
        order_id,
        [(book, 1), (ebook, 2)],
        prices={book: Decimal("20.00"), ebook: Decimal("7.50")},
    )
    await send(producer, CheckoutOrderSubmitted.model_validate(payload))
    await order_ends(system, order_id, "delivered")

    revenue = await revenue_by_sku(system, order_id, {book, ebook})

    assert revenue == {book: Decimal("20.00"), ebook: Decimal("15.00")}
