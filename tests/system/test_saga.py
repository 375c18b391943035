"""The reservation saga end to end: five service processes, real Kafka and PostgreSQL.

Every order reaches a terminal state; no oversell; stock is conserved against the ledger;
duplicate and replayed checkout events change nothing; SIGKILL of the order or the stock
process mid-stream ends in the same final state as an undisturbed run.
"""

from __future__ import annotations

import asyncio
import re
import signal
import uuid
from decimal import Decimal

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaProducer

from stockflow.cli.checkout_sim import (
    DEMO_MIX,
    Catalog,
    OrderFactory,
    Outcomes,
    OutcomeTracker,
    Scenario,
    send_orders,
    with_extra_scenarios,
)
from stockflow.cli.demo import receive
from stockflow.cli.kafka_tools import consumer_lag
from stockflow.contracts import encode
from stockflow.runtime.testing.factories import variant

pytestmark = pytest.mark.system

ADMIN = {"Authorization": "Bearer dev-admin-token"}
TERMINAL_STATES = ("delivered", "rejected", "cancelled", "returned")
# Outcomes that do not depend on timing, so a disturbed run must end exactly like a calm one.
TIMING_FREE_MIX = {
    Scenario.NORMAL: 0.80,
    Scenario.OUT_OF_STOCK: 0.08,
    Scenario.UNKNOWN_SKU: 0.06,
    Scenario.INVALID: 0.06,
}


def skus(prefix: str) -> dict[str, str]:
    return {
        name: f"{prefix}-{name}"
        for name in ("HOT", "A", "B", "C", "SOLDOUT", "BACK", "LAMP", "BULB", "KIT", "EBOOK")
    }


SHORT = ("BACK", "LAMP", "BULB")  # 2 units per location: orders of them wait for late stock
KIT_PARTS = {"LAMP": 1, "BULB": 2}  # the backorderable KIT bundle


async def seed(system, producer: AIOKafkaProducer, prefix: str, *, stock: int) -> Catalog:
    """The catalog's variants on catalog.products.v1 and stock through warehouse receipts."""
    names = skus(prefix)
    extra: dict[str, dict] = {
        "BACK": {"backorderable": True},
        "KIT": {
            "backorderable": True,
            "components": [(names[part], n) for part, n in KIT_PARTS.items()],
        },
        "EBOOK": {"tracked": False},
    }
    for name, sku in names.items():
        upserted = variant(sku, title=f"Product {name}", **extra.get(name, {}))
        record = encode(upserted, source="stockflow/catalog")
        await producer.send(record.topic, record.value, key=record.key, headers=record.headers)
    for name, sku in names.items():
        if name in ("SOLDOUT", "KIT", "EBOOK"):
            continue
        for location in ("WH-EAST", "WH-WEST"):
            quantity = 2 if name in SHORT else stock
            await receive(
                producer, sku, location, quantity, "4.00", receipt_id=f"r-{sku}-{location}"
            )
    async with httpx.AsyncClient(base_url=system.url("stock"), timeout=15) as stock_api:
        for _ in range(100):
            levels = (await stock_api.get(f"/levels/{names['HOT']}")).json()
            if int((levels.get("totals") or {}).get("on_hand", 0)) == 2 * stock:
                break
            await asyncio.sleep(0.2)
        else:
            pytest.fail(f"stock never recorded the receipts: {levels}")
        for _ in range(100):  # the bundle and the e-book come from the catalog topic
            wanted = [names["KIT"], names["EBOOK"]]
            known = (await stock_api.post("/availability", json={"skus": wanted})).json()
            if set(wanted) <= set(known.get("known", [])):
                break
            await asyncio.sleep(0.2)
    return Catalog(
        skus=[names["HOT"], names["A"], names["B"], names["C"]],
        prices={sku: Decimal("10.00") for sku in names.values()},
        out_of_stock=[names["SOLDOUT"]],
        backorderable=[names["BACK"]],
        backorderable_bundles=[names["KIT"]],
        digital=[names["EBOOK"]],
    )


async def run_stream(
    system, producer, catalog, *, count, rate, seed_value, mix, disturb=None, after_send=None
):
    outcomes = Outcomes()
    tracker = OutcomeTracker(system.kafka_bootstrap, outcomes)
    await tracker.start()
    factory = OrderFactory(catalog, mix=mix, seed=seed_value, payment_deadline_s=4)
    try:
        sending = asyncio.create_task(
            send_orders(producer, factory, count, rate, outcomes, duplicate_every=10)
        )
        if disturb is not None:
            await disturb()
        planned = await sending
        if after_send is not None:
            await after_send(planned)
        ids = [p.order_id for p in planned]
        for _ in range(600):
            if outcomes.terminal(ids) == len(ids):
                break
            await asyncio.sleep(0.25)
    finally:
        await tracker.stop()
    return planned, outcomes


