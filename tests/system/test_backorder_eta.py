"""The backorder ETA end to end: stock dates a backordered line from announced receipts, the
order carries the date on order.confirmed.v1 and in GET /orders/{id}, and when an announced
receipt moves it, stock says so (stock.backorder.eta_changed.v1) and the order tells the
customer (order.backorder.eta_changed.v1)."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaProducer

from stockflow.contracts.events.checkout import CheckoutOrderSubmitted
from stockflow.runtime.testing.factories import variant
from stockflow.runtime.testing.plugin import read_topic, send

pytestmark = pytest.mark.system

ADMIN = {"Authorization": "Bearer dev-admin-token"}


def submission(order_id: str, sku: str, quantity: int) -> CheckoutOrderSubmitted:
    return CheckoutOrderSubmitted.model_validate(
        {
            "order_id": order_id,
            "customer_id": "c-eta",
            "currency": "USD",
            "placed_at": datetime.now(UTC),
            "lines": [{"line_id": "L1", "sku": sku, "quantity": quantity, "unit_price": "10.00"}],
            "shipping_address": {
                "name": "Ada",
                "line1": "1 Road",
                "city": "Town",
                "postal_code": "12345",
                "country": "US",
            },
            "payment": {"status": "authorized", "reference": f"p-{order_id}"},
            "backorder_policy": "allow",
        }
    )


async def events(bootstrap: str, topic: str, order_id: str, event_type: str) -> list[dict]:
    """The data of every `event_type` about `order_id` on `topic`, once at least one is there."""
    for _ in range(20):
        found = [
            json.loads(r.value)
            for r in await read_topic(bootstrap, topic, expect=10**9, timeout_s=3)
            if dict(r.headers).get("ce_type") == event_type.encode()
            and dict(r.headers).get("ce_subject") == order_id.encode()
        ]
        if found:
            return found
    pytest.fail(f"no {event_type} for {order_id} on {topic}")


def moment(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text.replace("Z", "+00:00"))


async def announce(stock: httpx.AsyncClient, sku: str, quantity: int, at: datetime) -> None:
    body = {
        "receipt_id": f"po-{uuid.uuid4().hex[:8]}",
        "sku": sku,
        "location": "WH-EAST",
        "quantity": quantity,
        "expected_at": at.isoformat(),
    }
    response = await stock.post("/incoming", json=body, headers=ADMIN)
    assert response.status_code == 201, response.text


async def order_line(order: httpx.AsyncClient, order_id: str) -> dict[str, Any]:
    for _ in range(100):
        response = await order.get(f"/orders/{order_id}", headers=ADMIN)
        if response.status_code == 200 and response.json()["state"] == "confirmed":
            return dict(response.json()["lines"][0])
        await asyncio.sleep(0.2)
    pytest.fail(f"order {order_id} never confirmed")


async def test_the_backorder_eta_reaches_the_order_and_moves_with_announced_receipts(system, infra):
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap, acks="all")
    await producer.start()
    admin = await asyncpg.connect(infra.admin_database_url)
    stock = httpx.AsyncClient(base_url=system.url("stock"), timeout=15)
    order = httpx.AsyncClient(base_url=system.url("order"), timeout=15)
    bootstrap = infra.kafka_bootstrap
    try:
        sku = f"E{uuid.uuid4().hex[:6].upper()}"
        first, second = f"o-eta1-{sku}", f"o-eta2-{sku}"
        day = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
        await send(producer, variant(sku, backorderable=True))
        for _ in range(100):
            if await admin.fetchval("SELECT 1 FROM stock.skus WHERE sku = $1", sku):
                break
            await asyncio.sleep(0.2)
        await announce(stock, sku, 3, day + timedelta(days=4))

        # 2 units, nothing on hand, 3 announced for day+4: backordered with that date.
        await send(producer, submission(first, sku, 2))
        (confirmed,) = await events(bootstrap, "orders.events.v1", first, "order.confirmed.v1")
        assert confirmed["lines"][0]["backordered"] == 2
        assert moment(confirmed["lines"][0]["expected_date"]) == day + timedelta(days=4)
        assert moment((await order_line(order, first))["expected_date"]) == day + timedelta(days=4)

        # 3 more units: the announced 3 cover only 1 of them, so stock cannot date the line.
        await send(producer, submission(second, sku, 3))
        (confirmed,) = await events(bootstrap, "orders.events.v1", second, "order.confirmed.v1")
        assert confirmed["lines"][0]["expected_date"] is None
        assert (await order_line(order, second))["expected_date"] is None

        # 2 units announced for day+1: the first line moves earlier, the second gets a date.
        await announce(stock, sku, 2, day + timedelta(days=1))
        for order_id, before, after in (
            (first, day + timedelta(days=4), day + timedelta(days=1)),
            (second, None, day + timedelta(days=4)),
        ):
            (stock_says,) = await events(
                bootstrap, "stock.events.v1", order_id, "stock.backorder.eta_changed.v1"
            )
            assert moment(stock_says["expected_date"]) == after
            assert moment(stock_says["previous_expected_date"]) == before
            (told,) = await events(
                bootstrap, "orders.events.v1", order_id, "order.backorder.eta_changed.v1"
            )
            assert (told["line_id"], told["sku"]) == ("L1", sku)
            assert moment(told["expected_date"]) == after
            assert moment(told["previous_expected_date"]) == before
            assert moment((await order_line(order, order_id))["expected_date"]) == after
    finally:
        await stock.aclose()
        await order.aclose()
        await admin.close()
        await producer.stop()
