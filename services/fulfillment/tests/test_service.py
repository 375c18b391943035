"""The fulfillment service against real Kafka and PostgreSQL: orders in, parcels and events out.

Every test uses its own orders, skus and locations, so what it checks is its own even though
the `fulfillment` schema, its consumer groups and `fulfillment.events.v1` live on between runs.
Events are read from the topic's end as it was when the test began (the topic keeps every
earlier run's events, so reading from the start and stopping at a count would not find ours).
"""

from __future__ import annotations

import asyncio
import io
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition
from pypdf import PdfReader

from stockflow.contracts import Event, decode, encode, parse
from stockflow.contracts.events import (
    CatalogVariantUpserted,
    OrderBackorderAllocated,
    OrderCancelled,
    OrderConfirmed,
    OrderLinesCancelRequested,
)
from stockflow.fulfillment.domain import is_valid_s10

pytestmark = pytest.mark.integration

WAREHOUSE = {"Authorization": "Bearer test-warehouse"}
EVENTS = "fulfillment.events.v1"
ADDRESS = {
    "name": "Ada Lovelace",
    "line1": "12 St James's Square",
    "city": "London",
    "postal_code": "SW1Y 4JH",
    "country": "GB",
}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8].upper()}"


Line = tuple[str, str, int, dict[str, int], int]
"""(line_id, sku, unit price in pence, units reserved per location, units backordered)"""


def confirmed(order_id: str, lines: list[Line]) -> OrderConfirmed:
    return OrderConfirmed(
        order_id=order_id,
        currency="GBP",
        shipping_address=ADDRESS,
        confirmed_at=datetime.now(UTC),
        lines=[
            {
                "line_id": line_id,
                "sku": sku,
                "quantity": sum(held.values()) + backordered,
                "reserved": sum(held.values()),
                "backordered": backordered,
                "unit_price": str(Decimal(pence) / 100),
                "allocations": [{"location": loc, "quantity": q} for loc, q in held.items()],
            }
            for line_id, sku, pence, held, backordered in lines
        ],
    )


def variant(sku: str, grams: int, size: tuple[int, int, int]) -> CatalogVariantUpserted:
    return CatalogVariantUpserted(
        sku=sku,
        product_id=unique("P"),
        handle="test-variant",
        title=f"Test {sku}",
        status="active",
        weight_grams=grams,
        dimensions_mm={"length": size[0], "width": size[1], "height": size[2]},
        tracked=True,
        backorderable=False,
        version=1,
        updated_at=datetime.now(UTC),
    )


class Events:
    """fulfillment.events.v1 from where it ended when the test began."""

    def __init__(self, bootstrap: str, start: dict[TopicPartition, int]) -> None:
        self.bootstrap = bootstrap
        self.start = start

    async def wait_for(
        self, order_id: str, *types: str, at_least: int = 1, timeout_s: float = 30.0
    ) -> list[tuple[str, Any]]:
        """(type, event) of `order_id` once every type in `types` was seen `at_least` times."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        await consumer.start()
        seen: list[tuple[str, Any]] = []
        try:
            consumer.assign(list(self.start))
            for partition, offset in self.start.items():
                consumer.seek(partition, offset)
            deadline = asyncio.get_running_loop().time() + timeout_s
            while any(sum(t == wanted for t, _ in seen) < at_least for wanted in types):
                assert asyncio.get_running_loop().time() < deadline, (types, seen)
                batch = await consumer.getmany(timeout_ms=300)
                for records in batch.values():
                    for record in records:
                        if record.key != order_id.encode():
                            continue
                        cloud = decode(record.value, record.headers)
                        seen.append((cloud.type, parse(cloud)))
        finally:
            await consumer.stop()
        return seen


@pytest.fixture
async def events(infra, producer: AIOKafkaProducer) -> Events:
    partitions = [TopicPartition(EVENTS, p) for p in await producer.partitions_for(EVENTS)]
    consumer = AIOKafkaConsumer(bootstrap_servers=infra.kafka_bootstrap)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
    return Events(infra.kafka_bootstrap, dict(ends))


@pytest.fixture
def send(producer: AIOKafkaProducer) -> Callable[[Event], Awaitable[None]]:
    async def publish(event: Event) -> None:
        record = encode(event, source="stockflow/test")
        await producer.send_and_wait(
            record.topic, record.value, key=record.key, headers=record.headers
        )

    return publish


@pytest.fixture
async def service(run_service) -> AsyncIterator[httpx.AsyncClient]:
    async with run_service("fulfillment") as (_app, client):
        client.headers.update(WAREHOUSE)
        yield client


async def eventually(check: Callable[[], Awaitable[Any]], timeout_s: float = 30.0) -> Any:
    """Poll `check` until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        result = await check()
        if result:
            return result
        assert asyncio.get_running_loop().time() < deadline, "timed out waiting"
        await asyncio.sleep(0.2)


