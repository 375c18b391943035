"""The stock service against real Kafka and PostgreSQL: reservations, ledger, concurrency."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import uuid
from datetime import UTC, datetime

import asyncpg
import httpx
import pytest

from stockflow.contracts import decode, encode, parse
from stockflow.contracts.events.fulfillment import ReturnReceived
from stockflow.contracts.events.stock import (
    BackorderAllocated,
    CommitReservation,
    ReleaseReservation,
    ReserveStock,
    StockLevelChanged,
)
from stockflow.runtime import metrics
from stockflow.runtime.db import create_pool
from stockflow.runtime.outbox import UnitOfWork
from stockflow.runtime.testing.factories import goods_received, variant
from stockflow.runtime.testing.plugin import ADMIN, reader_from_start
from stockflow.runtime.testing.system import System
from stockflow.stock.domain import BUCKETS, Level, Movement, MovementKind, replay
from stockflow.stock.ledger import LevelBook
from stockflow.stock.store import ReservationStore
from stockflow.stock.usecases.backorders import serve_waiting_backorders

pytestmark = pytest.mark.integration

RUN = uuid.uuid4().hex[:8]  # order ids are unique per run: replies are kept per order


def sku_name(tag: str) -> str:
    return f"T{uuid.uuid4().hex[:8].upper()}-{tag}"


async def send(producer, event, event_id: str | None = None) -> None:
    record = encode(event, source="test", event_id=event_id)
    await producer.send_and_wait(record.topic, record.value, key=record.key, headers=record.headers)


async def catalog(producer, sku: str, *, backorderable=False, status="active", components=()):
    await send(
        producer, variant(sku, backorderable=backorderable, components=components, status=status)
    )


async def receipt(producer, sku: str, location: str, quantity: int) -> None:
    await send(producer, goods_received(sku, location, quantity))


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

    async def wait(self, order_id: str, count: int = 1, timeout_s: float = 60):
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


async def until(probe, timeout_s: float = 60):
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


def _spawn_stock(system: System, index: int, port: int) -> subprocess.Popen:
    env = system.local.service_env(system.profile, "stock") | {"STOCKFLOW_HTTP_PORT": str(port)}
    with (system.logs / f"stock-{index}.log").open("ab") as log:
        return subprocess.Popen(
            system.local.service_cmd("stock", port),
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@contextlib.asynccontextmanager
async def stock_processes(infra, count: int):
    """`count` stock service processes in one consumer group; yields their base URLs."""
    system = System(infra)
    system.logs.mkdir(parents=True, exist_ok=True)
    urls = [f"http://127.0.0.1:{system.profile.http_port('stock') + 100 + i}" for i in range(count)]
    procs = []
    try:
        for i, url in enumerate(urls):
            procs.append(await asyncio.to_thread(_spawn_stock, system, i, int(url.rsplit(":")[-1])))
        async with httpx.AsyncClient(timeout=2) as client:

            async def ready() -> bool:
                assert all(proc.poll() is None for proc in procs), "a stock process died"
                answers = await asyncio.gather(
                    *(client.get(f"{url}/readyz") for url in urls), return_exceptions=True
                )
                return all(getattr(a, "status_code", 0) == 200 for a in answers)

            await until(ready, 90)
        yield urls
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            await asyncio.to_thread(proc.wait, 30)


async def commands_applied(url: str) -> float:
    """How many stock commands one process applied (its Prometheus counter)."""
    async with httpx.AsyncClient(timeout=5) as client:
        text = (await client.get(f"{url}/metrics")).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("stockflow_messages_processed_total{")
        and 'topic="stock.commands.v1"' in line
        and 'outcome="applied"' in line
    )


async def test_no_oversell_with_two_processes_and_stock_is_conserved(producer, infra, admin):
    hot = sku_name("HOT")
    async with stock_processes(infra, 2) as urls, Replies(infra) as replies:
        await catalog(producer, hot)
        await receipt(producer, hot, "WH-EAST", 60)
        await receipt(producer, hot, "WH-WEST", 40)
        await until(lambda: _has(admin, hot, "WH-WEST", 40), 30)
        orders = [f"o-{hot}-{i}" for i in range(1200)]
        samples: list[int] = []
        sampling = True

        async def sample() -> None:
            while sampling:
                rows = await admin.fetch(
                    "SELECT on_hand - reserved - damaged - quality_control - safety_stock AS a "
                    "FROM stock.levels WHERE sku = $1",
                    hot,
                )
                samples.extend(r["a"] for r in rows)
                await asyncio.sleep(0.02)

        sampler = asyncio.create_task(sample())
        # All in flight at once, over every partition; odd orders may wait, even ones may not.
        for i, order_id in enumerate(orders):
            policy = "allow" if i % 2 else "reject"
            record = encode(reserve(order_id, [(hot, 1)], policy=policy), source="test")
            await producer.send(record.topic, record.value, key=record.key, headers=record.headers)
        await producer.flush()
        await until(lambda: asyncio.sleep(0, all(o in replies.by_order for o in orders)), 120)
        reserved = [
            o
            for o in orders
            if replies.by_order[o][0].event_type == "stock.reserved.v1"
            and replies.by_order[o][0].complete
        ]
        waiting = [
            o
            for o in orders
            if replies.by_order[o][0].event_type == "stock.reserved.v1"
            and not replies.by_order[o][0].complete
        ]
        rejected = [o for i, o in enumerate(orders) if o not in reserved and o not in waiting]
        assert len(reserved) == 100
        assert len(waiting) + len(reserved) + len(rejected) == 1200
        assert all(orders.index(o) % 2 for o in waiting)  # only the orders that allowed it
        applied = [await commands_applied(url) for url in urls]
        assert all(applied) and sum(applied) >= 1200, applied  # both processes took commands

        # Ship 30 of the reserved orders and cancel 20: the cancelled units go to the queue.
        for order_id in reserved[:30]:
            (line,) = replies.by_order[order_id][0].lines
            await send(
                producer,
                CommitReservation(
                    order_id=order_id,
                    shipment_id=f"s-{order_id}",
                    lines=[
                        {"line_id": "L1", "sku": hot, "location": a.location, "quantity": 1}
                        for a in line.allocations
                    ],
                ),
            )
        for order_id in reserved[30:50]:
            await send(producer, ReleaseReservation(order_id=order_id, reason="cancelled"))
        await until(
            lambda: asyncio.sleep(0, all(len(replies.by_order[o]) >= 2 for o in reserved[:50])),
            60,
        )
        sampling = False
        await sampler  # it shares the admin connection: its last query must end first
        assert min(samples) >= 0

        levels = await levels_of(admin, hot)
        shipped = -await admin.fetchval(
            "SELECT coalesce(sum(quantity), 0) FROM stock.movements "
            "WHERE sku = $1 AND kind = 'shipment'",
            hot,
        )
        written_off = -await admin.fetchval(
            "SELECT coalesce(sum(quantity), 0) FROM stock.movements "
            "WHERE sku = $1 AND kind = 'write_off'",
            hot,
        )
        on_hand = sum(level["on_hand"] for level in levels.values())
        assert (shipped, written_off) == (30, 0)
        assert on_hand + shipped + written_off == 100  # initial 0 + received 100
        held = await admin.fetchval(
            "SELECT sum(quantity) FROM stock.reservations WHERE sku = $1", hot
        )
        assert sum(level["reserved"] for level in levels.values()) == held == 70
        backordered = sum(level["backordered"] for level in levels.values())
        assert backordered == len(waiting) - 20  # 20 waiting orders got the cancelled units
        await _ledger_explains(admin, hot)


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
            json={
                "sku": mug,
                "location": "WH-EAST",
                "expected": 4,
                "counted": 3,
                "count_id": f"c1-{mug}",
            },
        )
        assert stale.status_code == 409 and "expected" in stale.json()["detail"]
        counted = await client.post(
            "/adjustments",
            headers=ADMIN,
            json={
                "sku": mug,
                "location": "WH-EAST",
                "expected": 5,
                "counted": 4,
                "count_id": f"c2-{mug}",
            },
        )
        assert counted.json()["adjusted_by"] == -1
        moves = (await client.get("/movements", params={"sku": mug})).json()["items"]
        assert [m["kind"] for m in moves] == ["receipt", "adjustment"]


async def test_a_partial_release_frees_a_lines_units_and_units_not_found_leave_on_hand(
    run_service, producer, infra, admin
):
    mug = sku_name("MUG")
    order_id = f"o-part-{RUN}"
    async with run_service("stock"), Replies(infra) as replies:
        await catalog(producer, mug)
        await receipt(producer, mug, "WH-EAST", 10)
        await until(lambda: _has(admin, mug, "WH-EAST", 10))
        await send(producer, reserve(order_id, [(mug, 3), (mug, 2)]))
        await replies.wait(order_id)

        def release(line_id: str, quantity: int, not_found: bool) -> ReleaseReservation:
            return ReleaseReservation(
                order_id=order_id,
                reason="short_pick" if not_found else "customer",
                lines=[
                    {
                        "line_id": line_id,
                        "sku": mug,
                        "location": "WH-EAST",
                        "quantity": quantity,
                        "not_found": not_found,
                    }
                ],
            )

        await send(producer, release("L1", 1, not_found=True))
        await send(producer, release("L2", 2, not_found=False))
        _, lost, cancelled = await replies.wait(order_id, 3)
        assert [(line.line_id, line.quantity) for line in lost.lines] == [("L1", 1)]
        assert [(line.line_id, line.quantity) for line in cancelled.lines] == [("L2", 2)]
        level = (await levels_of(admin, mug))["WH-EAST"]
        # 1 unit not found left on hand; 2 cancelled units are sellable again; 2 still held.
        assert (level["on_hand"], level["reserved"], level["available"]) == (9, 2, 7)
        held = await admin.fetch(
            "SELECT line_id, quantity, released FROM stock.reservations WHERE order_id = $1 "
            "ORDER BY line_id",
            order_id,
        )
        assert [tuple(r) for r in held] == [("L1", 2, 1), ("L2", 0, 2)]
        adjustment = await admin.fetchrow(
            "SELECT quantity, reason FROM stock.movements WHERE order_id = $1 "
            "AND kind = 'adjustment'",
            order_id,
        )
        assert tuple(adjustment) == (-1, "not_found_at_pick")
        await _ledger_explains(admin, mug)


async def _ledger_explains(admin, sku: str) -> None:
    """Replaying the sku's movements from zero gives every one of its levels today."""
    rows = await admin.fetch(
        "SELECT kind, sku, location, quantity, reason, reference_id FROM stock.movements "
        "WHERE sku = $1 ORDER BY id",
        sku,
    )
    transfers = {
        r["transfer_id"]: r["destination"]
        for r in await admin.fetch("SELECT transfer_id, destination FROM stock.transfers")
    }
    signed = ("adjustment", "safety_stock_set")
    rebuilt = replay(
        Movement(
            MovementKind(r["kind"]),
            r["sku"],
            r["location"],
            r["quantity"] if r["kind"] in signed else abs(r["quantity"]),
            reason=r["reason"] or ("count" if r["kind"] == "adjustment" else None),
            destination=transfers[r["reference_id"]] if r["kind"] == "transfer_out" else None,
        )
        for r in rows
    )
    for location, level in (await levels_of(admin, sku)).items():
        assert rebuilt[(sku, location)] == Level(sku, location, *(level[b] for b in BUCKETS)), (
            location
        )