async def records_read_again(system) -> float:
    """Checkout records the order service read again: known ones its inbox dropped, and invalid
    ones it had already answered (counted as invalid, answered once)."""
    async with httpx.AsyncClient(base_url=system.url("order"), timeout=10) as client:
        text = (await client.get("/metrics")).text
    pattern = (
        r'stockflow_messages_processed_total\{[^}]*outcome="(?:duplicate|invalid)"[^}]*'
        r'topic="checkout\.orders\.v1"[^}]*\} ([0-9.e+]+)'
    )
    return sum(float(v) for v in re.findall(pattern, text))


async def order_states(admin: asyncpg.Connection, ids: list[str]) -> dict[str, str]:
    rows = await admin.fetch(
        "SELECT order_id, state FROM orders.orders WHERE order_id = ANY($1)", ids
    )
    return {r["order_id"]: r["state"] for r in rows}


async def stock_violations(admin: asyncpg.Connection, prefix: str) -> list[str]:
    """No oversell, reserved = open reservations, on hand explained by the ledger."""
    problems = []
    levels = await admin.fetch(
        "SELECT sku, location, on_hand, reserved, on_hand - reserved - damaged - quality_control"
        " - safety_stock AS available FROM stock.levels WHERE sku LIKE $1",
        f"{prefix}-%",
    )
    held = {
        (r["sku"], r["location"]): r["held"]
        for r in await admin.fetch(
            "SELECT sku, location, sum(quantity) AS held FROM stock.reservations "
            "WHERE sku LIKE $1 GROUP BY sku, location",
            f"{prefix}-%",
        )
    }
    ledger = {
        (r["sku"], r["location"]): r["on_hand"]
        for r in await admin.fetch(
            """SELECT sku, location, sum(CASE kind
                WHEN 'receipt' THEN quantity WHEN 'return_restock' THEN quantity
                WHEN 'adjustment' THEN quantity WHEN 'transfer_in' THEN quantity
                WHEN 'shipment' THEN -abs(quantity) WHEN 'write_off' THEN -abs(quantity)
                WHEN 'transfer_out' THEN -abs(quantity) ELSE 0 END) AS on_hand
           FROM stock.movements WHERE sku LIKE $1 GROUP BY sku, location""",
            f"{prefix}-%",
        )
    }
    for level in levels:
        key = (level["sku"], level["location"])
        if level["available"] < 0:
            problems.append(f"{key}: available {level['available']}")
        if level["reserved"] != (held.get(key) or 0):
            problems.append(f"{key}: reserved {level['reserved']} != held {held.get(key)}")
        if level["on_hand"] != ledger.get(key, 0):
            problems.append(f"{key}: on hand {level['on_hand']} != ledger {ledger.get(key)}")
    return problems


async def stock_levels(admin: asyncpg.Connection, prefix: str) -> dict:
    rows = await admin.fetch(
        "SELECT sku, location, on_hand, reserved, backordered FROM stock.levels "
        "WHERE sku LIKE $1 ORDER BY sku, location",
        f"{prefix}-%",
    )
    return {(r["sku"].split("-", 1)[1], r["location"]): tuple(r)[2:] for r in rows}


STOCK_GROUPS = ("stock.commands", "stock.receipts", "stock.catalog", "stock.fulfillment")


async def stock_caught_up(bootstrap: str, timeout_s: float = 90.0) -> None:
    """Orders can end while a restarted stock still reads the shipments they caused (delivery
    does not wait for stock): compare stock only once its groups have read everything."""
    for _ in range(int(timeout_s * 4)):
        lags = await consumer_lag(bootstrap, STOCK_GROUPS)
        if all(row.lag == 0 for rows in lags.values() for row in rows):
            return
        await asyncio.sleep(0.25)
    pytest.fail(f"stock's consumers still lag after {timeout_s:g} s: {lags}")


@pytest.fixture(scope="module")
async def kit(system, infra):
    producer = AIOKafkaProducer(
        bootstrap_servers=infra.kafka_bootstrap, acks="all", enable_idempotence=True, linger_ms=5
    )
    await producer.start()
    admin = await asyncpg.connect(infra.admin_database_url)
    yield system, producer, admin
    await admin.close()
    await producer.stop()


