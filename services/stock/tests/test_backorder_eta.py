"""Backorder dates against real Kafka and PostgreSQL: stock.backorder.eta_changed.v1 is published
for each waiting backorder whose date an announced or arriving receipt moved, and only then."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from stockflow.contracts import encode
from stockflow.contracts.events.stock import EVENTS, ReserveStock
from stockflow.runtime.testing.factories import goods_received, variant
from stockflow.runtime.testing.plugin import ADMIN, read_topic

pytestmark = pytest.mark.integration


async def send(producer, event) -> None:
    record = encode(event, source="test")
    await producer.send_and_wait(record.topic, record.value, key=record.key, headers=record.headers)


async def replies(bootstrap: str, order_id: str, count: int) -> list[tuple[str, dict]]:
    """The first `count` stock.events.v1 about `order_id`: (type, data)."""
    for _ in range(20):
        found = [
            (dict(r.headers)["ce_type"].decode(), json.loads(r.value))
            for r in await read_topic(bootstrap, EVENTS, expect=10**9, timeout_s=2)
            if r.key == order_id.encode()
        ]
        if len(found) >= count:
            return found
    pytest.fail(f"fewer than {count} stock events for {order_id}")


def at(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text.replace("Z", "+00:00"))


async def test_an_announced_then_arriving_receipt_moves_a_backorder_date_and_says_so(
    run_service, producer, infra
):
    sku = f"T{uuid.uuid4().hex[:8].upper()}-ETA"
    order_id = f"o-eta-{uuid.uuid4().hex[:8]}"
    day = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    async with run_service("stock") as (_, client):

        async def announce(receipt_id: str, quantity: int, when: datetime) -> None:
            body = {
                "receipt_id": receipt_id,
                "sku": sku,
                "location": "WH-EAST",
                "quantity": quantity,
                "expected_at": when.isoformat(),
            }
            response = await client.post("/incoming", json=body, headers=ADMIN)
            assert response.status_code == 201, response.text

        await send(producer, variant(sku, backorderable=True))
        admin = await asyncpg.connect(infra.admin_database_url)
        try:  # the backorder flag comes from the catalog, through its own consumer
            for _ in range(100):
                if await admin.fetchval("SELECT backorderable FROM stock.skus WHERE sku = $1", sku):
                    break
                await asyncio.sleep(0.1)
        finally:
            await admin.close()
        lines = [{"line_id": "L1", "sku": sku, "quantity": 2}]
        await send(producer, ReserveStock(order_id=order_id, lines=lines))
        ((kind, reply),) = await replies(infra.kafka_bootstrap, order_id, 1)
        assert kind == "stock.reserved.v1" and reply["lines"][0]["expected_date"] is None

        await announce(f"po-late-{sku}", 1, day + timedelta(days=4))  # covers 1 of 2: no date
        await announce(f"po-soon-{sku}", 5, day)  # covers both: dated
        # One of the five arrives now: it fills one unit; the other waits for the late receipt.
        await send(producer, goods_received(sku, "WH-EAST", 1, receipt_id=f"po-soon-{sku}"))
        events = await replies(infra.kafka_bootstrap, order_id, 4)

    assert [kind for kind, _ in events] == [
        "stock.reserved.v1",
        "stock.backorder.eta_changed.v1",
        "stock.backorder.allocated.v1",
        "stock.backorder.eta_changed.v1",
    ]
    dated, moved = events[1][1], events[3][1]
    assert (at(dated["previous_expected_date"]), at(dated["expected_date"])) == (None, day)
    assert events[2][1]["remaining_backordered"] == 1
    assert (at(moved["previous_expected_date"]), at(moved["expected_date"])) == (
        day,
        day + timedelta(days=4),
    )
    assert (moved["line_id"], moved["sku"]) == ("L1", sku)
