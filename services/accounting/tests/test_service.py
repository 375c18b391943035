"""The accounting service against real Kafka and PostgreSQL: events in, books and feed out.

Each test uses its own SKUs and orders, so the figures it checks are its own even though the
`accounting` schema and its consumer groups live on between runs.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from stockflow.accounting import handlers, store
from stockflow.contracts import Event, KafkaRecord, decode, encode, parse
from stockflow.contracts.events import (
    JournalEntryPosted,
    OrderConfirmed,
    ReturnReceived,
    ShipmentShipped,
    StockMovementRecorded,
)
from stockflow.runtime.consumer import Inbound
from stockflow.runtime.db import migrate
from stockflow.runtime.outbox import UnitOfWork
from stockflow.runtime.testing.plugin import ADMIN

pytestmark = pytest.mark.integration

MIGRATIONS = Path(handlers.__file__).parent / "migrations"
READ = {"Authorization": "Bearer test-read"}
ADDRESS = {
    "name": "A. Buyer",
    "line1": "1 Main St",
    "city": "Berlin",
    "postal_code": "10115",
    "country": "DE",
}
JOURNAL = "accounting.journal.v1"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def movement(
    sku: str,
    kind: str,
    quantity: int,
    *,
    order_id: str | None = None,
    unit_cost: str | None = None,
    at: datetime | None = None,
    movement_id: str | None = None,
    reference: dict | None = None,
) -> Event:
    return StockMovementRecorded(
        movement_id=movement_id or unique("mv"),
        sku=sku,
        location="WH1",
        kind=kind,
        quantity=quantity,
        order_id=order_id,
        reference=reference,
        unit_cost=None if unit_cost is None else Decimal(unit_cost),
        currency=None if unit_cost is None else "EUR",
        cause_event_id=str(uuid.uuid4()),
        occurred_at=at or datetime.now(UTC),
    )


def confirmed(order_id: str, lines: list[tuple[str, str, int, str]]) -> Event:
    return OrderConfirmed(
        order_id=order_id,
        currency="EUR",
        shipping_address=ADDRESS,
        confirmed_at=datetime.now(UTC),
        lines=[
            {
                "line_id": line_id,
                "sku": sku,
                "quantity": q,
                "reserved": q,
                "backordered": 0,
                "unit_price": price,
            }
            for line_id, sku, q, price in lines
        ],
    )


def shipped(order_id: str, lines: list[tuple[str, str, int]]) -> Event:
    return ShipmentShipped(
        shipment_id=unique("shp"),
        order_id=order_id,
        location="WH1",
        carrier="DHL",
        service_level="standard",
        tracking_number="JD1",
        label_ref="labels/x.pdf",
        shipped_at=datetime.now(UTC),
        lines=[{"line_id": line_id, "sku": sku, "quantity": q} for line_id, sku, q in lines],
    )


def returned(order_id: str, lines: list[tuple[str, str, int, str]]) -> Event:
    return ReturnReceived(
        rma_id=unique("rma"),
        order_id=order_id,
        received_at=datetime.now(UTC),
        lines=[
            {
                "line_id": line_id,
                "sku": sku,
                "location": "WH1",
                "quantity": q,
                "condition": condition,
            }
            for line_id, sku, q, condition in lines
        ],
    )


class Sender:
    """Produces events as CloudEvents and remembers every record, for the replay proof."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = producer
        self.sent: list[KafkaRecord] = []

    async def __call__(self, event: Event, *, event_id: str | None = None) -> KafkaRecord:
        record = encode(event, source="test/accounting", event_id=event_id)
        await self.producer.send_and_wait(
            record.topic, record.value, key=record.key, headers=record.headers
        )
        self.sent.append(record)
        return record

    async def again(self, record: KafkaRecord) -> None:
        await self.producer.send_and_wait(
            record.topic, record.value, key=record.key, headers=record.headers
        )