async def test_transfers_move_stock_through_transit_and_serve_backorders_at_arrival(
    run_service, producer, admin
):
    lamp = sku_name("LAMP")
    async with run_service("stock") as (_, client):
        await catalog(producer, lamp, backorderable=True)
        await until(lambda: _known(admin, lamp))
        await _api_receipt(client, lamp, "WH-EAST", 10)
        soon = "2031-03-01T09:00:00Z"
        ship = {
            "transfer_id": f"tr-{lamp}",
            "sku": lamp,
            "source": "WH-EAST",
            "destination": "STORE-1",
            "quantity": 4,
            "expected_at": soon,
        }
        assert (await client.post("/transfers", json=ship, headers=ADMIN)).status_code == 201
        again = await client.post("/transfers", json=ship, headers=ADMIN)
        assert again.status_code == 409 and "transfer_id" in again.json()["detail"]
        too_many = await client.post(
            "/transfers", json=ship | {"transfer_id": f"tr2-{lamp}", "quantity": 7}, headers=ADMIN
        )
        assert too_many.status_code == 409 and "quantity" in too_many.json()["detail"]
        same_place = await client.post(
            "/transfers", json=ship | {"destination": "WH-EAST"}, headers=ADMIN
        )
        assert same_place.status_code == 422 and "destination" in same_place.text
        levels = await levels_of(admin, lamp)
        assert (levels["WH-EAST"]["on_hand"], levels["STORE-1"]["incoming"]) == (6, 4)

        # Sell everything on hand; the next order waits for the transfer and is told when.
        no_token = await client.post("/transfers", json=ship | {"transfer_id": f"x-{lamp}"})
        assert no_token.status_code == 401
        for order_id, quantity in (("o-all", 6), ("o-wait", 3), ("o-late", 2)):  # in this order
            await send(producer, reserve(f"{order_id}-{lamp}", [(lamp, quantity)]))
            await until(lambda o=order_id: _answered(admin, f"{o}-{lamp}"))
        wait = (await client.get(f"/reservations/o-wait-{lamp}")).json()
        assert wait["reply"]["lines"][0]["expected_date"] == soon
        assert wait["backorders"][0]["expected_at"] is not None
        late = (await client.get(f"/reservations/o-late-{lamp}")).json()
        assert late["reply"]["lines"][0]["backordered"] == 2
        assert late["reply"]["lines"][0]["expected_date"] is None  # 3 + 2 > the 4 on their way

        part = await client.post(
            f"/transfers/tr-{lamp}/receive", json={"quantity": 3}, headers=ADMIN
        )
        assert part.status_code == 200 and part.json()["in_transit"] == 1
        rest = await client.post(f"/transfers/tr-{lamp}/receive", json={}, headers=ADMIN)
        assert rest.json()["status"] == "received"
        none_left = await client.post(f"/transfers/tr-{lamp}/receive", json={}, headers=ADMIN)
        assert none_left.status_code == 409
        missing = await client.post("/transfers/nope/receive", json={}, headers=ADMIN)
        assert missing.status_code == 404
        store = (await levels_of(admin, lamp))["STORE-1"]
        # The four units went to the queue first: 3 for o-wait, 1 of o-late's 2.
        assert (store["on_hand"], store["incoming"], store["reserved"]) == (4, 0, 4)
        assert sum(level["backordered"] for level in (await levels_of(admin, lamp)).values()) == 1
        in_transit = await client.get("/transfers", params={"sku": lamp, "in_transit": True})
        assert in_transit.json()["items"] == []
        assert (await client.get("/incoming", params={"sku": lamp})).json()["items"] == []
        await _ledger_explains(admin, lamp)