async def shipments_of(client: httpx.AsyncClient, order_id: str, count: int) -> list[dict]:
    async def check() -> list[dict] | None:
        response = await client.get(f"/orders/{order_id}/shipments")
        shipments = response.json()["shipments"]
        return shipments if len(shipments) >= count else None

    return await eventually(check)


async def pick_all(client: httpx.AsyncClient, location: str) -> dict:
    created = await client.post("/pick-lists", json={"location": location})
    assert created.status_code == 201, created.text
    pick_list = created.json()
    found = {line["sku"]: line["quantity"] for line in pick_list["lines"]}
    confirmed = await client.post(
        f"/pick-lists/{pick_list['pick_list_id']}/confirm", json={"found": found}
    )
    assert confirmed.status_code == 200, confirmed.text
    return pick_list


BOX = {
    "packages": [
        {"weight_grams": 800, "dimensions_mm": {"length": 300, "width": 200, "height": 100}}
    ]
}


async def ship_order(client: httpx.AsyncClient, send, order: OrderConfirmed, location: str) -> dict:
    """Confirmed order with everything at `location` → picked, packed, shipped."""
    await send(order)
    [shipment] = await shipments_of(client, order.order_id, 1)
    await pick_all(client, location)
    packed = await client.post(f"/shipments/{shipment['shipment_id']}/pack", json=BOX)
    assert packed.status_code == 200, packed.text
    shipped = await client.post(f"/shipments/{shipment['shipment_id']}/ship")
    assert shipped.status_code == 200, shipped.text
    return shipped.json()


async def test_confirmed_order_is_picked_packed_shipped_and_delivered(
    service: httpx.AsyncClient, send, events: Events
) -> None:
    client = service
    order_id, north, south = unique("ORD"), unique("N"), unique("S")
    mug, tea, lamp = unique("MUG"), unique("TEA"), unique("LAMP")
    await send(variant(mug, 350, (120, 90, 100)))
    await send(variant(tea, 1000, (200, 150, 80)))
    for sku, bin_code in ((mug, "C-04-1"), (tea, "A-01-2")):
        response = await client.put("/bins", json={"location": north, "sku": sku, "bin": bin_code})
        assert response.status_code == 200, response.text
    await send(
        confirmed(
            order_id,
            [
                ("L1", mug, 1250, {north: 2}, 0),
                ("L2", tea, 899, {north: 1}, 0),
                ("L3", lamp, 4500, {south: 1}, 0),
            ],
        )
    )

    shipments = await shipments_of(client, order_id, 2)
    assert {s["location"]: len(s["lines"]) for s in shipments} == {north: 2, south: 1}
    await events.wait_for(order_id, "fulfillment.shipment.created.v1", at_least=2)
    shipment_id = next(s["shipment_id"] for s in shipments if s["location"] == north)
    work = (await client.get("/work", params={"location": north})).json()
    assert [s["shipment_id"] for s in work["by_status"]["created"]] == [shipment_id]

    made = await client.post("/pick-lists", json={"location": north})
    assert made.status_code == 201, made.text
    pick_list = (await client.get(f"/pick-lists/{made.json()['pick_list_id']}")).json()
    assert [(line["bin"], line["sku"]) for line in pick_list["lines"]] == [
        ("A-01-2", tea),
        ("C-04-1", mug),
    ]
    done = await client.post(
        f"/pick-lists/{pick_list['pick_list_id']}/confirm", json={"found": {mug: 2, tea: 1}}
    )
    assert done.json()["picked"] == [shipment_id]

    async def pack_with_catalog_data() -> httpx.Response | None:
        response = await client.post(f"/shipments/{shipment_id}/pack")
        return response if response.status_code == 200 else None  # until the catalog arrived

    packed = (await eventually(pack_with_catalog_data)).json()
    assert packed["packages"] == [
        {
            "weight_grams": 150 + 2 * 350 + 1000,
            "dimensions": {"length_mm": 200, "width_mm": 150, "height_mm": 2 * 100 + 80},
        }
    ]

    key = {"Idempotency-Key": unique("ship")}
    first = await client.post(f"/shipments/{shipment_id}/ship", headers=key)
    again = await client.post(f"/shipments/{shipment_id}/ship", headers=key)
    assert first.status_code == again.status_code == 200, first.text
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    shipment = first.json()
    tracking_number = shipment["label"]["tracking_number"]
    assert is_valid_s10(tracking_number)
    assert shipment["status"] == "shipped"

    label = await client.get(f"/shipments/{shipment_id}/label.pdf")
    assert label.headers["content-type"] == "application/pdf"
    pdf = PdfReader(io.BytesIO(label.content))
    text = pdf.pages[0].extract_text()
    assert tracking_number in text and "Ada Lovelace" in text
    assert (float(pdf.pages[0].mediabox.width), float(pdf.pages[0].mediabox.height)) == (288, 432)

    in_transit = {"tracking_number": tracking_number, "status": "in_transit"}
    assert (await client.post("/tracking", json=in_transit)).json()["status"] == "in_transit"
    delivered = await client.post(
        "/tracking", json={"tracking_number": tracking_number, "status": "delivered"}
    )
    assert delivered.json()["status"] == "delivered"

    seen = await events.wait_for(
        order_id, "fulfillment.shipment.shipped.v1", "fulfillment.shipment.delivered.v1"
    )
    [shipped] = [e for t, e in seen if t == "fulfillment.shipment.shipped.v1"]  # shipped once
    assert shipped.shipment_id == shipment_id
    assert shipped.tracking_number == tracking_number
    assert shipped.carrier == shipment["label"]["carrier"]
    assert shipped.label_ref == f"/shipments/{shipment_id}/label.pdf"
    assert shipped.currency == "GBP"
    assert {(line.sku, line.quantity, line.unit_price) for line in shipped.lines} == {
        (mug, 2, Decimal("12.5")),
        (tea, 1, Decimal("8.99")),
    }
    [done_event] = [e for t, e in seen if t == "fulfillment.shipment.delivered.v1"]
    assert done_event.shipment_id == shipment_id


