"""The warehouse's less happy paths under a stream, on the five service processes.

The fulfillment autopilot comes up short on some pick lists and cancels some picked shipments,
part of the orders ask for `reallocate` (the others take the default `cancel_remainder`), and
some customers cancel a unit once their order is confirmed. Every order must still end, hold
nothing, and leave the system checker with nothing to say.
"""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaProducer

from stockflow.cli.check import check_system
from stockflow.cli.checkout_sim import (
    LINE_CANCEL_DROP,
    SHORT_PICK,
    WAREHOUSE_CANCEL,
    Catalog,
    OrderFactory,
    Outcomes,
    OutcomeTracker,
    Scenario,
    send_orders,
)
from stockflow.cli.demo import receive
from stockflow.contracts import encode
from stockflow.runtime.testing.factories import variant
from stockflow.runtime.testing.plugin import SYSTEM_ENV
from stockflow.runtime.testing.system import System

pytestmark = pytest.mark.system

TERMINAL_STATES = ("delivered", "rejected", "cancelled", "returned")
LOCATIONS = ("WH-EAST", "WH-WEST")
# Picking waits 2 s, so a line cancel sent 0.8 to 1.6 s after submission finds its units
# still waiting in a planned shipment.
WAREHOUSE_ENV = {
    "STOCKFLOW_FULFILLMENT_AUTO_SHIP_DELAY_S": "2",
    "STOCKFLOW_FULFILLMENT_AUTO_SHORT_PICK_EVERY": "2",
    "STOCKFLOW_FULFILLMENT_AUTO_CANCEL_EVERY": "5",
}


@pytest.fixture(scope="module")
def system(infra):
    """The five services, the warehouse autopilot short-picking and cancelling now and then."""
    running = System(infra, env=SYSTEM_ENV | WAREHOUSE_ENV)
    running.start_all()
    yield running
    running.stop_all()


async def seed(system, producer: AIOKafkaProducer, prefix: str) -> Catalog:
    """Four skus at both locations: a reallocated unit can be served from the other one."""
    skus = [f"{prefix}-{name}" for name in ("HOT", "A", "B", "C")]
    for sku in skus:
        record = encode(variant(sku), source="stockflow/catalog")
        await producer.send(record.topic, record.value, key=record.key, headers=record.headers)
        for location in LOCATIONS:
            await receive(producer, sku, location, 200, "4.00", receipt_id=f"r-{sku}-{location}")
    async with httpx.AsyncClient(base_url=system.url("stock"), timeout=15) as stock_api:
        for _ in range(150):
            levels = (await stock_api.get(f"/levels/{skus[-1]}")).json()
            if int((levels.get("totals") or {}).get("on_hand", 0)) == 400:
                break
            await asyncio.sleep(0.2)
        else:
            pytest.fail(f"stock never recorded the receipts: {levels}")
    return Catalog(skus=skus, prices={sku: Decimal("10.00") for sku in skus})


async def test_short_picks_warehouse_cancels_and_line_cancels_end_every_order_cleanly(
    infra, system
):
    prefix = f"W{uuid.uuid4().hex[:6].upper()}"
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap, acks="all")
    await producer.start()
    outcomes, warehouse = Outcomes(), Outcomes()
    tracker = OutcomeTracker(system.kafka_bootstrap, outcomes)
    reports = OutcomeTracker(system.kafka_bootstrap, warehouse, topic="fulfillment.events.v1")
    await tracker.start()
    await reports.start()
    try:
        catalog = await seed(system, producer, prefix)
        factory = OrderFactory(
            catalog,
            mix={Scenario.NORMAL: 0.7, Scenario.LINE_CANCEL: 0.3},
            seed=21,
            reallocate_share=0.5,
        )
        planned = await send_orders(producer, factory, 80, 20, outcomes, duplicate_every=10)
        ids = [p.order_id for p in planned]
        for _ in range(480):
            if outcomes.terminal(ids) == len(ids):
                break
            await asyncio.sleep(0.25)
    finally:
        await tracker.stop()
        await reports.stop()
        await producer.stop()

    admin = await asyncpg.connect(infra.admin_database_url)
    try:
        states = dict(
            await admin.fetch(
                "SELECT order_id, state FROM orders.orders WHERE order_id = ANY($1)", ids
            )
        )
        walked = dict(
            await admin.fetch(
                "SELECT cause_type, count(*) FROM orders.timeline "
                "WHERE order_id = ANY($1) AND outcome = 'applied' GROUP BY cause_type",
                ids,
            )
        )
        held = await admin.fetchval(
            "SELECT coalesce(sum(quantity), 0) FROM stock.reservations WHERE order_id = ANY($1)",
            ids,
        )
    finally:
        await admin.close()
    open_orders = {o: s for o, s in states.items() if s not in TERMINAL_STATES}
    assert len(states) == len(ids) and not open_orders, open_orders
    assert held == 0
    # Every path was walked, under both policies.
    for path in (SHORT_PICK, WAREHOUSE_CANCEL, LINE_CANCEL_DROP):
        assert warehouse.walked(path) & set(ids), f"no {path} in the stream"
    assert walked.get("LinesCancelRequested", 0) > 0, walked
    assert walked.get("BackorderAllocated", 0) > 0, "no exception was reallocated"
    reasons = outcomes.line_cancel_reasons
    assert {"warehouse_cancelled", "customer removed one unit"} <= set(reasons), reasons
    violations = await check_system(infra.admin_database_url, settle_seconds=0)
    ours = [v for v in violations if prefix in v.subject or any(o in v.subject for o in ids)]
    assert ours == []