async def test_states_safety_stock_and_announced_receipts_are_movements(
    run_service, producer, admin
):
    vase = sku_name("VASE")
    async with run_service("stock") as (_, client):
        await catalog(producer, vase, backorderable=True)
        await until(lambda: _known(admin, vase))
        await _api_receipt(client, vase, "WH-EAST", 10)

        async def state(change_id, quantity, from_state, to_state):
            return await client.post(
                "/states",
                headers=ADMIN,
                json={
                    "change_id": f"{change_id}-{vase}",
                    "sku": vase,
                    "location": "WH-EAST",
                    "quantity": quantity,
                    "from_state": from_state,
                    "to_state": to_state,
                    "reason": "inbound inspection",
                },
            )

        assert (await state("qc", 4, "sellable", "quality_control")).status_code == 200
        assert (await state("qc", 4, "sellable", "quality_control")).status_code == 409  # repeat
        assert (await state("bad", 3, "quality_control", "damaged")).status_code == 200
        assert (await state("ok", 1, "quality_control", "sellable")).status_code == 200
        assert (await state("scrap", 2, "damaged", "written_off")).status_code == 200
        too_many = await state("scrap2", 5, "damaged", "written_off")
        assert too_many.status_code == 409 and "quantity" in too_many.json()["detail"]
        nonsense = await state("x", 1, "written_off", "sellable")
        assert nonsense.status_code == 422 and "to_state" in nonsense.text
        level = (await levels_of(admin, vase))["WH-EAST"]
        assert (level["on_hand"], level["quality_control"], level["damaged"]) == (8, 0, 1)

        safety = {"sku": vase, "location": "WH-EAST", "safety_stock": 3}
        assert (await client.put("/safety-stock", json=safety, headers=ADMIN)).status_code == 200
        over = await client.put("/safety-stock", json=safety | {"safety_stock": 9}, headers=ADMIN)
        assert over.status_code == 409 and "safety_stock" in over.json()["detail"]
        levels = (await client.get(f"/levels/{vase}")).json()["totals"]
        assert levels["available"] == 8 - 1 - 3

        # Sell what is available, backorder 2 more; an announced receipt dates the backorder,
        # and letting go of safety stock serves the queue before it becomes available.
        expected_at = "2031-05-04T08:00:00Z"
        announce = {
            "receipt_id": f"po-{vase}",
            "sku": vase,
            "location": "WH-EAST",
            "quantity": 20,
            "expected_at": expected_at,
        }
        assert (await client.post("/incoming", json=announce, headers=ADMIN)).status_code == 201
        assert (await client.post("/incoming", json=announce, headers=ADMIN)).status_code == 409
        await send(producer, reserve(f"o-vase-{RUN}", [(vase, 6)]))
        await until(lambda: _answered(admin, f"o-vase-{RUN}"))
        reply = (await client.get(f"/reservations/o-vase-{RUN}")).json()
        assert (
            reply["reply"]["lines"][0]["backordered"],
            reply["reply"]["lines"][0]["expected_date"],
        ) == (2, expected_at)
        await client.put("/safety-stock", json=safety | {"safety_stock": 0}, headers=ADMIN)
        level = (await levels_of(admin, vase))["WH-EAST"]
        assert (level["reserved"], level["backordered"], level["safety_stock"]) == (6, 0, 0)
        await _api_receipt(client, vase, "WH-EAST", 20, receipt_id=f"po-{vase}")
        assert (await client.get("/incoming", params={"sku": vase})).json()["items"] == []
        kinds = [
            m["kind"]
            for m in (await client.get("/movements", params={"sku": vase})).json()["items"]
        ]
        assert kinds.count("write_off") == 1 and kinds.count("safety_stock_set") == 2
        await _ledger_explains(admin, vase)