async def test_backordered_units_become_a_later_shipment(
    service: httpx.AsyncClient, send, events: Events
) -> None:
    order_id, location, sku = unique("ORD"), unique("W"), unique("DESK")
    await send(confirmed(order_id, [("L1", sku, 19900, {location: 2}, 1)]))
    [first] = await shipments_of(service, order_id, 1)
    assert first["lines"] == [{"line_id": "L1", "sku": sku, "quantity": 2}]

    await send(
        OrderBackorderAllocated(
            order_id=order_id, line_id="L1", sku=sku, location=location, quantity=1
        )
    )

    _, second = await shipments_of(service, order_id, 2)
    assert second["shipment_id"] == f"{order_id}-S2"
    assert second["lines"] == [{"line_id": "L1", "sku": sku, "quantity": 1}]
    seen = await events.wait_for(order_id, "fulfillment.shipment.created.v1", at_least=2)
    created = [e for t, e in seen if t == "fulfillment.shipment.created.v1"]
    assert [(e.shipment_id, e.lines[0].quantity) for e in created] == [
        (f"{order_id}-S1", 2),
        (f"{order_id}-S2", 1),
    ]


async def test_return_restocks_one_line_and_writes_off_another(
    service: httpx.AsyncClient, send, events: Events
) -> None:
    order_id, location = unique("ORD"), unique("W")
    cup, plate = unique("CUP"), unique("PLATE")
    order = confirmed(
        order_id, [("L1", cup, 500, {location: 2}, 0), ("L2", plate, 700, {location: 1}, 0)]
    )
    await ship_order(service, send, order, location)

    rma = await service.post(
        "/returns",
        json={
            "order_id": order_id,
            "lines": [{"line_id": "L1", "quantity": 1}, {"line_id": "L2", "quantity": 1}],
            "reason": "one chipped",
        },
    )
    assert rma.status_code == 201, rma.text
    rma_id = rma.json()["rma_id"]
    received = await service.post(f"/returns/{rma_id}/receive")
    assert received.json()["location"] == location
    inspected = await service.post(
        f"/returns/{rma_id}/inspect",
        json={
            "lines": [
                {"line_id": "L1", "quantity": 1, "condition": "restock"},
                {"line_id": "L2", "quantity": 1, "condition": "write_off"},
            ]
        },
    )
    assert inspected.status_code == 200, inspected.text
    assert inspected.json()["status"] == "inspected"

    seen = await events.wait_for(order_id, "fulfillment.return.received.v1")
    [returned] = [e for t, e in seen if t == "fulfillment.return.received.v1"]
    assert returned.rma_id == rma_id
    assert returned.currency == "GBP"
    lines = {(r.sku, r.location, r.quantity, r.condition, r.unit_price) for r in returned.lines}
    assert lines == {
        (cup, location, 1, "restock", Decimal("5")),
        (plate, location, 1, "write_off", Decimal("7")),
    }