async def eventually(check: Callable[[], Any], timeout_s: float = 30.0) -> Any:
    """Poll an async check until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        result = await check()
        if result or asyncio.get_running_loop().time() > deadline:
            assert result, "condition not reached in time"
            return result
        await asyncio.sleep(0.2)


async def journal(client: httpx.AsyncClient, **filters: str) -> list[dict]:
    response = await client.get("/journal", params={**filters, "limit": 1000}, headers=READ)
    assert response.status_code == 200, response.text
    return response.json()["entries"]


async def entries_reach(client: httpx.AsyncClient, count: int, **filters: str) -> list[dict]:
    async def check() -> list[dict] | None:
        entries = await journal(client, **filters)
        return entries if len(entries) >= count else None

    return await eventually(check)


def by_rule(entries: list[dict]) -> dict[str, list[dict]]:
    """Entries by the account pair they move, e.g. 'cost_of_goods_sold/inventory'."""
    grouped: dict[str, list[dict]] = {}
    for entry in entries:
        debit = sorted({ln["account"] for ln in entry["lines"] if Decimal(ln["debit"])})
        credit = sorted({ln["account"] for ln in entry["lines"] if Decimal(ln["credit"])})
        grouped.setdefault(f"{'+'.join(debit)}/{'+'.join(credit)}", []).append(entry)
    return grouped


def amount(entry: dict) -> Decimal:
    return sum((Decimal(line["debit"]) for line in entry["lines"]), Decimal(0))


async def journal_end_offsets(
    bootstrap: str, producer: AIOKafkaProducer
) -> dict[TopicPartition, int]:
    partitions = [
        TopicPartition(JOURNAL, p) for p in sorted(await producer.partitions_for(JOURNAL))
    ]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        return await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()


async def read_feed(
    bootstrap: str, start: dict[TopicPartition, int], entry_ids: set[str], timeout_s: float = 30
) -> dict[str, JournalEntryPosted]:
    """The `accounting.entry.posted.v1` records for `entry_ids`, read from `start` on."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    found: dict[str, JournalEntryPosted] = {}
    try:
        consumer.assign(list(start))
        for partition, offset in start.items():
            consumer.seek(partition, offset)
        deadline = asyncio.get_running_loop().time() + timeout_s
        while entry_ids - set(found) and asyncio.get_running_loop().time() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    event = parse(decode(record.value, record.headers))
                    assert isinstance(event, JournalEntryPosted)
                    if event.entry_id in entry_ids:
                        assert record.key == event.entry_id.encode()
                        found[event.entry_id] = event
    finally:
        await consumer.stop()
    return found