async def test_a_release_serves_waiting_backorders_first_even_of_fully_backordered_orders(
    run_service, producer, admin, infra
):
    kite = sku_name("KITE")
    async with run_service("stock"), Replies(infra) as replies:
        await catalog(producer, kite)
        await receipt(producer, kite, "WH-EAST", 2)
        await until(lambda: _has(admin, kite, "WH-EAST", 2))
        await send(producer, reserve(f"o-a-{kite}", [(kite, 2)], policy="allow"))
        await send(producer, reserve(f"o-b-{kite}", [(kite, 1)], policy="allow"))  # all waiting
        await send(producer, reserve(f"o-c-{kite}", [(kite, 1)], policy="allow"))
        await replies.wait(f"o-c-{kite}")
        await send(producer, ReleaseReservation(order_id=f"o-a-{kite}", reason="cancelled"))
        allocated = await replies.wait(f"o-b-{kite}", 2)
        assert allocated[1].event_type == "stock.backorder.allocated.v1"
        await replies.wait(f"o-c-{kite}", 2)
        # A later order waits for everything; cancelling it (in a later batch, with nothing
        # reserved to look up) still closes its backorder through the ledger.
        await send(producer, reserve(f"o-d-{kite}", [(kite, 3)], policy="allow"))
        await replies.wait(f"o-d-{kite}")
        assert (await levels_of(admin, kite))["WH-EAST"]["backordered"] == 3
        await send(producer, ReleaseReservation(order_id=f"o-d-{kite}", reason="cancelled"))
        await replies.wait(f"o-d-{kite}", 2)
        # o-c lets go of what it got; nobody waits any more: its unit is available again.
        await send(producer, ReleaseReservation(order_id=f"o-c-{kite}", reason="cancelled"))
        await replies.wait(f"o-c-{kite}", 3)
        level = (await levels_of(admin, kite))["WH-EAST"]
        assert (level["reserved"], level["backordered"]) == (1, 0)
        await _ledger_explains(admin, kite)