async def test_illegal_steps_are_refused_with_a_clear_message(
    service: httpx.AsyncClient, send
) -> None:
    order_id, location, sku = unique("ORD"), unique("W"), unique("VASE")
    await send(confirmed(order_id, [("L1", sku, 3000, {location: 2}, 0)]))
    [shipment] = await shipments_of(service, order_id, 1)
    shipment_id = shipment["shipment_id"]
    await pick_all(service, location)

    early = await service.post(f"/shipments/{shipment_id}/ship")
    assert early.status_code == 409
    assert early.json()["detail"] == (
        f"Cannot ship shipment {shipment_id}: it is picked but not packed yet. Next step: pack it."
    )

    assert (await service.post(f"/shipments/{shipment_id}/pack", json=BOX)).status_code == 200
    shipped = (await service.post(f"/shipments/{shipment_id}/ship")).json()
    tracking = shipped["label"]["tracking_number"]

    too_many = await service.post(
        "/returns", json={"order_id": order_id, "lines": [{"line_id": "L1", "quantity": 3}]}
    )
    assert too_many.status_code == 422
    assert too_many.json()["detail"] == (
        f"Cannot return 3 × {sku} (line L1): 2 shipped, 0 already returned or on an open "
        "return, so at most 2 can be returned."
    )

    late = await service.post(f"/shipments/{shipment_id}/cancel", json={"reason": "too late"})
    assert late.status_code == 409
    assert late.json()["detail"] == (
        f"Cannot cancel shipment {shipment_id}: it has already been shipped "
        f"({shipped['label']['carrier']} {tracking}). Authorize a return instead."
    )
    unknown = await service.post("/shipments/NOPE-S1/pack", json=BOX)
    assert unknown.status_code == 404


async def test_short_pick_holds_the_shipment_and_reports_the_bin(
    service: httpx.AsyncClient, send, events: Events
) -> None:
    order_id, location, sku = unique("ORD"), unique("W"), unique("BOWL")
    await service.put("/bins", json={"location": location, "sku": "*", "bin": "B-01-1"})
    await send(confirmed(order_id, [("L1", sku, 1500, {location: 3}, 0)]))
    [shipment] = await shipments_of(service, order_id, 1)
    made = (await service.post("/pick-lists", json={"location": location})).json()

    short = await service.post(
        f"/pick-lists/{made['pick_list_id']}/confirm", json={"found": {sku: 1}}
    )

    assert short.json()["on_hold"] == [shipment["shipment_id"]]
    shortened = await service.post(f"/shipments/{shipment['shipment_id']}/ship-picked")
    assert shortened.json()["lines"] == [{"line_id": "L1", "sku": sku, "quantity": 1}]
    seen = await events.wait_for(
        order_id, "fulfillment.stock.discrepancy.v1", "fulfillment.shipment.shortened.v1"
    )
    [discrepancy] = [e for t, e in seen if t == "fulfillment.stock.discrepancy.v1"]
    assert (discrepancy.sku, discrepancy.bin, discrepancy.expected, discrepancy.found) == (
        sku,
        "B-01-1",
        3,
        1,
    )


async def test_cancelled_order_cancels_its_open_shipments(
    service: httpx.AsyncClient, send, events: Events
) -> None:
    order_id, location = unique("ORD"), unique("W")
    await send(confirmed(order_id, [("L1", unique("SOFA"), 99900, {location: 1}, 0)]))
    [shipment] = await shipments_of(service, order_id, 1)

    await send(OrderCancelled(order_id=order_id, reason="customer_cancelled"))

    seen = await events.wait_for(order_id, "fulfillment.shipment.cancelled.v1")
    assert [e.shipment_id for t, e in seen if t == "fulfillment.shipment.cancelled.v1"] == [
        shipment["shipment_id"]
    ]
    current = (await service.get(f"/shipments/{shipment['shipment_id']}")).json()
    assert current["status"] == "cancelled"