async def test_every_order_ends_no_oversell_stock_conserved_and_replays_change_nothing(kit):
    system, producer, admin = kit
    prefix = f"S{uuid.uuid4().hex[:6].upper()}"
    catalog = await seed(system, producer, prefix, stock=40)  # the hot sku runs short

    async def late_stock(planned) -> None:  # as much as was ordered: every backorder ships
        ordered = {
            sku: sum(q for p in planned for s, q in p.lines() if s == sku)
            for sku in (catalog.backorderable[0], catalog.backorderable_bundles[0])
        }
        sku, kits = catalog.backorderable[0], ordered[catalog.backorderable_bundles[0]]
        await receive(producer, sku, "WH-EAST", ordered[sku], "4.00", receipt_id=f"late-{prefix}")
        for part, per_kit in KIT_PARTS.items():  # where the kits wait: their lamp's first place
            part_sku = f"{prefix}-{part}"
            await receive(
                producer, part_sku, "WH-EAST", kits * per_kit, "4.00", receipt_id=f"late-{part_sku}"
            )

    planned, _ = await run_stream(
        system,
        producer,
        catalog,
        count=300,
        rate=100,
        seed_value=3,
        mix=with_extra_scenarios(
            DEMO_MIX, {Scenario.BUNDLE_BACKORDER: 0.04, Scenario.DIGITAL: 0.03}
        ),
        after_send=late_stock,
    )
    ids = [p.order_id for p in planned]
    states = await order_states(admin, ids)
    open_orders = {o: s for o, s in states.items() if s not in TERMINAL_STATES}
    assert not open_orders, (
        f"{len(open_orders)} orders not terminal: {list(open_orders.items())[:5]}"
    )
    assert len(states) == len(ids)
    assert await stock_violations(admin, prefix) == []
    unknown = [p for p in planned if p.scenario is Scenario.UNKNOWN_SKU]
    assert all(states[p.order_id] == "rejected" for p in unknown)
    # Kits wait for both parts and ship whole; digital-only orders are delivered at once.
    walked = [p for p in planned if p.scenario in (Scenario.BUNDLE_BACKORDER, Scenario.DIGITAL)]
    assert {p.scenario for p in walked} == {Scenario.BUNDLE_BACKORDER, Scenario.DIGITAL}
    assert {states[p.order_id] for p in walked} == {"delivered"}

    # Replay every checkout record of the run, byte for byte: nothing may change.
    before = (
        await order_states(admin, ids),
        await stock_levels(admin, prefix),
        await admin.fetchval(
            "SELECT count(*) FROM stock.movements WHERE sku LIKE $1", f"{prefix}-%"
        ),
    )
    seen_before = await records_read_again(system)
    replayed = 0
    for order in planned:
        for record in [order.record, *(f.record for f in order.follow_ups)]:
            await producer.send(record.topic, record.value, key=record.key, headers=record.headers)
            replayed += 1
    await producer.flush()
    # Compare only once the order service has read every replayed record (as duplicates).
    for _ in range(300):
        if await records_read_again(system) - seen_before >= replayed:
            break
        await asyncio.sleep(0.1)
    else:
        pytest.fail(f"the order service never read the {replayed} replayed records")
    after = (
        await order_states(admin, ids),
        await stock_levels(admin, prefix),
        await admin.fetchval(
            "SELECT count(*) FROM stock.movements WHERE sku LIKE $1", f"{prefix}-%"
        ),
    )
    assert after == before


async def test_sigkill_of_order_and_stock_mid_stream_ends_like_an_undisturbed_run(kit):
    system, producer, admin = kit
    results = []
    for disturbed in (False, True):
        prefix = f"K{uuid.uuid4().hex[:6].upper()}"
        catalog = await seed(system, producer, prefix, stock=500)

        async def disturb() -> None:
            await asyncio.sleep(1.0)
            await asyncio.to_thread(system.restart, "order", signal.SIGKILL)
            await asyncio.sleep(0.5)
            await asyncio.to_thread(system.restart, "stock", signal.SIGKILL)

        planned, _ = await run_stream(
            system,
            producer,
            catalog,
            count=200,
            rate=80,
            seed_value=11,
            mix=TIMING_FREE_MIX,
            disturb=disturb if disturbed else None,
        )
        ids = [p.order_id for p in planned]
        states = await order_states(admin, ids)
        await stock_caught_up(system.kafka_bootstrap)
        assert await stock_violations(admin, prefix) == []
        results.append(([states.get(o) for o in ids], await stock_levels(admin, prefix)))
    calm, chaos = results
    assert chaos[0] == calm[0]  # every order ended the same way
    assert chaos[1] == calm[1]  # and the stock is the same