async def test_a_retried_receipt_counts_once_and_a_changed_one_is_dead_lettered_with_why(
    run_service, producer, infra, admin
):
    """A WMS retry (same receipt_id, new event id) is a no-op; the same receipt_id with another
    quantity goes to stock.dlq.v1 with the reason, and nothing changes."""
    bolt = sku_name("BOLT")
    first = goods_received(bolt, "WH-EAST", 10, receipt_id=f"wms-{bolt}")
    changed = first.model_copy(update={"quantity": 12})
    changed_event_id = f"changed-{bolt}"
    async with run_service("stock"):
        await catalog(producer, bolt)
        await send(producer, first)
        await send(producer, first)  # the retry: a new event id
        await send(producer, changed, event_id=changed_event_id)
        await receipt(producer, bolt, "WH-EAST", 1)  # a later receipt: all before it are done
        await until(lambda: _has(admin, bolt, "WH-EAST", 11))
        reason = await admin.fetchval(
            "SELECT reason FROM stock.dead_letters WHERE event_id = $1", changed_event_id
        )
    assert reason.startswith(f"receipt_id: receipt wms-{bolt} was already applied")
    assert "quantity 10 then, 12 now" in reason
    dead = await _dead_letter_on_topic(infra, changed_event_id)
    assert dict(dead.headers)["dlq_reason"].decode() == reason
    receipts = await admin.fetch(
        "SELECT quantity FROM stock.movements WHERE kind = 'receipt' AND reference_id = $1",
        f"wms-{bolt}",
    )
    assert [r["quantity"] for r in receipts] == [10]
    await _ledger_explains(admin, bolt)


async def _dead_letter_on_topic(infra, event_id: str, timeout_s: float = 30):
    """The record stock.dlq.v1 holds for `event_id` (its original headers are kept)."""
    consumer = reader_from_start(infra.kafka_bootstrap, "stock.dlq.v1")
    await consumer.start()
    try:
        for _ in range(int(timeout_s * 2)):
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    if dict(record.headers).get("ce_id") == event_id.encode():
                        return record
    finally:
        await consumer.stop()
    raise AssertionError(f"{event_id} never reached stock.dlq.v1")


async def test_http_receipts_and_counts_apply_once_per_business_key_without_idempotency_key(
    run_service, producer, admin
):
    nail = sku_name("NAIL")
    body = {
        "receipt_id": f"po-{nail}",
        "sku": nail,
        "location": "WH-EAST",
        "quantity": 5,
        "unit_cost": "3.00",
        "currency": "USD",
    }
    async with run_service("stock") as (_, client):
        await catalog(producer, nail)
        await until(lambda: _known(admin, nail))
        first = await client.post("/receipts", json=body, headers=ADMIN)
        again = await client.post("/receipts", json=body | {"unit_cost": "3.0"}, headers=ADMIN)
        assert (first.status_code, again.status_code) == (201, 200)
        assert again.json() == first.json() and first.json()["level"]["on_hand"] == 5
        changed = await client.post("/receipts", json=body | {"quantity": 6}, headers=ADMIN)
        assert changed.status_code == 409
        assert changed.json()["detail"].startswith(f"receipt_id: receipt po-{nail} was already")

        count = {"sku": nail, "location": "WH-EAST", "expected": 5, "counted": 4}
        counted = await client.post(
            "/adjustments", json=count | {"count_id": f"c-{nail}"}, headers=ADMIN
        )
        recounted = await client.post(
            "/adjustments", json=count | {"count_id": f"c-{nail}"}, headers=ADMIN
        )
        assert (counted.status_code, recounted.status_code) == (200, 200)
        assert (
            recounted.json()
            == counted.json()
            == {
                "count_id": f"c-{nail}",
                "adjusted_by": -1,
                "on_hand": 4,
            }
        )
        other = await client.post(
            "/adjustments", json=count | {"count_id": f"c-{nail}", "counted": 3}, headers=ADMIN
        )
        assert other.status_code == 409 and other.json()["detail"].startswith("count_id:")
        assert (await client.get(f"/levels/{nail}")).json()["totals"]["on_hand"] == 4
    await _ledger_explains(admin, nail)


