"""The use cases against an in-memory saga store: what each message does to orders and outbox.

No Kafka, no PostgreSQL: `FakeSagaStore` keeps the rows in dicts, and the unit of work only
stages its records. The same paths against the real database are in test_service.py.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord

from stockflow.contracts import CloudEvent, Event, decode, encode, parse
from stockflow.contracts import events as wire
from stockflow.order import usecases
from stockflow.order.domain import DEFAULT_POLICY, OrderState, TimelineEntry
from stockflow.order.store import (
    ArmedTimer,
    ConcurrentUpdate,
    DueTimer,
    SagaWrite,
    StoredOrder,
)
from stockflow.runtime.consumer import Inbound
from stockflow.runtime.outbox import UnitOfWork

ADDRESS = {"name": "A", "line1": "1 Main St", "city": "Berlin", "postal_code": "1", "country": "DE"}


@dataclass
class FakeSagaStore:
    """The orders schema in memory, with the SQL store's rules: versions guard updates, an
    order is created once, a claimed timer is gone."""

    orders: dict[str, StoredOrder] = field(default_factory=dict)
    timeline: list[tuple[str, TimelineEntry]] = field(default_factory=list)
    timers: dict[tuple[str, str], ArmedTimer] = field(default_factory=dict)
    shipments: dict[tuple[str, str], wire.ShipmentShipped] = field(default_factory=dict)
    deliveries: dict[tuple[str, str], datetime] = field(default_factory=dict)

    async def lock_orders(self, order_ids: Sequence[str]) -> dict[str, StoredOrder]:
        return {i: self.orders[i] for i in order_ids if i in self.orders}

    async def save_sagas(self, writes: Sequence[SagaWrite]) -> None:
        for write in writes:
            stored = self.orders.get(write.saga.order_id)
            expected = None if stored is None else stored.saga.version
            if expected != write.expected_version:
                raise ConcurrentUpdate("an order changed under us")
            self.orders[write.saga.order_id] = StoredOrder(write.saga, write.facts)

    async def append_timeline(self, entries: Sequence[tuple[str, TimelineEntry]]) -> None:
        self.timeline.extend(entries)

    async def set_timers(
        self, armed: Sequence[ArmedTimer], cancelled: Sequence[tuple[str, str]]
    ) -> None:
        for key in cancelled:
            self.timers.pop(key, None)
        for timer in armed:
            self.timers[(timer.order_id, timer.kind)] = timer

    async def claim_due_timers(self, now: datetime, limit: int) -> list[DueTimer]:
        due = sorted((t for t in self.timers.values() if t.fire_at <= now), key=lambda t: t.fire_at)
        for timer in due[:limit]:
            del self.timers[(timer.order_id, timer.kind)]
        return [DueTimer(t.order_id, t.kind, t.fire_at, t.attempt) for t in due[:limit]]

    async def record_shipments(
        self,
        shipped: Sequence[wire.ShipmentShipped],
        delivered: Sequence[wire.ShipmentDelivered],
    ) -> None:
        for event in shipped:
            self.shipments.setdefault((event.order_id, event.shipment_id), event)
        for event in delivered:
            self.deliveries.setdefault((event.order_id, event.shipment_id), event.delivered_at)

    def entries(self, order_id: str) -> list[tuple[str, str]]:
        return [(e.cause_type, e.outcome.value) for o, e in self.timeline if o == order_id]


def new_uow() -> UnitOfWork:
    return UnitOfWork(None, source="stockflow/order")  # type: ignore[arg-type]  # only stages


def staged(uow: UnitOfWork) -> list[tuple[str, dict[str, Any]]]:
    """The staged records as (type, data)."""
    clouds = [decode(record.value, record.headers) for record in uow.staged]
    return [(c.type, c.data if isinstance(c.data, dict) else json.loads(c.data)) for c in clouds]


def inbound(event: Event) -> Inbound:
    """A record as the consumer runtime hands it to a batch handler."""
    record = encode(event, source="test")
    cloud = decode(record.value, record.headers)
    size = len(record.value)
    consumer_record = ConsumerRecord(
        record.topic, 0, 0, 0, 0, record.key, record.value, None, 0, size, record.headers
    )
    return Inbound(consumer_record, cloud, parse(cloud))


def submission(order_id: str = "ord-1", **overrides: Any) -> dict[str, Any]:
    return {
        "order_id": order_id,
        "customer_id": "cust-1",
        "currency": "EUR",
        "placed_at": "2025-03-01T12:00:00Z",
        "lines": [
            {"line_id": "L1", "sku": "SKU-A", "quantity": 2, "unit_price": "10.00"},
            {"line_id": "L2", "sku": "SKU-B", "quantity": 1, "unit_price": "4.50"},
        ],
        "shipping_address": ADDRESS,
        "payment": {"status": "authorized", "reference": "pay-1"},
        **overrides,
    }


def submitted(order_id: str = "ord-1", **overrides: Any) -> Inbound:
    return inbound(wire.CheckoutOrderSubmitted.model_validate(submission(order_id, **overrides)))


def reserved_in_full(order_id: str = "ord-1") -> Inbound:
    lines = [("L1", "SKU-A", 2), ("L2", "SKU-B", 1)]
    return inbound(
        wire.StockReserved(
            order_id=order_id,
            complete=True,
            lines=[
                wire.ReservedLine(
                    line_id=line_id,
                    sku=sku,
                    requested=q,
                    reserved=q,
                    backordered=0,
                    allocations=[wire.Allocation(location="WH1", quantity=q)],
                )
                for line_id, sku, q in lines
            ],
        )
    )


def raw_submission(data: Any) -> CloudEvent:
    return CloudEvent("evt-raw", "test", wire.CheckoutOrderSubmitted.event_type, None, None, data)


async def test_a_submission_is_accepted_and_stock_asked_with_its_priority() -> None:
    store, uow = FakeSagaStore(), new_uow()
    await usecases.take_checkout(uow, [submitted(priority=7)], DEFAULT_POLICY, store)
    assert store.orders["ord-1"].saga.state is OrderState.RESERVING
    assert store.orders["ord-1"].facts.customer_id == "cust-1"
    [(accepted, data), (command, reserve)] = staged(uow)
    assert (accepted, data["customer_id"]) == ("order.accepted.v1", "cust-1")
    assert (command, reserve["priority"], reserve["attempt"]) == (
        "stock.reserve.requested.v1",
        7,
        1,
    )
    assert list(store.timers) == [("ord-1", "stock_reply")]


async def test_a_batch_sees_its_own_earlier_messages() -> None:
    store, uow = FakeSagaStore(), new_uow()
    batch = [
        submitted(),
        submitted(),  # a retry upstream, new event id, same order
        inbound(wire.CheckoutOrderCancelRequested(order_id="ord-1", reason="oops")),
    ]
    await usecases.take_checkout(uow, batch, DEFAULT_POLICY, store)
    assert store.entries("ord-1") == [
        ("OrderSubmitted", "applied"),
        ("OrderSubmitted", "ignored"),
        ("CancelRequested", "applied"),
    ]
    assert store.orders["ord-1"].saga.state is OrderState.CANCELLED
    assert [t for t, _ in staged(uow)] == [
        "order.accepted.v1",
        "stock.reserve.requested.v1",
        "stock.release.requested.v1",
        "order.cancelled.v1",
    ]
    assert store.timers == {}


async def test_an_invalid_submission_is_rejected_with_every_violation_of_the_contract() -> None:
    store, uow = FakeSagaStore(), new_uow()
    data = submission(
        currency="XYZ", lines=[{"line_id": "L1", "sku": "S", "quantity": 0, "unit_price": "1"}]
    )
    answered = await usecases.answer_invalid_submission(
        uow, raw_submission(data), data, DEFAULT_POLICY, store
    )
    assert answered
    [(event_type, rejected)] = staged(uow)
    assert (event_type, rejected["reason"], rejected["field"]) == (
        "order.rejected.v1",
        "invalid_order",
        "currency",
    )
    assert [v["field"] for v in rejected["violations"]] == ["currency", "lines[0].quantity"]
    order = store.orders["ord-1"]
    assert (order.saga.state, order.saga.reason) == (OrderState.REJECTED, "invalid_order")
    assert order.facts.customer_id == "cust-1"  # whatever was valid is kept for the record


async def test_the_same_invalid_submission_again_is_a_duplicate() -> None:
    store = FakeSagaStore()
    data = submission(lines=[])
    for _ in range(2):
        await usecases.answer_invalid_submission(
            new_uow(), raw_submission(data), data, DEFAULT_POLICY, store
        )
    assert store.entries("ord-1") == [("OrderSubmitted", "applied"), ("OrderSubmitted", "ignored")]


@pytest.mark.parametrize(
    "data",
    [{}, {"order_id": ""}, {"order_id": "   "}, {"order_id": 42}, {"order_id": "x" * 129}, []],
    ids=["missing", "empty", "blank", "number", "too-long", "not-an-object"],
)
async def test_a_submission_without_a_usable_order_id_is_not_answered(data: Any) -> None:
    store, uow = FakeSagaStore(), new_uow()
    answered = await usecases.answer_invalid_submission(
        uow, raw_submission(data), data, DEFAULT_POLICY, store
    )
    assert not answered
    assert uow.staged == [] and store.orders == {} and store.timeline == []


async def test_inputs_for_an_unknown_order_change_nothing() -> None:
    store, uow = FakeSagaStore(), new_uow()
    await usecases.apply_stock_replies(uow, [reserved_in_full("nobody")], DEFAULT_POLICY, store)
    assert store.orders == {} and store.timeline == [] and uow.staged == []


async def test_a_whole_life_publishes_each_step_built_from_the_facts_and_the_source() -> None:
    store = FakeSagaStore()
    await usecases.take_checkout(new_uow(), [submitted()], DEFAULT_POLICY, store)
    confirm = new_uow()
    await usecases.apply_stock_replies(confirm, [reserved_in_full()], DEFAULT_POLICY, store)
    [(confirmed, data)] = staged(confirm)
    assert (confirmed, data["shipping_address"]) == (
        "order.confirmed.v1",
        {**ADDRESS, "line2": None},
    )

    now = datetime(2025, 3, 2, 9, 0, tzinfo=UTC)
    located = [
        {"line_id": "L1", "sku": "SKU-A", "quantity": 2},
        {"line_id": "L2", "sku": "SKU-B", "quantity": 1},
    ]
    shipment = wire.ShipmentShipped.model_validate(
        {
            "shipment_id": "S1",
            "order_id": "ord-1",
            "location": "WH1",
            "carrier": "DHL",
            "service_level": "standard",
            "tracking_number": "T1",
            "label_ref": "labels/1.pdf",
            "shipped_at": now,
            "lines": located,
        }
    )
    delivery = wire.ShipmentDelivered(shipment_id="S1", order_id="ord-1", delivered_at=now)
    back = wire.ReturnReceived.model_validate(
        {
            "rma_id": "R1",
            "order_id": "ord-1",
            "received_at": "2025-03-02T09:00:00Z",
            "lines": [
                {
                    "line_id": "L1",
                    "sku": "SKU-A",
                    "location": "WH1",
                    "quantity": 2,
                    "condition": "restock",
                },
                {
                    "line_id": "L2",
                    "sku": "SKU-B",
                    "location": "WH1",
                    "quantity": 1,
                    "condition": "write_off",
                },
            ],
        }
    )
    rest = new_uow()
    batch = [inbound(shipment), inbound(delivery), inbound(back)]
    await usecases.apply_fulfillment(rest, batch, DEFAULT_POLICY, store)
    published = dict(staged(rest))
    assert published["order.shipped.v1"]["lines"][0]["location"] == "WH1"
    assert published["order.delivered.v1"]["delivered_at"] == "2025-03-02T09:00:00Z"
    assert [line["condition"] for line in published["order.returned.v1"]["lines"]] == [
        "restock",
        "write_off",
    ]
    assert store.orders["ord-1"].saga.state is OrderState.RETURNED
    assert store.shipments[("ord-1", "S1")].tracking_number == "T1"
    assert store.deliveries[("ord-1", "S1")] == now


async def test_a_silent_stock_gets_the_request_again_when_its_timer_fires() -> None:
    store = FakeSagaStore()
    await usecases.take_checkout(new_uow(), [submitted()], DEFAULT_POLICY, store)
    timer = store.timers[("ord-1", "stock_reply")]
    store.timers[("ord-1", "stock_reply")] = replace(timer, fire_at=timer.fire_at - timedelta(1))
    uow = new_uow()
    assert await usecases.fire_due_timers(uow, 10, DEFAULT_POLICY, store) == 1
    [(command, data)] = staged(uow)
    assert (command, data["attempt"]) == ("stock.reserve.requested.v1", 2)
    assert store.timers[("ord-1", "stock_reply")].attempt == 2
    assert store.entries("ord-1")[-1] == ("StockReplyTimedOut", "applied")
    assert await usecases.fire_due_timers(new_uow(), 10, DEFAULT_POLICY, store) == 0