async def test_books_follow_receipts_shipments_revenue_and_returns(
    run_service, producer, infra, scratch_schema
) -> None:
    sku, order = unique("ACC-FIFO"), unique("ord")
    send = Sender(producer)
    feed_start = await journal_end_offsets(infra.kafka_bootstrap, producer)
    async with run_service("accounting") as (app, client):
        # Fulfilment and the return arrive before the order's prices and the stock movements:
        # revenue waits for prices, the written-off return for the shipment's cost.
        await send(shipped(order, [("l1", sku, 8)]))
        await send(returned(order, [("l1", sku, 2, "restock"), ("l1", sku, 1, "write_off")]))
        await send(movement(sku, "receipt", 4, unit_cost="2.00"))
        await send(movement(sku, "receipt", 6, unit_cost="4.00"))
        await send(movement(sku, "shipment", -8, order_id=order))
        await send(movement(sku, "return_restock", 2, order_id=order))
        await send(movement(sku, "write_off", -1))
        await send(movement(sku, "transfer_out", -1))  # valuation is per SKU: posts nothing
        # The cost legs: receipts, shipment, restock, warehouse and return write-offs.
        await entries_reach(client, 6, sku=sku)

        async def parked() -> list[str]:
            response = await client.get("/pending", params={"order_id": order}, headers=READ)
            rules = sorted(p["rule"] for p in response.json()["pending"])
            return rules if rules == ["refund", "revenue"] else []

        await eventually(parked)
        await send(confirmed(order, [("l1", sku, 8, "10.00")]))
        entries = await entries_reach(client, 5, order_id=order)

        rules = by_rule(entries)
        # FIFO: 8 shipped = 4 x 2.00 + 4 x 4.00 (the second layer partly consumed).
        assert [amount(e) for e in rules["cost_of_goods_sold/inventory"]] == [Decimal("24.00")]
        assert [amount(e) for e in rules["clearing/revenue"]] == [Decimal("80.00")]
        assert [amount(e) for e in rules["sales_returns/clearing"]] == [Decimal("30.00")]
        # Returns at their original cost, prorated from what is left of the shipment.
        assert [amount(e) for e in rules["inventory/cost_of_goods_sold"]] == [Decimal("6.00")]
        assert [amount(e) for e in rules["inventory_shrinkage/cost_of_goods_sold"]] == [
            Decimal("3.00")
        ]
        sku_entries = await journal(client, sku=sku)
        write_off = by_rule(sku_entries)["inventory_shrinkage/inventory"]
        assert [amount(e) for e in write_off] == [Decimal("4.00")]  # oldest layer left: 4.00
        assert all(e["cause"]["type"] and e["cause"]["id"] for e in sku_entries)
        assert not (await client.get("/pending", params={"order_id": order}, headers=READ)).json()[
            "pending"
        ]

        valuation = (
            await client.get("/reports/valuation", params={"sku": sku}, headers=READ)
        ).json()["rows"]
        assert valuation == [
            {
                "sku": sku,
                "currency": "EUR",
                "method": "fifo",
                "quantity": 3,
                "value": "10.00",
                "unit_cost": "3.333333",
                "ledger_value": "10.00",
                "reconciled": True,
                "version": valuation[0]["version"],
            }
        ]
        margin = (
            await client.get(
                "/reports/profitability", params={"by": "order", "order_id": order}, headers=READ
            )
        ).json()["rows"]
        assert margin == [
            {
                "order": order,
                "currency": "EUR",
                "revenue": "80.00",
                "sales_returns": "30.00",
                "net_revenue": "50.00",
                "cost_of_goods_sold": "15.00",
                "gross_margin": "35.00",
                "gross_margin_pct": "70.00",
                "shrinkage": "3.00",
                "shipping": "0.00",
                "profit": "32.00",
            }
        ]
        by_sku = (
            await client.get(
                "/reports/profitability", params={"by": "sku", "sku": sku}, headers=READ
            )
        ).json()["rows"]
        assert by_sku[0]["shrinkage"] == "7.00"  # the return's 3.00 and the warehouse's 4.00

        csv_response = await client.get("/journal.csv", params={"sku": sku}, headers=READ)
        assert csv_response.status_code == 200
        assert csv_response.headers["content-type"].startswith("text/csv")
        rows = csv_response.text.splitlines()
        assert rows[0] == (
            "entry_id,posted_at,period,cause_type,cause_id,currency,account,"
            "debit,credit,sku,order_id,note"
        )
        assert len(rows) == 1 + sum(len(e["lines"]) for e in sku_entries)

        live = {e["entry_id"]: e for e in [*sku_entries, *entries]}
        feed = await read_feed(infra.kafka_bootstrap, feed_start, set(live))
        assert {k: v.model_dump(mode="json", exclude_none=True) for k, v in feed.items()} == {
            k: {key: value for key, value in e.items() if key != "seq"} for k, e in live.items()
        }
        live_valuation = await app.state.pool.fetchval(
            "SELECT state FROM valuations WHERE sku = $1", sku
        )

    # Replay every input event from the start into a fresh, empty copy of the books, with the
    # topics interleaved differently (movements last): the books come out the same.
    schema, pool = scratch_schema
    await migrate(infra.admin_database_url, schema, MIGRATIONS)
    consumers = {
        "stock.movements.v1": handlers.on_movements,
        "orders.events.v1": handlers.on_orders,
        "fulfillment.events.v1": handlers.on_fulfillment,
    }
    for topic in ("orders.events.v1", "fulfillment.events.v1", "stock.movements.v1"):
        for record in [r for r in send.sent if r.topic == topic]:
            cloud = decode(record.value, record.headers)
            async with pool.acquire() as conn, conn.transaction():
                uow = UnitOfWork(conn, source="test/replay")
                await consumers[topic](uow, [Inbound(None, cloud, parse(cloud))])
                await uow.flush()
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT entry_id::text FROM journal_entries")
        replayed_valuation = await conn.fetchval("SELECT state FROM valuations WHERE sku = $1", sku)
        published = await conn.fetchval("SELECT count(*) FROM outbox WHERE topic = $1", JOURNAL)
    assert {row["entry_id"] for row in rows} == set(live)
    assert published == len(live)
    assert replayed_valuation == live_valuation
    async with pool.acquire() as conn:
        replayed = {
            str(entry.entry_id): entry.to_dict()
            for _, entry in await store.journal_page(conn, {}, after=0, limit=1000)
        }
    assert replayed == {
        k: {key: v for key, v in e.items() if key != "seq"} for k, e in live.items()
    }


async def test_moving_average_and_replays_post_nothing_twice(run_service, producer) -> None:
    sku = unique("ACC-AVG")
    send = Sender(producer)
    async with run_service("accounting") as (_app, client):
        chosen = await client.put(
            f"/skus/{sku}/cost-method", json={"method": "moving_average"}, headers=ADMIN
        )
        assert chosen.status_code == 200, chosen.text
        refused = await client.put(
            f"/skus/{sku}/cost-method", json={"method": "lifo"}, headers=ADMIN
        )
        assert refused.status_code == 422
        not_admin = await client.put(
            f"/skus/{sku}/cost-method", json={"method": "fifo"}, headers=READ
        )
        assert not_admin.status_code == 403

        first = await send(movement(sku, "receipt", 10, unit_cost="1.00"))
        again = movement(sku, "receipt", 10, unit_cost="2.00")
        await send(again)
        await send.again(first)  # the same event (same ce_id) redelivered
        await send(again)  # the same stock movement under a new event id
        await send(movement(sku, "shipment", -5, order_id=unique("ord")))
        await send(movement(sku, "adjustment", -1))
        await send(movement(sku, "adjustment", 2))  # found: at the current average
        entries = await entries_reach(client, 5, sku=sku)
        await asyncio.sleep(1.0)  # give a double posting the chance to show up
        entries = await journal(client, sku=sku)

        rules = by_rule(entries)
        assert [amount(e) for e in rules["inventory/goods_received_not_invoiced"]] == [
            Decimal("10.00"),
            Decimal("20.00"),
        ]
        assert [amount(e) for e in rules["cost_of_goods_sold/inventory"]] == [Decimal("7.50")]
        assert [amount(e) for e in rules["inventory_shrinkage/inventory"]] == [Decimal("1.50")]
        assert [amount(e) for e in rules["inventory/inventory_shrinkage"]] == [Decimal("3.00")]
        valuation = (
            await client.get("/reports/valuation", params={"sku": sku}, headers=READ)
        ).json()["rows"][0]
        assert (valuation["method"], valuation["quantity"], valuation["value"]) == (
            "moving_average",
            16,
            "24.00",
        )
        assert valuation["reconciled"]

        back = await client.put(f"/skus/{sku}/cost-method", json={"method": "fifo"}, headers=ADMIN)
        assert back.json() == {
            "sku": sku,
            "method": "fifo",
            "quantity": 16,
            "value": "24.00",
            "currency": "EUR",
        }