def _return(rma_id: str, order_id: str, *lines: tuple[str, str, int, str]) -> ReturnReceived:
    return ReturnReceived(
        rma_id=rma_id,
        order_id=order_id,
        received_at=datetime.now(UTC),
        lines=[
            {"line_id": line_id, "sku": sku, "location": "WH-EAST", "quantity": q, "condition": c}
            for line_id, sku, q, c in lines
        ],
    )


async def test_a_return_applies_once_per_rma_line_and_a_write_off_is_in_the_ledger(
    run_service, producer, admin
):
    cup = sku_name("CUP")
    rma = f"rma-{cup}"
    both = _return(rma, "o-1", ("L1", cup, 2, "restock"), ("L2", cup, 1, "write_off"))
    later = _return(rma, "o-1", ("L1", cup, 2, "restock"), ("L3", cup, 1, "restock"))
    changed = _return(rma, "o-1", ("L2", cup, 3, "write_off"))
    async with run_service("stock"):
        await catalog(producer, cup)
        await receipt(producer, cup, "WH-EAST", 5)
        await until(lambda: _has(admin, cup, "WH-EAST", 5))
        await send(producer, both)
        await send(producer, both)  # redelivered under a new event id
        await send(producer, later)  # L1 again with a new line L3
        await send(producer, changed, event_id=f"changed-{rma}")
        await until(lambda: _has(admin, cup, "WH-EAST", 8))
        await until(lambda: _dead_lettered(admin, f"changed-{rma}"))
    moves = await admin.fetch(
        "SELECT kind, quantity, order_id FROM stock.movements WHERE reference_id = $1 ORDER BY id",
        rma,
    )
    assert [(m["kind"], m["quantity"], m["order_id"]) for m in moves] == [
        ("return_restock", 2, "o-1"),
        ("return_written_off", 1, "o-1"),
        ("return_restock", 1, "o-1"),
    ]
    assert (await levels_of(admin, cup))["WH-EAST"]["on_hand"] == 8
    await _ledger_explains(admin, cup)


async def _dead_lettered(admin, event_id: str) -> bool:
    return bool(
        await admin.fetchval("SELECT 1 FROM stock.dead_letters WHERE event_id = $1", event_id)
    )


async def test_only_active_catalog_variants_are_sold_and_preorders_wait_for_their_date(
    run_service, producer, infra, admin
):
    draft, gone, stray, early = (sku_name(t) for t in ("DRAFT", "GONE", "STRAY", "EARLY"))
    ships_on = datetime(2031, 3, 1, 9, tzinfo=UTC)
    async with run_service("stock") as (_, client), Replies(infra) as replies:
        await catalog(producer, draft, status="draft")
        await catalog(producer, gone, status="discontinued")
        await send(producer, variant(early, preorder_available_at=ships_on))
        for sku in (draft, gone, stray):
            await receipt(producer, sku, "WH-EAST", 5)
        await until(lambda: _has(admin, stray, "WH-EAST", 5))
        await until(lambda: _known(admin, early))

        for sku in (draft, gone):
            await send(producer, reserve(f"o-{sku}", [(sku, 1)]))
            (refused,) = await replies.wait(f"o-{sku}")
            assert refused.event_type == "stock.reservation.rejected.v1"
            assert refused.reason == "not_sellable"
            assert [(line.reason, line.available) for line in refused.lines] == [
                ("not_sellable", 5)
            ]
        # Units of a sku the catalog never announced are held: not sold until it is active.
        await send(producer, reserve(f"o-1-{stray}", [(stray, 1)]))
        (held,) = await replies.wait(f"o-1-{stray}")
        assert (held.event_type, held.reason) == ("stock.reservation.rejected.v1", "unknown_sku")
        answer = (await client.post("/availability", json={"skus": [stray, draft]})).json()
        assert answer["availability"] == {stray: 0, draft: 0}
        await catalog(producer, stray)
        await until(lambda: _known(admin, stray))
        await send(producer, reserve(f"o-2-{stray}", [(stray, 1)]))
        (sold,) = await replies.wait(f"o-2-{stray}")
        assert sold.event_type == "stock.reserved.v1" and sold.complete

        await send(producer, reserve(f"o-{early}", [(early, 2)], policy="reject"))
        (preordered,) = await replies.wait(f"o-{early}")
        assert preordered.event_type == "stock.reserved.v1" and not preordered.complete
        line = preordered.lines[0]
        assert (line.reserved, line.backordered, line.expected_date) == (0, 2, ships_on)
    assert (await levels_of(admin, draft))["WH-EAST"]["reserved"] == 0