async def test_cancelled_lines_are_dropped_from_waiting_shipments_and_reported_with_the_request(
    service: httpx.AsyncClient, send, events: Events
) -> None:
    order_id, east, west = unique("ORD"), unique("E"), unique("W")
    mug, tea = unique("MUG"), unique("TEA")
    await send(
        confirmed(order_id, [("L1", mug, 900, {east: 3}, 0), ("L2", tea, 500, {west: 1}, 0)])
    )
    east_shipment, west_shipment = await shipments_of(service, order_id, 2)

    await send(
        OrderLinesCancelRequested(
            order_id=order_id,
            request_id="REQ-1",
            lines=[
                {"line_id": "L1", "sku": mug, "quantity": 1},
                {"line_id": "L2", "sku": tea, "quantity": 1},
            ],
            reason="changed my mind",
        )
    )

    seen = dict(
        await events.wait_for(
            order_id, "fulfillment.shipment.shortened.v1", "fulfillment.shipment.cancelled.v1"
        )
    )
    shortened = seen["fulfillment.shipment.shortened.v1"]
    assert (shortened.shipment_id, shortened.cancel_request_id) == (
        east_shipment["shipment_id"],
        "REQ-1",
    )
    assert [(line.line_id, line.quantity) for line in shortened.removed] == [("L1", 1)]
    cancelled = seen["fulfillment.shipment.cancelled.v1"]
    assert (cancelled.shipment_id, cancelled.cancel_request_id) == (
        west_shipment["shipment_id"],
        "REQ-1",
    )
    east_now = (await service.get(f"/shipments/{east_shipment['shipment_id']}")).json()
    assert [(line["line_id"], line["quantity"]) for line in east_now["lines"]] == [("L1", 2)]


async def test_autopilot_ships_and_delivers_without_a_warehouse_person(
    run_service, send, events: Events, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {
        "AUTO_SHIP": "true",
        "AUTO_SHIP_DELAY_S": "0",
        "AUTO_DELIVER_DELAY_S": "1",
        "AUTOPILOT_INTERVAL_S": "0.2",
    }.items():
        monkeypatch.setenv(f"STOCKFLOW_FULFILLMENT_{name}", value)
    order_id, location = unique("ORD"), unique("W")
    async with run_service("fulfillment"):
        await send(confirmed(order_id, [("L1", unique("KETTLE"), 2999, {location: 1}, 0)]))
        seen = await events.wait_for(
            order_id, "fulfillment.shipment.shipped.v1", "fulfillment.shipment.delivered.v1"
        )
    types = [t for t, _ in seen]
    assert types.index("fulfillment.shipment.shipped.v1") < types.index(
        "fulfillment.shipment.delivered.v1"
    )
    assert datetime.now(UTC) - timedelta(minutes=1) < seen[-1][1].delivered_at


async def test_the_autopilot_can_short_pick_and_cancel_as_a_warehouse_does(
    run_service, send, events: Events, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The demo's knobs: a pick list comes up one unit short (the shipment leaves with what
    was found); then the warehouse cancels a picked shipment instead of packing it."""
    for name, value in {
        "AUTO_SHIP": "true",
        "AUTO_SHIP_DELAY_S": "0",
        "AUTO_DELIVER_DELAY_S": "1",
        "AUTOPILOT_INTERVAL_S": "0.2",
    }.items():
        monkeypatch.setenv(f"STOCKFLOW_FULFILLMENT_{name}", value)
    short, cancelled = unique("ORD"), unique("ORD")
    monkeypatch.setenv("STOCKFLOW_FULFILLMENT_AUTO_SHORT_PICK_EVERY", "1")
    async with run_service("fulfillment"):
        await send(confirmed(short, [("L1", unique("LAMP"), 2500, {unique("W"): 3}, 0)]))
        shortened = await events.wait_for(
            short, "fulfillment.shipment.shortened.v1", "fulfillment.shipment.shipped.v1"
        )
    monkeypatch.setenv("STOCKFLOW_FULFILLMENT_AUTO_SHORT_PICK_EVERY", "0")
    monkeypatch.setenv("STOCKFLOW_FULFILLMENT_AUTO_CANCEL_EVERY", "1")
    async with run_service("fulfillment"):
        await send(confirmed(cancelled, [("L1", unique("BULB"), 400, {unique("W"): 2}, 0)]))
        seen = await events.wait_for(cancelled, "fulfillment.shipment.cancelled.v1")
    [shipped] = [e for t, e in shortened if t == "fulfillment.shipment.shipped.v1"]
    assert [(line.line_id, line.quantity) for line in shipped.lines] == [("L1", 2)]
    [removed] = [e for t, e in shortened if t == "fulfillment.shipment.shortened.v1"]
    assert [(line.line_id, line.quantity) for line in removed.removed] == [("L1", 1)]
    [cancel] = [e for t, e in seen if t == "fulfillment.shipment.cancelled.v1"]
    assert cancel.reason.startswith("warehouse:")
    assert not [t for t, _ in seen if t == "fulfillment.shipment.shipped.v1"]
