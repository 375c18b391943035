"""The order service against real Kafka and PostgreSQL: checkout in, saga, commands and events out.

The tests play the upstream checkout (producing CloudEvents in both content modes) and the stock
and fulfillment services (reading stock.commands.v1 and answering on stock.events.v1 and
fulfillment.events.v1). Every test uses its own order ids, so the `orders` schema and the
consumer groups can live on between runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import ConsumerRecord, TopicPartition
from rich.console import Console

import stockflow.order.app as order_app
from stockflow.cli.order import render_order
from stockflow.contracts import Event, decode, encode, parse
from stockflow.contracts import events as wire
from stockflow.order import usecases
from stockflow.order.domain import SagaPolicy
from stockflow.order.handlers import OrderHandlers
from stockflow.order.settings import OrderSettings
from stockflow.runtime.consumer import Inbound
from stockflow.runtime.db import create_pool, migrate
from stockflow.runtime.outbox import UnitOfWork
from stockflow.runtime.testing.plugin import ADMIN

pytestmark = pytest.mark.integration

COMMANDS, ORDERS, DLQ = "stock.commands.v1", "orders.events.v1", "orders.dlq.v1"
READ = {"Authorization": "Bearer test-read"}
MIGRATIONS = Path(order_app.__file__).parent / "migrations"
ADDRESS = {
    "name": "A. Buyer",
    "line1": "1 Main St",
    "city": "Berlin",
    "postal_code": "10115",
    "country": "DE",
}


def new_order_id() -> str:
    return f"ord-{uuid.uuid4().hex[:12]}"


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def submission(order_id: str, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "order_id": order_id,
        "customer_id": "cust-1",
        "currency": "EUR",
        "placed_at": rfc3339(datetime.now(UTC)),
        "lines": [
            {"line_id": "L1", "sku": "SKU-A", "quantity": 2, "unit_price": "10.00"},
            {"line_id": "L2", "sku": "SKU-B", "quantity": 1, "unit_price": "4.50"},
        ],
        "shipping_address": ADDRESS,
        "payment": {"status": "authorized", "reference": "pay-1"},
    }
    data.update(overrides)
    return data


def pending_until(deadline: datetime) -> dict[str, Any]:
    return {"status": "pending", "reference": "pay-1", "deadline": rfc3339(deadline)}


class Checkout:
    """The upstream checkout: raw CloudEvents (valid or not), binary or structured mode."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = producer

    async def send(
        self,
        event_type: str,
        data: dict[str, Any],
        *,
        structured: bool = False,
        event_id: str | None = None,
        key: str | None = None,
    ) -> str:
        event_id = event_id or str(uuid.uuid4())
        attributes = {
            "specversion": "1.0",
            "id": event_id,
            "source": "test/checkout",
            "type": event_type,
            "time": rfc3339(datetime.now(UTC)),
        }
        if structured:
            value = json.dumps({**attributes, "data": data}).encode()
            headers = [("content-type", b"application/cloudevents+json")]
        else:
            value = json.dumps(data).encode()
            headers = [(f"ce_{k}", v.encode()) for k, v in attributes.items()]
            headers.append(("content-type", b"application/json"))
        record_key = (key or str(data.get("order_id", "none"))).encode()
        await self.producer.send("checkout.orders.v1", value, key=record_key, headers=headers)
        return event_id

    async def submit(self, data: dict[str, Any], **options: Any) -> str:
        return await self.send("checkout.order.submitted.v1", data, **options)

    async def cancel(self, order_id: str, reason: str = "changed my mind") -> str:
        return await self.send(
            "checkout.order.cancel_requested.v1", {"order_id": order_id, "reason": reason}
        )

    async def pay(self, order_id: str) -> str:
        return await self.send(
            "checkout.payment.confirmed.v1", {"order_id": order_id, "reference": "pay-1"}
        )


async def reply(producer: AIOKafkaProducer, event: Event) -> None:
    """Answer as the stock or fulfillment service would (binary mode)."""
    record = encode(event, source="test/emulator")
    await producer.send_and_wait(record.topic, record.value, key=record.key, headers=record.headers)


def reserved_in_full(order_id: str, lines: list[tuple[str, str, int]]) -> Event:
    return wire.StockReserved(
        order_id=order_id,
        complete=True,
        lines=[
            {
                "line_id": line_id,
                "sku": sku,
                "requested": q,
                "reserved": q,
                "backordered": 0,
                "allocations": [{"location": "WH1", "quantity": q}],
            }
            for line_id, sku, q in lines
        ],
    )


FULL = [("L1", "SKU-A", 2), ("L2", "SKU-B", 1)]


@dataclass(frozen=True)
class Seen:
    topic: str
    key: str | None
    type: str | None
    data: dict[str, Any] | None
    headers: dict[str, bytes]