async def test_announced_receipts_raise_incoming_until_they_arrive(
    run_service, producer, infra, admin
):
    rope = sku_name("ROPE")
    announce = {
        "receipt_id": f"po-{rope}",
        "sku": rope,
        "location": "WH-EAST",
        "quantity": 20,
        "expected_at": "2031-01-05T08:00:00Z",
    }
    async with run_service("stock") as (_, client):
        await catalog(producer, rope)
        await until(lambda: _known(admin, rope))
        assert (await client.post("/incoming", json=announce, headers=ADMIN)).status_code == 201
        level = (await client.get(f"/levels/{rope}")).json()["locations"][0]
        assert (level["incoming"], level["on_hand"], level["available"]) == (20, 0, 0)
        assert (await _level_event(infra, rope, incoming=20)).on_hand == 0

        # 15 of the 20 came: what did not come is no longer on its way.
        await _api_receipt(client, rope, "WH-EAST", 15, receipt_id=f"po-{rope}")
        level = (await client.get(f"/levels/{rope}")).json()["locations"][0]
        assert (level["incoming"], level["on_hand"]) == (0, 15)
        assert (await _level_event(infra, rope, incoming=0, on_hand=15)).available == 15
        kinds = [
            m["kind"]
            for m in (await client.get("/movements", params={"sku": rope})).json()["items"]
        ]
        assert kinds == ["incoming_announced", "receipt", "incoming_closed"]
    await _ledger_explains(admin, rope)


async def _level_event(infra, sku: str, **expected: int) -> StockLevelChanged:
    """The first stock.level.changed.v1 on stock.levels.v1 for `sku` with the `expected` buckets."""
    consumer = reader_from_start(infra.kafka_bootstrap, "stock.levels.v1")
    await consumer.start()
    try:
        for _ in range(60):
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    event = parse(decode(record.value, record.headers))
                    if (
                        isinstance(event, StockLevelChanged)
                        and event.sku == sku
                        and all(
                            getattr(event, bucket) == value for bucket, value in expected.items()
                        )
                    ):
                        return event
    finally:
        await consumer.stop()
    raise AssertionError(f"no level event of {sku} with {expected}")


async def _answered(admin, order_id: str) -> bool:
    return bool(
        await admin.fetchval("SELECT 1 FROM stock.order_reservations WHERE order_id = $1", order_id)
    )


async def _api_receipt(client, sku, location, quantity, receipt_id=None) -> None:
    response = await client.post(
        "/receipts",
        headers=ADMIN,
        json={
            "receipt_id": receipt_id or f"r-{uuid.uuid4().hex[:8]}",
            "sku": sku,
            "location": location,
            "quantity": quantity,
            "unit_cost": "4.00",
            "currency": "EUR",
        },
    )
    assert response.status_code == 201, response.text


async def test_location_priority_decides_where_an_order_ships_from(run_service, producer, admin):
    pen = sku_name("PEN")
    near, far = f"N{uuid.uuid4().hex[:6]}", f"F{uuid.uuid4().hex[:6]}"
    async with run_service("stock") as (_, client):
        for code, priority in ((far, 5000), (near, 1)):
            answer = await client.put(
                f"/locations/{code}",
                headers=ADMIN,
                json={"name": code, "kind": "store", "priority": priority, "bins": ["A-2", "A-1"]},
            )
            assert answer.status_code == 200 and answer.json()["bins"] == ["A-1", "A-2"]
        bad = await client.put(
            f"/locations/{near}", headers=ADMIN, json={"name": "x", "kind": "shed"}
        )
        assert bad.status_code == 422 and "kind" in bad.text
        codes = [item["code"] for item in (await client.get("/locations")).json()["items"]]
        assert codes.index(near) < codes.index(far)
        await catalog(producer, pen)
        await until(lambda: _known(admin, pen))
        await _api_receipt(client, pen, far, 5)
        await _api_receipt(client, pen, near, 5)
        await send(producer, reserve(f"o-{pen}", [(pen, 2)]))
        await until(lambda: _answered(admin, f"o-{pen}"))
        reply = (await client.get(f"/reservations/o-{pen}")).json()
        assert [line["location"] for line in reply["lines"]] == [near]


