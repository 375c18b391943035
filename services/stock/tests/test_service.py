"""The stock service against real Kafka and PostgreSQL: reservations, ledger, concurrency."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import asyncpg
import pytest

from stockflow.contracts import decode, encode, parse
from stockflow.contracts.events.catalog import CatalogVariantUpserted
from stockflow.contracts.events.stock import (
    CommitReservation,
    ReleaseReservation,
    ReserveStock,
)
from stockflow.contracts.events.warehouse import WarehouseGoodsReceived
from stockflow.runtime import metrics
from stockflow.runtime.testing.plugin import ADMIN
from stockflow.stock.domain import Level, Movement, MovementKind, replay

pytestmark = pytest.mark.integration

RUN = uuid.uuid4().hex[:8]  # order ids are unique per run: replies are kept per order


def sku_name(tag: str) -> str:
    return f"T{uuid.uuid4().hex[:8].upper()}-{tag}"


async def send(producer, event, event_id: str | None = None) -> None:
    record = encode(event, source="test", event_id=event_id)
    await producer.send_and_wait(record.topic, record.value, key=record.key, headers=record.headers)


async def catalog(producer, sku: str, *, backorderable=False, status="active", components=()):
    await send(
        producer,
        CatalogVariantUpserted(
            sku=sku,
            product_id=sku.lower(),
            handle=sku.lower(),
            title=sku,
            status=status,
            tracked=not components,
            backorderable=backorderable,
            version=1,
            updated_at=datetime.now(UTC),
            bundle_components=[{"sku": c, "quantity": q} for c, q in components],
        ),
    )


async def receipt(producer, sku: str, location: str, quantity: int) -> None:
    await send(
        producer,
        WarehouseGoodsReceived(
            receipt_id=f"r-{uuid.uuid4().hex[:8]}",
            sku=sku,
            location=location,
            quantity=quantity,
            unit_cost="2.50",
            currency="USD",
            received_at=datetime.now(UTC),
        ),
    )


def reserve(order_id: str, lines: list[tuple[str, int]], policy=None) -> ReserveStock:
    return ReserveStock(
        order_id=order_id,
        backorder_policy=policy,
        lines=[
            {"line_id": f"L{i}", "sku": sku, "quantity": q} for i, (sku, q) in enumerate(lines, 1)
        ],
    )


class Replies:
    """Collects stock.events.v1 from the end of the topic, by order id."""

    def __init__(self, infra) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        self._tp = TopicPartition
        self.consumer = AIOKafkaConsumer(bootstrap_servers=infra.kafka_bootstrap, group_id=None)
        self.by_order: dict[str, list] = {}

    async def __aenter__(self):
        await self.consumer.start()
        parts = [
            self._tp("stock.events.v1", p)
            for p in self.consumer.partitions_for_topic("stock.events.v1") or range(6)
        ]
        self.consumer.assign(parts)
        for tp, offset in (await self.consumer.end_offsets(parts)).items():
            self.consumer.seek(tp, offset)
        self.task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        while True:
            for records in (await self.consumer.getmany(timeout_ms=200)).values():
                for record in records:
                    event = parse(decode(record.value, record.headers))
                    self.by_order.setdefault(event.order_id, []).append(event)

    async def wait(self, order_id: str, count: int = 1, timeout_s: float = 20):
        for _ in range(int(timeout_s * 10)):
            if len(self.by_order.get(order_id, [])) >= count:
                return self.by_order[order_id]
            await asyncio.sleep(0.1)
        raise AssertionError(f"no reply for {order_id}: {self.by_order.get(order_id)}")

    async def __aexit__(self, *exc):
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.consumer.stop()


async def levels_of(admin: asyncpg.Connection, sku: str) -> dict:
    rows = await admin.fetch("SELECT * FROM stock.levels WHERE sku = $1", sku)
    return {r["location"]: r for r in rows}


async def until(probe, timeout_s: float = 20):
    for _ in range(int(timeout_s * 10)):
        if await probe():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("condition never held")


@pytest.fixture
async def admin(infra):
    conn = await asyncpg.connect(infra.admin_database_url)
    yield conn
    await conn.close()


async def test_reserve_reject_backorder_and_receipts_serve_backorders_first(
    run_service, producer, infra, admin
):
    tee, mug, hoodie = sku_name("TEE"), sku_name("MUG"), sku_name("HOOD")
    async with run_service("stock"), Replies(infra) as replies:
        await catalog(producer, tee)
        await catalog(producer, mug)
        await catalog(producer, hoodie, backorderable=True)
        await receipt(producer, tee, "WH-EAST", 5)
        await receipt(producer, tee, "WH-WEST", 10)
        await receipt(producer, mug, "WH-WEST", 3)
        await until(lambda: _has(admin, mug, "WH-WEST", 3))
        await until(lambda: _known(admin, hoodie))  # its backorder flag comes from the catalog

        await send(producer, reserve(f"o-whole-{RUN}", [(tee, 4), (mug, 2)]))
        (reply,) = await replies.wait(f"o-whole-{RUN}")
        assert reply.event_type == "stock.reserved.v1" and reply.complete
        # One location (WH-WEST) can ship the whole order, so it does.
        assert {a.location for line in reply.lines for a in line.allocations} == {"WH-WEST"}

        await send(producer, reserve(f"o-short-{RUN}", [(tee, 100)], policy="reject"))
        (rejected,) = await replies.wait(f"o-short-{RUN}")
        assert rejected.event_type == "stock.reservation.rejected.v1"
        assert rejected.reason == "insufficient_stock"
        assert (rejected.lines[0].requested, rejected.lines[0].available) == (100, 11)

        await send(producer, reserve(f"o-unknown-{RUN}", [(sku_name("NOPE"), 1)]))
        assert (await replies.wait(f"o-unknown-{RUN}"))[0].reason == "unknown_sku"

        await send(producer, reserve(f"o-back-{RUN}", [(hoodie, 4)]))  # per-SKU flag: backorderable
        (backordered,) = await replies.wait(f"o-back-{RUN}")
        assert (backordered.lines[0].reserved, backordered.lines[0].backordered) == (0, 4)
        await receipt(producer, hoodie, "WH-EAST", 6)
        events = await replies.wait(f"o-back-{RUN}", 2)
        assert events[1].event_type == "stock.backorder.allocated.v1"
        assert (events[1].quantity, events[1].remaining_backordered) == (4, 0)
        await until(lambda: _has(admin, hoodie, "WH-EAST", 6))
        hood = (await levels_of(admin, hoodie))["WH-EAST"]
        assert (hood["reserved"], hood["backordered"]) == (4, 0)  # served before availability


async def _known(admin, sku) -> bool:
    return bool(await admin.fetchval("SELECT 1 FROM stock.skus WHERE sku = $1", sku))


async def _has(admin, sku, location, on_hand) -> bool:
    level = (await levels_of(admin, sku)).get(location)
    return level is not None and level["on_hand"] == on_hand


async def test_release_commit_and_repeats_have_defined_outcomes(
    run_service, producer, infra, admin
):
    tee = sku_name("TEE")
    async with run_service("stock"), Replies(infra) as replies:
        await catalog(producer, tee)
        await receipt(producer, tee, "WH-EAST", 10)
        await until(lambda: _has(admin, tee, "WH-EAST", 10))
        await send(producer, reserve(f"o-1-{RUN}", [(tee, 3)]))
        await send(producer, reserve(f"o-1-{RUN}", [(tee, 3)]))  # a second reserve: same answer
        first, second = await replies.wait(f"o-1-{RUN}", 2)
        assert first == second
        commit = CommitReservation(
            order_id=f"o-1-{RUN}",
            shipment_id="s-1",
            lines=[{"line_id": "L1", "sku": tee, "location": "WH-EAST", "quantity": 3}],
        )
        await send(producer, commit)
        await send(producer, commit.model_copy(update={}), event_id=str(uuid.uuid4()))
        await send(producer, ReleaseReservation(order_id=f"o-1-{RUN}", reason="late cancel"))
        await send(
            producer,
            CommitReservation(
                order_id=f"o-nobody-{RUN}",
                shipment_id="s-9",
                lines=[{"line_id": "L1", "sku": tee, "location": "WH-EAST", "quantity": 1}],
            ),
        )
        events = await replies.wait(f"o-1-{RUN}", 5)
        assert [getattr(e, "outcome", None) for e in events[2:]] == [
            "committed",
            "already_committed",
            "already_committed",
        ]
        assert (await replies.wait(f"o-nobody-{RUN}"))[0].outcome == "unknown_reservation"
        level = (await levels_of(admin, tee))["WH-EAST"]
        assert (level["on_hand"], level["reserved"]) == (7, 0)


async def test_no_oversell_with_two_instances_and_the_ledger_explains_every_unit(
    run_service, producer, infra, admin
):
    hot = sku_name("HOT")
    async with run_service("stock"), run_service("stock"), Replies(infra) as replies:
        await catalog(producer, hot)
        await receipt(producer, hot, "WH-EAST", 60)
        await receipt(producer, hot, "WH-WEST", 40)
        await until(lambda: _has(admin, hot, "WH-WEST", 40))
        orders = [f"o-{hot}-{i}" for i in range(1200)]
        samples: list[int] = []

        async def sample() -> None:
            while True:
                rows = await admin.fetch(
                    "SELECT on_hand - reserved - damaged - quality_control - safety_stock AS a "
                    "FROM stock.levels WHERE sku = $1",
                    hot,
                )
                samples.extend(r["a"] for r in rows)
                await asyncio.sleep(0.05)

        sampler = asyncio.create_task(sample())
        for order_id in orders:  # concurrent: all in flight at once, over every partition
            record = encode(reserve(order_id, [(hot, 1)], policy="reject"), source="test")
            await producer.send(record.topic, record.value, key=record.key, headers=record.headers)
        await producer.flush()
        await until(lambda: asyncio.sleep(0, all(o in replies.by_order for o in orders)), 60)
        sampler.cancel()
        reserved = [o for o in orders if replies.by_order[o][0].event_type == "stock.reserved.v1"]
        assert len(reserved) == 100
        assert min(samples) >= 0
        levels = await levels_of(admin, hot)
        assert sum(level["reserved"] for level in levels.values()) == 100
        held = await admin.fetchval(
            "SELECT sum(quantity) FROM stock.reservations WHERE sku = $1", hot
        )
        assert held == 100

        # Replaying the ledger from zero gives today's levels.
        rows = await admin.fetch(
            "SELECT kind, sku, location, quantity, reason FROM stock.movements WHERE sku = $1 "
            "ORDER BY id",
            hot,
        )
        rebuilt = replay(
            Movement(
                MovementKind(r["kind"]),
                r["sku"],
                r["location"],
                abs(r["quantity"])
                if r["kind"] not in ("adjustment", "safety_stock_set")
                else r["quantity"],
                reason=r["reason"],
            )
            for r in rows
        )
        for location, level in levels.items():
            assert rebuilt[(hot, location)] == Level(
                hot,
                location,
                level["on_hand"],
                level["reserved"],
                level["damaged"],
                level["quality_control"],
                level["safety_stock"],
                level["incoming"],
                level["backordered"],
            )


async def test_every_command_redelivered_changes_nothing(run_service, producer, infra, admin):
    tee = sku_name("TEE")
    commands = []
    async with run_service("stock"), Replies(infra) as replies:
        await catalog(producer, tee)
        await receipt(producer, tee, "WH-EAST", 20)
        await until(lambda: _has(admin, tee, "WH-EAST", 20))
        for i in range(10):
            record = encode(reserve(f"o-{tee}-{i}", [(tee, 3)], policy="reject"), source="t")
            commands.append(record)
            await producer.send(record.topic, record.value, key=record.key, headers=record.headers)
        await producer.flush()
        await until(lambda: asyncio.sleep(0, len(replies.by_order) >= 10), 30)
        before = dict((await levels_of(admin, tee))["WH-EAST"])
        movements = await admin.fetchval("SELECT count(*) FROM stock.movements WHERE sku = $1", tee)
        duplicates = metrics.MESSAGES_PROCESSED.labels("stock", "stock.commands.v1", "duplicate")
        seen_before = duplicates._value.get()
        for record in commands:  # the same events again, as a replay from offset zero would
            await producer.send(record.topic, record.value, key=record.key, headers=record.headers)
        await producer.flush()
        # Compare only once the service has read all ten again (and its inbox dropped them).
        await until(lambda: asyncio.sleep(0, duplicates._value.get() - seen_before >= 10), 30)
        assert all(len(replies.by_order[f"o-{tee}-{i}"]) == 1 for i in range(10))  # no re-answer
        after = dict((await levels_of(admin, tee))["WH-EAST"])
        assert after == before
        assert before["reserved"] == 18  # six orders of three; four refused
        assert (
            await admin.fetchval("SELECT count(*) FROM stock.movements WHERE sku = $1", tee)
            == movements
        )


async def test_api_levels_availability_with_a_bundle_count_and_idempotent_receipt(
    run_service, producer, admin
):
    mug, socks, gift = sku_name("MUG"), sku_name("SOCKS"), sku_name("GIFT")
    async with run_service("stock") as (_, client):
        await catalog(producer, mug)
        await catalog(producer, socks)
        await catalog(producer, gift, components=[(mug, 1), (socks, 2)])
        body = {
            "receipt_id": f"api-{mug}",
            "sku": mug,
            "location": "WH-EAST",
            "quantity": 5,
            "unit_cost": "3.00",
            "currency": "USD",
        }
        headers = {**ADMIN, "Idempotency-Key": f"k-{mug}"}
        first = await client.post("/receipts", json=body, headers=headers)
        again = await client.post("/receipts", json=body, headers=headers)
        assert first.status_code == again.status_code == 201
        assert again.headers.get("idempotent-replayed") == "true"
        assert (await client.post("/receipts", json=body)).status_code == 401
        await client.post(
            "/receipts",
            headers=ADMIN,
            json=body | {"receipt_id": f"api-{socks}", "sku": socks, "quantity": 6},
        )
        levels = (await client.get(f"/levels/{mug}")).json()
        assert levels["totals"]["on_hand"] == 5  # applied once

        async def knows_gift() -> bool:
            answer = (await client.post("/availability", json={"skus": [gift]})).json()
            return gift in answer["known"]

        await until(knows_gift)
        answer = (await client.post("/availability", json={"skus": [gift, mug]})).json()
        assert answer["availability"] == {gift: 3, mug: 5}  # min(5 // 1, 6 // 2)

        stale = await client.post(
            "/adjustments",
            headers=ADMIN,
            json={"sku": mug, "location": "WH-EAST", "expected": 4, "counted": 3, "count_id": "c1"},
        )
        assert stale.status_code == 409 and "expected" in stale.json()["detail"]
        counted = await client.post(
            "/adjustments",
            headers=ADMIN,
            json={"sku": mug, "location": "WH-EAST", "expected": 5, "counted": 4, "count_id": "c2"},
        )
        assert counted.json()["adjusted_by"] == -1
        moves = (await client.get("/movements", params={"sku": mug})).json()["items"]
        assert [m["kind"] for m in moves] == ["receipt", "adjustment"]