async def test_closed_period_takes_no_postings_and_corrections_land_in_the_next_open_one(
    run_service, producer
) -> None:
    sku = unique("ACC-LATE")
    send = Sender(producer)
    async with run_service("accounting") as (_app, client):
        key = {"Idempotency-Key": unique("close"), **ADMIN}
        closed = await client.post("/periods/1999-03/close", headers=key)
        assert closed.status_code in (200, 201), closed.text
        replay = await client.post("/periods/1999-03/close", headers=key)
        assert replay.headers.get("idempotent-replayed") == "true"
        assert replay.json() == closed.json()
        assert (await client.post("/periods/1999-03/close", headers=READ)).status_code == 403
        future = await client.post("/periods/2999-01/close", headers=ADMIN)
        assert future.status_code == 422

        late = datetime(1999, 3, 15, 12, 0, tzinfo=UTC)
        await send(movement(sku, "receipt", 3, unit_cost="5.00", at=late))
        [entry] = await entries_reach(client, 1, sku=sku)
        assert entry["period"] == "1999-04"
        assert entry["posted_at"] == "1999-04-01T00:00:00Z"
        assert "1999-03-15T12:00:00Z" in entry["note"]
        assert "closed period 1999-03" in entry["note"]
        assert await journal(client, sku=sku, period="1999-03") == []
        periods = (await client.get("/periods", headers=READ)).json()["closed"]
        assert "1999-03" in {p["period"] for p in periods}


async def test_what_the_books_refuse_goes_to_the_dead_letter_topic(run_service, producer) -> None:
    sku = unique("ACC-NONE")
    send = Sender(producer)
    async with run_service("accounting") as (app, client):
        refused = await send(movement(sku, "shipment", -1, order_id=unique("ord")))
        fine = await send(movement(sku, "receipt", 1, unit_cost="1.00"))

        async def dead() -> str | None:
            return await app.state.pool.fetchval(
                "SELECT reason FROM dead_letters WHERE event_id = $1", header(refused, "ce_id")
            )

        assert "no receipt valued yet" in await eventually(dead)
        assert len(await entries_reach(client, 1, sku=sku)) == 1
        assert header(fine, "ce_id")


def header(record: KafkaRecord, name: str) -> str:
    return dict(record.headers)[name].decode()


async def test_every_entry_balances_and_inventory_equals_the_open_layers(run_service) -> None:
    async with run_service("accounting") as (app, client):
        async with app.state.pool.acquire() as conn:
            unbalanced = await conn.fetch(
                "SELECT entry_id FROM journal_lines GROUP BY entry_id "
                "HAVING sum(debit) <> sum(credit) OR count(*) < 2"
            )
            mismatched = await conn.fetch(
                "SELECT v.sku, v.value, coalesce(sum(l.debit - l.credit), 0) AS ledger "
                "FROM valuations v LEFT JOIN journal_lines l "
                "ON l.sku = v.sku AND l.account = 'inventory' "
                "GROUP BY v.sku, v.value HAVING v.value <> coalesce(sum(l.debit - l.credit), 0)"
            )
            layers = await conn.fetch(
                "SELECT sku, value, (SELECT coalesce(sum((layer->>'value')::numeric), 0) "
                "FROM jsonb_array_elements(state->'layers') layer) AS layers FROM valuations"
            )
        assert unbalanced == []
        assert mismatched == []
        assert all(row["value"] == row["layers"] for row in layers)
        balance = (await client.get("/reports/trial-balance", headers=READ)).json()
        assert all(t["balanced"] for t in balance["totals"].values())