class Watch:
    """Records that reach some topics after the watch started (earlier history is skipped)."""

    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self.consumer = consumer
        self.seen: list[Seen] = []

    async def poll(self, timeout_ms: int = 200) -> None:
        for records in (await self.consumer.getmany(timeout_ms=timeout_ms)).values():
            self.seen.extend(_seen(record) for record in records)

    def matching(self, topic: str, key: str, event_type: str | None = None) -> list[Seen]:
        return [
            s
            for s in self.seen
            if s.topic == topic and s.key == key and (event_type is None or s.type == event_type)
        ]

    async def wait(
        self,
        topic: str,
        key: str,
        event_type: str | None = None,
        *,
        count: int = 1,
        timeout_s: float = 20.0,
    ) -> list[Seen]:
        deadline = time.monotonic() + timeout_s
        while len(found := self.matching(topic, key, event_type)) < count:
            if time.monotonic() > deadline:
                types = [s.type for s in self.seen if s.key == key]
                raise AssertionError(f"{count} x {event_type} for {key} not seen; saw {types}")
            await self.poll()
        return found

    async def idle(self, seconds: float) -> None:
        """Keep reading for `seconds`, to show that nothing else arrives."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            await self.poll()


def _seen(record: Any) -> Seen:
    headers = {name: bytes(value) for name, value in record.headers or ()}
    key = record.key.decode() if record.key else None
    try:
        cloud = decode(record.value, record.headers)
        data = cloud.data if isinstance(cloud.data, dict) else json.loads(cloud.data)
        return Seen(record.topic, key, cloud.type, data, headers)
    except Exception:  # noqa: BLE001 — dead letters are not CloudEvents, by design
        return Seen(record.topic, key, None, None, headers)


@pytest.fixture
def watch(infra, producer) -> Callable[..., contextlib.AbstractAsyncContextManager[Watch]]:
    @contextlib.asynccontextmanager
    async def start(*topics: str) -> AsyncIterator[Watch]:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=infra.kafka_bootstrap, group_id=None, enable_auto_commit=False
        )
        await consumer.start()
        try:
            partitions = [
                TopicPartition(topic, p)
                for topic in topics
                for p in await producer.partitions_for(topic)
            ]
            consumer.assign(partitions)
            await consumer.seek_to_end(*partitions)
            for tp in partitions:  # resolve the end offsets now, before anything is produced
                await consumer.position(tp)
            yield Watch(consumer)
        finally:
            await consumer.stop()

    return start


@pytest.fixture
def service_with(monkeypatch) -> Callable[..., None]:
    """Run the order service with other settings (run_service loads `order_app.service`)."""

    def configure(**settings: Any) -> None:
        monkeypatch.setattr(
            order_app, "service", order_app.build_service(OrderSettings(**settings))
        )

    return configure


async def order_state(
    client: httpx.AsyncClient, order_id: str, state: str, timeout_s: float = 20.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        response = await client.get(f"/orders/{order_id}", headers=READ)
        body = response.json() if response.status_code == 200 else {}
        if body.get("state") == state:
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"{order_id} not {state}: {response.status_code} {body}")
        await asyncio.sleep(0.1)


async def test_submit_reserve_confirm_and_the_order_as_api_and_cli_show_it(
    run_service, producer, watch
) -> None:
    order_id = new_order_id()
    async with run_service("order") as (_app, client), watch(COMMANDS, ORDERS) as seen:
        await Checkout(producer).submit(submission(order_id, priority=3))
        [command] = await seen.wait(COMMANDS, order_id, "stock.reserve.requested.v1")
        assert command.data["lines"] == [
            {"line_id": "L1", "sku": "SKU-A", "quantity": 2},
            {"line_id": "L2", "sku": "SKU-B", "quantity": 1},
        ]
        assert (command.data["attempt"], command.data["priority"]) == (1, 3)
        [accepted] = await seen.wait(ORDERS, order_id, "order.accepted.v1")
        assert accepted.data["customer_id"] == "cust-1"

        await reply(producer, reserved_in_full(order_id, FULL))
        [confirmed] = await seen.wait(ORDERS, order_id, "order.confirmed.v1")
        assert confirmed.data["shipping_address"]["city"] == "Berlin"
        assert [
            (line["line_id"], line["reserved"], line["allocations"])
            for line in confirmed.data["lines"]
        ] == [
            ("L1", 2, [{"location": "WH1", "quantity": 2}]),
            ("L2", 1, [{"location": "WH1", "quantity": 1}]),
        ]

        order = await order_state(client, order_id, "confirmed")
        assert order["total"] == "24.50" and order["shipping_address"] == ADDRESS
        assert order["settled_at"] is not None and order["timers"] == []
        assert [(e["cause_type"], e["to_state"], e["outcome"]) for e in order["timeline"]] == [
            ("OrderSubmitted", "reserving", "applied"),
            ("StockReserved", "confirmed", "applied"),
        ]
        assert (await client.get(f"/orders/{order_id}")).status_code == 401
        assert (
            await client.get("/orders", headers=READ, params={"state": "confirmed", "limit": 1})
        ).json()["orders"]
        stats = (await client.get("/orders/stats")).json()
        assert (
            stats["states"]["confirmed"] >= 1
            and "stuck" in stats
            and stats["settle_latency_ms"]["p50"] is not None
        )

        console = Console(record=True, width=160, file=io.StringIO())
        render_order(console, order)
        text = console.export_text()
        assert order_id in text and "StockReserved" in text and "WH1" in text


async def test_rejection_by_stock_reaches_checkout_structured_mode(
    run_service, producer, watch
) -> None:
    order_id = new_order_id()
    async with run_service("order") as (_app, client), watch(COMMANDS, ORDERS) as seen:
        await Checkout(producer).submit(submission(order_id), structured=True)
        await seen.wait(COMMANDS, order_id, "stock.reserve.requested.v1")
        await reply(
            producer,
            wire.ReservationRejected(
                order_id=order_id,
                reason="insufficient_stock",
                lines=[{"sku": "SKU-A", "requested": 2, "available": 1}],
            ),
        )
        [rejected] = await seen.wait(ORDERS, order_id, "order.rejected.v1")
        assert rejected.data["reason"] == "insufficient_stock"
        assert rejected.data["lines"] == [{"sku": "SKU-A", "requested": 2, "available": 1}]
        order = await order_state(client, order_id, "rejected")
        assert order["reason"] == "insufficient_stock"


async def test_invalid_orders_are_rejected_and_unidentifiable_records_dead_lettered(
    run_service, producer, watch
) -> None:
    zero, twice, no_customer = new_order_id(), new_order_id(), new_order_id()
    checkout = Checkout(producer)
    async with run_service("order") as (_app, client), watch(ORDERS, DLQ) as seen:
        await checkout.submit(
            submission(
                zero, lines=[{"line_id": "L1", "sku": "SKU-A", "quantity": 0, "unit_price": "1.00"}]
            )
        )
        await checkout.submit(
            submission(
                twice,
                lines=[
                    {"line_id": "L1", "sku": "SKU-A", "quantity": 1, "unit_price": "1.00"},
                    {"line_id": "L1", "sku": "SKU-B", "quantity": 1, "unit_price": "1.00"},
                ],
            ),
            structured=True,
        )
        bad = submission(no_customer)
        del bad["customer_id"]
        await checkout.submit(bad)
        not_json = f"garbage-{uuid.uuid4().hex[:8]}"
        await producer.send("checkout.orders.v1", b'{"order_id": "x", trunc', key=not_json.encode())
        anonymous = f"anon-{uuid.uuid4().hex[:8]}"
        await checkout.submit({"lines": []}, key=anonymous)

        for order_id, field in (
            (zero, "lines[0].quantity"),
            (twice, "lines[1].line_id"),
            (no_customer, "customer_id"),
        ):
            [rejected] = await seen.wait(ORDERS, order_id, "order.rejected.v1")
            assert rejected.data["reason"] == "invalid_order"
            assert rejected.data["field"] == field, rejected.data
            assert field in {v["field"] for v in rejected.data["violations"]}
            assert (await order_state(client, order_id, "rejected"))["reason"] == "invalid_order"
        for key in (not_json, anonymous):
            [dead] = await seen.wait(DLQ, key)
            assert dead.headers["dlq_consumer_group"] == b"order.checkout"
            assert dead.headers["dlq_reason"]
        assert not seen.matching(DLQ, zero) and not seen.matching(DLQ, no_customer)


async def test_a_redelivered_invalid_submission_is_answered_once(
    run_service, producer, watch
) -> None:
    """An invalid record never reaches the inbox as an event, yet its answer is an effect:
    replayed from offset zero it must not be answered (or written to the timeline) again."""
    order_id = new_order_id()
    checkout = Checkout(producer)
    invalid = submission(
        order_id, lines=[{"line_id": "L1", "sku": "SKU-A", "quantity": 0, "unit_price": "1.00"}]
    )
    async with run_service("order") as (_app, client), watch(ORDERS) as seen:
        first = await checkout.submit(invalid)
        await seen.wait(ORDERS, order_id, "order.rejected.v1")
        await checkout.submit(invalid, event_id=first)
        # A new event about the same order, behind the redelivery on the same partition: once
        # its timeline row is there, the redelivery has been read too.
        later = await checkout.submit(invalid)
        await producer.flush()
        deadline = time.monotonic() + 30
        order = await order_state(client, order_id, "rejected")
        while later not in {e["cause_id"] for e in order["timeline"]}:
            assert time.monotonic() < deadline, order["timeline"]
            await asyncio.sleep(0.1)
            order = (await client.get(f"/orders/{order_id}", headers=READ)).json()
        assert [(e["cause_id"], e["outcome"]) for e in order["timeline"]] == [
            (first, "applied"),
            (later, "ignored"),
        ]
        await seen.idle(1.0)
        assert [s.type for s in seen.matching(ORDERS, order_id)] == ["order.rejected.v1"]


async def test_duplicates_make_one_order_and_a_conflicting_resubmission_is_refused(
    run_service, producer, watch
) -> None:
    order_id = new_order_id()
    checkout = Checkout(producer)
    original = submission(order_id)
    async with run_service("order") as (_app, client), watch(COMMANDS, ORDERS) as seen:
        first = await checkout.submit(original)
        await checkout.submit(original, event_id=first)  # a redelivery: the inbox drops it
        await checkout.submit(original, structured=True)  # a retry upstream: same order
        await checkout.submit(submission(order_id, currency="USD"))  # a different order!
        await producer.flush()
        await seen.wait(COMMANDS, order_id, "stock.reserve.requested.v1")
        order = await order_state(client, order_id, "reserving")
        deadline = time.monotonic() + 15
        while len(order["timeline"]) < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            order = (await client.get(f"/orders/{order_id}", headers=READ)).json()
        assert [(e["outcome"], e["to_state"]) for e in order["timeline"]] == [
            ("applied", "reserving"),
            ("ignored", "reserving"),
            ("refused", "reserving"),
        ]
        assert order["currency"] == "EUR"
        await seen.idle(1.0)
        assert len(seen.matching(COMMANDS, order_id)) == 1
        assert [s.type for s in seen.matching(ORDERS, order_id)] == ["order.accepted.v1"]
        await reply(producer, reserved_in_full(order_id, FULL))
        await order_state(client, order_id, "confirmed")


async def test_cancel_releases_the_reservation_and_a_cancel_after_shipping_is_refused(
    run_service, producer, watch
) -> None:
    cancelled, shipped = new_order_id(), new_order_id()
    checkout = Checkout(producer)
    async with run_service("order") as (_app, client), watch(COMMANDS, ORDERS) as seen:
        for order_id in (cancelled, shipped):
            await checkout.submit(submission(order_id))
            await seen.wait(COMMANDS, order_id, "stock.reserve.requested.v1")
            await reply(producer, reserved_in_full(order_id, FULL))
            await seen.wait(ORDERS, order_id, "order.confirmed.v1")

        await checkout.cancel(cancelled)
        [release] = await seen.wait(COMMANDS, cancelled, "stock.release.requested.v1")
        assert release.data["reason"] == "changed my mind"
        await seen.wait(ORDERS, cancelled, "order.cancelled.v1")

        now = datetime.now(UTC)
        await reply(
            producer,
            wire.ShipmentShipped(
                shipment_id=f"shp-{shipped}",
                order_id=shipped,
                location="WH1",
                carrier="DHL",
                service_level="standard",
                tracking_number="JD0001",
                label_ref="labels/1.pdf",
                shipped_at=now,
                lines=[{"line_id": line_id, "sku": sku, "quantity": q} for line_id, sku, q in FULL],
            ),
        )
        [out] = await seen.wait(ORDERS, shipped, "order.shipped.v1")
        assert out.data["fully_shipped"] is True and out.data["lines"][0]["location"] == "WH1"
        await checkout.cancel(shipped)
        [refused] = await seen.wait(ORDERS, shipped, "order.cancel_refused.v1")
        assert refused.data["reason"] == "already_shipped"
        await reply(
            producer,
            wire.ShipmentDelivered(
                shipment_id=f"shp-{shipped}", order_id=shipped, delivered_at=now
            ),
        )
        [delivered] = await seen.wait(ORDERS, shipped, "order.delivered.v1")
        assert delivered.data["shipment_ids"] == [f"shp-{shipped}"]
        order = await order_state(client, shipped, "delivered")
        [shipment] = order["shipments"]
        assert shipment["tracking_number"] == "JD0001" and shipment["delivered_at"] is not None
        assert not seen.matching(COMMANDS, shipped, "stock.release.requested.v1")


def shipment_created(order_id: str, shipment_id: str, lines: list[tuple[str, str, int]]) -> Event:
    return wire.ShipmentCreated(
        shipment_id=shipment_id,
        order_id=order_id,
        location="WH1",
        lines=[{"line_id": line_id, "sku": sku, "quantity": q} for line_id, sku, q in lines],
    )


def shipment_shipped(order_id: str, shipment_id: str, lines: list[tuple[str, str, int]]) -> Event:
    return wire.ShipmentShipped(
        shipment_id=shipment_id,
        order_id=order_id,
        location="WH1",
        carrier="DHL",
        service_level="standard",
        tracking_number=f"T{uuid.uuid4().hex[:10]}",
        label_ref="labels/1.pdf",
        shipped_at=datetime.now(UTC),
        lines=[{"line_id": line_id, "sku": sku, "quantity": q} for line_id, sku, q in lines],
    )


async def test_a_short_pick_cancels_the_missing_units_and_the_order_ends_delivered(
    run_service, producer, watch
) -> None:
    order_id, shipment_id = new_order_id(), "S1"
    ordered = [("L1", "SKU-A", 3), ("L2", "SKU-B", 1)]
    async with run_service("order") as (_app, client), watch(COMMANDS, ORDERS) as seen:
        await Checkout(producer).submit(
            submission(
                order_id,
                lines=[
                    {"line_id": "L1", "sku": "SKU-A", "quantity": 3, "unit_price": "10.00"},
                    {"line_id": "L2", "sku": "SKU-B", "quantity": 1, "unit_price": "5.00"},
                ],
            )
        )
        await seen.wait(COMMANDS, order_id, "stock.reserve.requested.v1")
        await reply(producer, reserved_in_full(order_id, ordered))
        await seen.wait(ORDERS, order_id, "order.confirmed.v1")
        await reply(producer, shipment_created(order_id, shipment_id, ordered))
        short = wire.ShipmentShortened(
            shipment_id=shipment_id,
            order_id=order_id,
            location="WH1",
            removed=[{"line_id": "L1", "sku": "SKU-A", "quantity": 1}],
        )
        await reply(producer, short)
        await reply(producer, short)  # the same fact again, under a new event id

        [release] = await seen.wait(COMMANDS, order_id, "stock.release.requested.v1")
        assert release.data["reason"] == "short_pick"
        assert release.data["lines"] == [
            {
                "line_id": "L1",
                "sku": "SKU-A",
                "location": "WH1",
                "quantity": 1,
                "not_found": True,
                "backorder": False,
            }
        ]
        [cancelled] = await seen.wait(ORDERS, order_id, "order.line_cancelled.v1")
        assert (cancelled.data["line_id"], cancelled.data["quantity"]) == ("L1", 1)
        assert (cancelled.data["reason"], cancelled.data["remaining"]) == ("short_pick", 2)

        picked = [("L1", "SKU-A", 2), ("L2", "SKU-B", 1)]
        await reply(producer, shipment_shipped(order_id, shipment_id, picked))
        [out] = await seen.wait(ORDERS, order_id, "order.shipped.v1")
        assert out.data["fully_shipped"] is True
        await reply(
            producer,
            wire.ShipmentDelivered(
                shipment_id=shipment_id, order_id=order_id, delivered_at=datetime.now(UTC)
            ),
        )
        await seen.wait(ORDERS, order_id, "order.delivered.v1")
        order = await order_state(client, order_id, "delivered")
        await seen.idle(0.5)
        assert len(seen.matching(COMMANDS, order_id, "stock.release.requested.v1")) == 1
        assert len(seen.matching(ORDERS, order_id, "order.line_cancelled.v1")) == 1
        notes = [entry["note"] for entry in order["timeline"]]
        assert any("duplicate report" in note for note in notes)


async def test_a_warehouse_cancel_of_the_only_shipment_cancels_the_order_and_its_units(
    run_service, producer, watch
) -> None:
    order_id = new_order_id()
    async with run_service("order") as (_app, client), watch(COMMANDS, ORDERS) as seen:
        await Checkout(producer).submit(submission(order_id))
        await seen.wait(COMMANDS, order_id, "stock.reserve.requested.v1")
        await reply(producer, reserved_in_full(order_id, FULL))
        await seen.wait(ORDERS, order_id, "order.confirmed.v1")
        await reply(producer, shipment_created(order_id, "S1", FULL))
        await reply(
            producer,
            wire.ShipmentCancelled(shipment_id="S1", order_id=order_id, reason="bin flooded"),
        )
        [release] = await seen.wait(COMMANDS, order_id, "stock.release.requested.v1")
        assert release.data["reason"] == "warehouse_cancelled"
        assert sorted(
            (r["line_id"], r["quantity"], r["not_found"]) for r in release.data["lines"]
        ) == [
            ("L1", 2, False),
            ("L2", 1, False),
        ]
        await seen.wait(ORDERS, order_id, "order.line_cancelled.v1", count=2)
        [ended] = await seen.wait(ORDERS, order_id, "order.cancelled.v1")
        assert ended.data["reason"] == "every unit cancelled"
        await order_state(client, order_id, "cancelled")


async def test_a_carrier_exception_calls_an_operator_once_and_the_order_waits_for_delivery(
    run_service, producer, watch
) -> None:
    order_id = new_order_id()
    async with run_service("order") as (_app, client), watch(COMMANDS, ORDERS) as seen:
        await Checkout(producer).submit(submission(order_id))
        await seen.wait(COMMANDS, order_id, "stock.reserve.requested.v1")
        await reply(producer, reserved_in_full(order_id, FULL))
        await seen.wait(ORDERS, order_id, "order.confirmed.v1")
        await reply(producer, shipment_shipped(order_id, "S1", FULL))
        await seen.wait(ORDERS, order_id, "order.shipped.v1")
        for detail in ("parcel damaged", "parcel damaged, returned to depot"):
            await reply(
                producer,
                wire.ShipmentException(shipment_id="S1", order_id=order_id, detail=detail),
            )
        [stuck] = await seen.wait(ORDERS, order_id, "order.stuck.v1")
        assert (stuck.data["reason"], stuck.data["state"]) == ("carrier_exception", "shipped")
        await reply(
            producer,
            wire.ShipmentDelivered(
                shipment_id="S1", order_id=order_id, delivered_at=datetime.now(UTC)
            ),
        )
        await seen.wait(ORDERS, order_id, "order.delivered.v1")
        assert len(seen.matching(ORDERS, order_id, "order.stuck.v1")) == 1
        assert not seen.matching(COMMANDS, order_id, "stock.release.requested.v1")
        await order_state(client, order_id, "delivered")


async def confirmed_with_a_planned_shipment(producer, seen, order_id: str) -> None:
    await Checkout(producer).submit(submission(order_id))
    await seen.wait(COMMANDS, order_id, "stock.reserve.requested.v1")
    await reply(producer, reserved_in_full(order_id, FULL))
    await seen.wait(ORDERS, order_id, "order.confirmed.v1")
    await reply(producer, shipment_created(order_id, "S1", FULL))


async def shipment_heard(client, order_id: str) -> None:
    """Wait until the order knows its planned shipment: a cancel asked before it is refused
    (only units waiting in a planned shipment can be cancelled)."""
    for _ in range(100):
        order = (await client.get(f"/orders/{order_id}", headers=ADMIN)).json()
        if order.get("planned_shipments"):
            return
        await asyncio.sleep(0.1)
    pytest.fail(f"order {order_id} never heard of its planned shipment")


async def test_a_lines_cancel_from_checkout_goes_to_fulfillment_and_what_it_drops_is_cancelled(
    run_service, producer, watch
) -> None:
    order_id = new_order_id()
    async with run_service("order") as (_app, client), watch(COMMANDS, ORDERS) as seen:
        await confirmed_with_a_planned_shipment(producer, seen, order_id)
        await shipment_heard(client, order_id)
        request = {
            "order_id": order_id,
            "request_id": "REQ-1",
            "lines": [{"line_id": "L1", "quantity": 1}],
            "reason": "changed my mind",
        }
        checkout = Checkout(producer)
        await checkout.send("checkout.order.lines_cancel_requested.v1", request)
        await checkout.send("checkout.order.lines_cancel_requested.v1", request)  # a retry
        [asked] = await seen.wait(ORDERS, order_id, "order.lines_cancel_requested.v1")
        assert asked.data["request_id"] == "REQ-1"
        assert asked.data["lines"] == [{"line_id": "L1", "sku": "SKU-A", "quantity": 1}]

        dropped = wire.ShipmentShortened(
            shipment_id="S1",
            order_id=order_id,
            location="WH1",
            removed=[{"line_id": "L1", "sku": "SKU-A", "quantity": 1}],
            reason="changed my mind",
            cancel_request_id="REQ-1",
        )
        await reply(producer, dropped)
        [release] = await seen.wait(COMMANDS, order_id, "stock.release.requested.v1")
        assert release.data["lines"] == [
            {
                "line_id": "L1",
                "sku": "SKU-A",
                "location": "WH1",
                "quantity": 1,
                "not_found": False,
                "backorder": False,
            }
        ]
        [cancelled] = await seen.wait(ORDERS, order_id, "order.line_cancelled.v1")
        assert (cancelled.data["reason"], cancelled.data["remaining"]) == ("changed my mind", 1)
        await seen.idle(0.5)
        assert len(seen.matching(ORDERS, order_id, "order.lines_cancel_requested.v1")) == 1
        order = await order_state(client, order_id, "confirmed")
        assert order["lines"][0]["cancelled"] == 1


async def test_the_http_lines_cancel_answers_by_outcome_and_honours_idempotency_key(
    run_service, producer, watch
) -> None:
    order_id = new_order_id()
    async with run_service("order") as (_app, client), watch(COMMANDS, ORDERS) as seen:
        await confirmed_with_a_planned_shipment(producer, seen, order_id)
        await order_state(client, order_id, "confirmed")
        path = f"/orders/{order_id}/line-cancellations"
        body = {"request_id": "REQ-H", "lines": [{"line_id": "L2", "quantity": 1}]}

        assert (await client.post(path, json=body, headers=READ)).status_code == 403
        # An Idempotency-Key keeps its first answer: ask once the shipment is known.
        await shipment_heard(client, order_id)
        first = await client.post(path, json=body, headers=ADMIN | {"Idempotency-Key": "k1"})
        assert first.status_code == 202, first.text
        assert first.json()["outcome"] == "requested"
        replay = await client.post(path, json=body, headers=ADMIN | {"Idempotency-Key": "k1"})
        assert replay.json() == first.json() and replay.headers["Idempotent-Replayed"] == "true"
        again = await client.post(path, json=body, headers=ADMIN)
        assert (again.status_code, again.json()["outcome"]) == (200, "duplicate")

        too_many = {"request_id": "REQ-X", "lines": [{"line_id": "L1", "quantity": 3}]}
        refused = await client.post(path, json=too_many, headers=ADMIN)
        assert refused.status_code == 409 and "exceed" in refused.json()["detail"]
        [answer] = await seen.wait(ORDERS, order_id, "order.cancel_refused.v1")
        assert answer.data["reason"] == "not_cancellable"

        twice = {"lines": [{"line_id": "L1", "quantity": 1}, {"line_id": "L1", "quantity": 1}]}
        bad = await client.post(path, json=twice, headers=ADMIN)
        assert bad.status_code == 422 and bad.json()["detail"].startswith("lines")
        zero = await client.post(
            path, json={"lines": [{"line_id": "L1", "quantity": 0}]}, headers=ADMIN
        )
        assert zero.status_code == 422 and "quantity" in zero.text
        unknown = await client.post("/orders/nobody/line-cancellations", json=body, headers=ADMIN)
        assert unknown.status_code == 404
        # No request_id: the Idempotency-Key names the request.
        keyed = {"lines": [{"line_id": "L1", "quantity": 1}]}
        by_key = await client.post(path, json=keyed, headers=ADMIN | {"Idempotency-Key": "k2"})
        assert (by_key.status_code, by_key.json()["request_id"]) == (202, "k2")
        await seen.wait(ORDERS, order_id, "order.lines_cancel_requested.v1", count=2)


async def test_payment_deadline_cancels_and_a_late_payment_never_revives(
    run_service, producer, watch, service_with
) -> None:
    service_with(timer_poll_interval_s=0.1)
    order_id, paid = new_order_id(), new_order_id()
    checkout = Checkout(producer)
    deadline = datetime.now(UTC) + timedelta(seconds=3)
    async with run_service("order") as (_app, client), watch(COMMANDS, ORDERS) as seen:
        for each in (order_id, paid):
            await checkout.submit(submission(each, payment=pending_until(deadline)))
            await seen.wait(COMMANDS, each, "stock.reserve.requested.v1")
            await reply(producer, reserved_in_full(each, FULL))
        await order_state(client, order_id, "awaiting_payment")
        await checkout.pay(paid)
        await seen.wait(ORDERS, paid, "order.confirmed.v1")

        [cancelled] = await seen.wait(ORDERS, order_id, "order.cancelled.v1", timeout_s=15)
        assert cancelled.data["reason"] == "payment_timeout"
        [release] = await seen.wait(COMMANDS, order_id, "stock.release.requested.v1")
        assert release.data["reason"] == "payment_timeout"

        await checkout.pay(order_id)
        order = await order_state(client, order_id, "cancelled")
        while order["timeline"][-1]["cause_type"] != "PaymentConfirmed":
            await asyncio.sleep(0.1)
            order = (await client.get(f"/orders/{order_id}", headers=READ)).json()
        assert order["state"] == "cancelled" and order["timeline"][-1]["outcome"] == "ignored"
        assert order["timeline"][-2]["cause_type"] == "PaymentDeadlinePassed"
        assert (await order_state(client, paid, "confirmed"))["timers"] == []
        assert not seen.matching(ORDERS, order_id, "order.confirmed.v1")


async def test_timers_survive_a_restart_and_a_silent_stock_gets_the_command_again(
    run_service, producer, watch, service_with
) -> None:
    service_with(stock_reply_timeout_s=2, timer_poll_interval_s=0.1)
    silent, unpaid = new_order_id(), new_order_id()
    checkout = Checkout(producer)
    async with watch(COMMANDS, ORDERS) as seen:
        async with run_service("order") as (_app, client):
            await checkout.submit(submission(silent))
            await checkout.submit(
                submission(unpaid, payment=pending_until(datetime.now(UTC) + timedelta(seconds=3)))
            )
            await seen.wait(COMMANDS, silent, "stock.reserve.requested.v1")
            await seen.wait(COMMANDS, unpaid, "stock.reserve.requested.v1")
            await reply(producer, reserved_in_full(unpaid, FULL))
            order = await order_state(client, unpaid, "awaiting_payment")
            assert [t["kind"] for t in order["timers"]] == ["payment_deadline"]
            assert [
                t["attempt"] for t in (await order_state(client, silent, "reserving"))["timers"]
            ] == [1]
        await asyncio.sleep(3.5)  # both timers fall due while no instance runs

        async with run_service("order") as (_app, client):
            resent = await seen.wait(COMMANDS, silent, "stock.reserve.requested.v1", count=2)
            assert [c.data["attempt"] for c in resent] == [1, 2]
            [cancelled] = await seen.wait(ORDERS, unpaid, "order.cancelled.v1")
            assert cancelled.data["reason"] == "payment_timeout"
            await reply(producer, reserved_in_full(silent, FULL))
            await seen.wait(ORDERS, silent, "order.confirmed.v1")
            order = await order_state(client, silent, "confirmed")
            assert order["reserve_attempts"] == 2 and order["timers"] == []
            assert [e["cause_type"] for e in order["timeline"]] == [
                "OrderSubmitted",
                "StockReplyTimedOut",
                "StockReserved",
            ]


async def test_a_burst_of_orders_is_taken_in_batches(run_service, producer, watch) -> None:
    prefix = f"burst-{uuid.uuid4().hex[:6]}"
    order_ids = [f"{prefix}-{n:04d}" for n in range(500)]
    checkout = Checkout(producer)
    async with run_service("order") as (_app, client), watch(COMMANDS, ORDERS) as seen:
        started = time.monotonic()
        for order_id in order_ids:
            await checkout.submit(submission(order_id))
        await producer.flush()
        for order_id in order_ids:
            await seen.wait(COMMANDS, order_id, "stock.reserve.requested.v1", timeout_s=60)
        elapsed = time.monotonic() - started
        print(
            f"\n500 submissions → 500 ReserveStock in {elapsed:.2f} s "
            f"({500 / elapsed:.0f} orders/s, produce + consume + relay)"
        )
        page = (
            await client.get("/orders", headers=ADMIN, params={"after": prefix, "limit": 500})
        ).json()
        assert sum(o["order_id"].startswith(prefix) for o in page["orders"]) == 500
        for order_id in order_ids:  # end them, so that no stock-reply timer outlives the test
            record = encode(
                wire.ReservationRejected(order_id=order_id, reason="unknown_sku"),
                source="test/emulator",
            )
            await producer.send(record.topic, record.value, key=record.key, headers=record.headers)
        for order_id in order_ids:
            await seen.wait(ORDERS, order_id, "order.rejected.v1", timeout_s=60)


def inbound(event: Event) -> Inbound:
    """A record as the consumer runtime hands it to a batch handler."""
    record = encode(event, source="test/checkout")
    cloud = decode(record.value, record.headers)
    consumer_record = ConsumerRecord(
        record.topic,
        0,
        0,
        0,
        0,
        record.key,
        record.value,
        None,
        len(record.key or b""),
        len(record.value),
        record.headers,
    )
    return Inbound(consumer_record, cloud, parse(cloud))


async def test_a_batch_costs_a_few_statements_and_keeps_each_orders_sequence(infra) -> None:
    await migrate(infra.role_url("orders_owner"), "orders", MIGRATIONS)
    pool = await create_pool(
        infra.role_url("orders_app"), "orders", application_name="test", min_size=1, max_size=1
    )
    many = [new_order_id() for _ in range(200)]
    cancelled, repeated, stranger = new_order_id(), new_order_id(), new_order_id()
    batch = [inbound(wire.CheckoutOrderSubmitted.model_validate(submission(o))) for o in many]
    batch += [
        inbound(wire.CheckoutOrderSubmitted.model_validate(submission(cancelled))),
        inbound(wire.CheckoutOrderCancelRequested(order_id=cancelled, reason="oops")),
        inbound(wire.CheckoutOrderSubmitted.model_validate(submission(repeated))),
        inbound(wire.CheckoutOrderSubmitted.model_validate(submission(repeated))),
        inbound(wire.CheckoutPaymentConfirmed(order_id=repeated, reference="pay-1")),
        inbound(wire.CheckoutOrderCancelRequested(order_id=stranger, reason="who?")),
    ]
    try:
        async with pool.acquire() as conn:
            transaction = conn.transaction()
            await transaction.start()
            uow = UnitOfWork(conn, source="stockflow/order")
            warm_up = new_order_id()  # asyncpg introspects array types once per connection
            await OrderHandlers().on_checkout(
                uow,
                [
                    inbound(wire.CheckoutOrderSubmitted.model_validate(submission(warm_up))),
                    inbound(wire.CheckoutOrderCancelRequested(order_id=warm_up, reason="warm-up")),
                ],
            )
            await uow.flush()
            statements: list[str] = []

            def log_query(query: Any) -> None:
                statements.append(query.query)

            conn.add_query_logger(log_query)
            await OrderHandlers().on_checkout(uow, batch)
            await uow.flush()
            await asyncio.sleep(0.05)  # the query logger is called back from the event loop
            conn.remove_query_logger(log_query)
            # lock, insert orders, timeline, drop + arm timers, outbox: whatever the batch size
            assert len(statements) == 6, [q[:60] for q in statements]

            rows = await conn.fetch(
                "SELECT order_id, state FROM orders WHERE order_id = ANY($1)",
                [*many, cancelled, repeated, stranger],
            )
            states = {row["order_id"]: row["state"] for row in rows}
            assert states == {
                **dict.fromkeys(many, "reserving"),
                cancelled: "cancelled",
                repeated: "reserving",
            }
            outcomes = await conn.fetch(
                "SELECT order_id, cause_type, outcome FROM timeline WHERE order_id = ANY($1) "
                "ORDER BY seq",
                [cancelled, repeated],
            )
            assert [(r["order_id"], r["cause_type"], r["outcome"]) for r in outcomes] == [
                (cancelled, "OrderSubmitted", "applied"),
                (cancelled, "CancelRequested", "applied"),
                (repeated, "OrderSubmitted", "applied"),
                (repeated, "OrderSubmitted", "ignored"),
                (repeated, "PaymentConfirmed", "ignored"),
            ]
            timers = await conn.fetch(
                "SELECT order_id, kind FROM timers WHERE order_id = ANY($1)", [cancelled, repeated]
            )
            assert [(r["order_id"], r["kind"]) for r in timers] == [(repeated, "stock_reply")]
            topics = await conn.fetch(
                "SELECT topic, count(*) AS n FROM outbox WHERE key = ANY($1) GROUP BY topic",
                [o.encode() for o in (*many, cancelled, repeated)],
            )
            # accepted + ReserveStock per order; the cancelled one adds cancelled + release
            assert {r["topic"]: r["n"] for r in topics} == {
                "orders.events.v1": len(many) + 3,
                "stock.commands.v1": len(many) + 3,
            }
            await transaction.rollback()
    finally:
        await pool.close()


async def test_two_instances_never_fire_one_timer_twice(infra) -> None:
    await migrate(infra.role_url("orders_owner"), "orders", MIGRATIONS)
    pool = await create_pool(
        infra.role_url("orders_app"), "orders", application_name="test", min_size=2, max_size=2
    )
    order_ids = [new_order_id() for _ in range(60)]
    # One attempt only: a timeout makes the order stuck instead of arming another timer.
    policy = SagaPolicy(max_reserve_attempts=1)
    handlers = OrderHandlers(policy)
    try:
        async with pool.acquire() as conn, conn.transaction():
            uow = UnitOfWork(conn, source="stockflow/order")  # never flushed: no outbox rows
            await handlers.on_checkout(
                uow,
                [
                    inbound(wire.CheckoutOrderSubmitted.model_validate(submission(o)))
                    for o in order_ids
                ],
            )
            await conn.execute(
                "UPDATE timers SET fire_at = now() - interval '1 second' WHERE order_id = ANY($1)",
                order_ids,
            )

        async def instance() -> int:
            fired = 0
            while True:
                async with pool.acquire() as conn, conn.transaction():
                    due = await usecases.fire_due_timers(UnitOfWork(conn, source="t"), 7, policy)
                    await asyncio.sleep(0.02)  # hold the claimed rows while the other looks
                if not due:
                    return fired
                fired += due

        fired = await asyncio.gather(instance(), instance())
        assert all(fired), fired  # both took part
        async with pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT order_id, count(*) AS n FROM timeline WHERE order_id = ANY($1) "
                "AND cause_type = 'StockReplyTimedOut' GROUP BY order_id",
                order_ids,
            )
            assert {row["order_id"]: row["n"] for row in rows} == dict.fromkeys(order_ids, 1)
            assert not await conn.fetchval(
                "SELECT count(*) FROM timers WHERE order_id = ANY($1)", order_ids
            )
    finally:
        async with pool.acquire() as conn:
            for table in ("orders", "timeline", "timers"):
                await conn.execute(f"DELETE FROM {table} WHERE order_id = ANY($1)", order_ids)
        await pool.close()