async def test_a_backordered_bundle_is_allocated_in_whole_units_when_its_last_component_arrives(
    run_service, producer, admin, infra
):
    """Kits of 1 pen and 1 ink: one is in stock, two wait. Pens alone allocate no kit; one
    ink then makes one whole kit, not two. Cancelling frees what the waiting kit held."""
    pen, ink, kit = sku_name("PEN"), sku_name("INK"), sku_name("KIT")
    order_id = f"o-kit-{kit}"
    async with run_service("stock"), Replies(infra) as replies:
        await catalog(producer, pen)
        await catalog(producer, ink)
        await catalog(producer, kit, components=[(pen, 1), (ink, 1)])
        await receipt(producer, pen, "WH-EAST", 1)
        await receipt(producer, ink, "WH-EAST", 1)
        await until(lambda: _has(admin, ink, "WH-EAST", 1))
        await until(lambda: _known(admin, kit))
        await send(producer, reserve(order_id, [(kit, 3)], policy="allow"))
        (reserved,) = await replies.wait(order_id)
        assert (reserved.lines[0].reserved, reserved.lines[0].backordered) == (1, 2)

        await receipt(producer, pen, "WH-EAST", 3)
        await until(lambda: _has(admin, pen, "WH-EAST", 4))
        await asyncio.sleep(1)  # an announcement would be published with the receipt's commit
        assert len(replies.by_order[order_id]) == 1
        level = (await levels_of(admin, pen))["WH-EAST"]
        assert (level["reserved"], level["backordered"], level["available"]) == (3, 0, 1)

        await receipt(producer, ink, "WH-EAST", 1)
        _, allocated = await replies.wait(order_id, 2)
        assert allocated.event_type == "stock.backorder.allocated.v1"
        assert (allocated.sku, allocated.location) == (kit, "WH-EAST")
        assert (allocated.quantity, allocated.remaining_backordered) == (1, 1)
        await asyncio.sleep(1)
        assert len(replies.by_order[order_id]) == 2  # one kit, announced once

        await send(producer, ReleaseReservation(order_id=order_id, reason="cancelled"))
        await replies.wait(order_id, 3)
        for sku, on_hand in ((pen, 4), (ink, 2)):
            level = (await levels_of(admin, sku))["WH-EAST"]
            assert (level["reserved"], level["backordered"], level["available"]) == (0, 0, on_hand)
            await _ledger_explains(admin, sku)


class _RecordingUnitOfWork(UnitOfWork):
    """A unit of work that also keeps the events it stages (they go to the outbox as usual)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        super().__init__(conn, source="test")
        self.events: list = []

    def publish(self, event, *, subject: str | None = None) -> None:
        self.events.append(event)
        super().publish(event, subject=subject)


async def _arrive(conn: asyncpg.Connection, where: tuple[str, str], units: int, cause: str):
    """In the caller's open transaction: units of (sku, location) arrive and serve the queue;
    returns the allocations it announced."""
    uow = _RecordingUnitOfWork(conn)
    book = await LevelBook.load(conn, [where[0]])
    book.move(Movement(MovementKind.RECEIPT, *where, units, reference=cause), cause_event_id=cause)
    await serve_waiting_backorders(uow, book, where, cause, ReservationStore(conn))
    await book.flush(uow)
    await uow.flush()
    return [event for event in uow.events if isinstance(event, BackorderAllocated)]


async def test_two_components_arriving_in_two_transactions_at_once_announce_the_kit_once(
    run_service, producer, admin, infra
):
    """The lamps' transaction holds the kit's row; the bulbs' waits for it, then counts the
    lamps it committed: the kits are announced, once, by the transaction that made them whole."""
    lamp, bulb, kit = sku_name("LAMP"), sku_name("BULB"), sku_name("KIT")
    order_id = f"o-race-{kit}"
    async with run_service("stock"), Replies(infra) as replies:
        for sku in (lamp, bulb):
            await catalog(producer, sku)
            await receipt(producer, sku, "WH-EAST", 1)
        await catalog(producer, kit, components=[(lamp, 1), (bulb, 1)])
        await until(lambda: _has(admin, bulb, "WH-EAST", 1))
        await until(lambda: _known(admin, kit))
        await send(producer, reserve(order_id, [(kit, 3)], policy="allow"))
        (reserved,) = await replies.wait(order_id)
        assert reserved.lines[0].backordered == 2
    pool = await create_pool(infra.admin_database_url, "stock", application_name="race")
    try:
        async with pool.acquire() as lamps, pool.acquire() as bulbs:
            lamp_tx, bulb_tx = lamps.transaction(), bulbs.transaction()
            await lamp_tx.start()
            await bulb_tx.start()
            from_lamps = await _arrive(lamps, (lamp, "WH-EAST"), 2, f"race-{lamp}")
            bulbs_arrive = asyncio.create_task(_arrive(bulbs, (bulb, "WH-EAST"), 2, f"race-{bulb}"))
            await asyncio.sleep(1)
            assert not bulbs_arrive.done()  # waiting for the kit's row the lamps hold
            await lamp_tx.commit()
            from_bulbs = await bulbs_arrive
            await bulb_tx.commit()
    finally:
        await pool.close()
    assert from_lamps == []
    [allocated] = from_bulbs
    assert (allocated.sku, allocated.quantity, allocated.remaining_backordered) == (kit, 2, 0)
    for sku in (lamp, bulb):
        level = (await levels_of(admin, sku))["WH-EAST"]
        assert (level["reserved"], level["backordered"]) == (3, 0)
