"""The fast reliability subset (part of `make test`): poison on every input topic, one checkout
event five times, a newer schema with extra fields, one SIGKILL and restart — all under load."""

from __future__ import annotations

import asyncio
import json
import signal
import uuid
from collections import Counter
from datetime import UTC, datetime

import pytest

from stockflow.cli.checkout_sim import SOURCE as CHECKOUT_SOURCE
from stockflow.cli.checkout_sim import order_payload
from stockflow.contracts import KafkaRecord, encode
from stockflow.contracts.events.checkout import CheckoutOrderSubmitted

pytestmark = pytest.mark.system
NEGATIVE_RECEIPT = ("stock.movements.v1", "negative quantities")


def prefix(letter: str) -> str:
    return f"{letter}{uuid.uuid4().hex[:6].upper()}"


def submitted(payload: dict) -> KafkaRecord:
    return encode(CheckoutOrderSubmitted.model_validate(payload), source=CHECKOUT_SOURCE)


def raw_submitted(payload: dict, order_id: str) -> KafkaRecord:
    """A binary-mode submission whose data is NOT validated first (invalid or newer)."""
    template = submitted(order_payload(order_id, [("X-1", 1)]))
    return KafkaRecord(
        template.topic, order_id.encode(), json.dumps(payload).encode(), template.headers
    )


async def test_poison_on_every_input_topic_is_dead_lettered_once_with_its_reason(
    harness, kit, record
):
    """Poison on every input topic: exactly the poison reaches the DLQs, traffic flows."""
    wiring = kit.consumer_wiring()
    assert set(kit.POISON_TYPES) == set(wiring), (
        f"input topics changed: poison covers {sorted(kit.POISON_TYPES)}, "
        f"services consume {sorted(wiring)}"
    )
    catalog = await harness.seed(prefix("P"))
    mark = await harness.dlq_mark()
    load = kit.Load(harness.producer, catalog, seed=5).start()
    await asyncio.sleep(6)  # every internal topic now carries real events to model poison on

    poison = []
    for topic, ce_type in kit.POISON_TYPES.items():
        accept = (lambda d: d.get("kind") == "receipt") if topic == "stock.movements.v1" else None
        sample = None
        for _ in range(30):
            sample = await kit.sample_event(harness.infra.kafka_bootstrap, topic, ce_type, accept)
            if sample is not None:
                break
            await asyncio.sleep(1)
        assert sample is not None, f"no {ce_type} on {topic} to model the poison on"
        poison += kit.build_poison(topic, sample, uuid.uuid4().hex[:8])
    # The order service answers a malformed submission that still names its order.
    rejected_id = f"pzn-neg-{uuid.uuid4().hex[:8]}"
    negative_order = raw_submitted(order_payload(rejected_id, [(catalog.skus[0], -5)]), rejected_id)
    # Script and SQL text in free-text fields of a valid order: stored as text, nothing runs.
    text_id = f"ord-text-{uuid.uuid4().hex[:8]}"
    hostile_name = f"{kit.SCRIPT_TEXT} {kit.SQL_TEXT}"[:200]
    text_order = order_payload(text_id, [(catalog.skus[1], 1)])
    text_order["shipping_address"]["name"] = hostile_name
    text_order["customer_id"] = "cust-x--drop"

    for item in poison:
        item.sent = await kit.send_reliably(harness.producer, item.record)
    await kit.send_reliably(harness.producer, negative_order)
    await kit.send_reliably(harness.producer, submitted(text_order))
    # Valid traffic behind the poison on the two upstream topics only the poison test touches.
    after_sku = f"{catalog.skus[0].split('-')[0]}-AFTER"
    await harness.upsert_variant(after_sku)
    await harness.receive(after_sku, "WH-EAST", 7)
    await asyncio.sleep(8)
    order_ids = await load.stop()

    await harness.wait_for(
        lambda: harness.on_hand(after_sku), (7, 0), what="a receipt behind the poison"
    )
    states = await harness.assert_invariants([*order_ids, text_id], record)
    assert states[text_id] in kit.SETTLED_STATES
    stored = await harness.val(
        "SELECT shipping_address->>'name' FROM orders.orders WHERE order_id = $1", text_id
    )
    assert stored == hostile_name
    assert await harness.val("SELECT to_regclass('stock.levels') IS NOT NULL")
    rejected = await harness.settle([rejected_id], states=("rejected",), timeout_s=60)
    assert rejected.get(rejected_id) == "rejected", rejected

    expected = Counter()
    sha_of = {}
    for item in poison:
        for _service, group, types in wiring[item.topic]:
            if kit.wants(types, item.judged_type):
                position = (group, item.topic, item.sent.partition, item.sent.offset)
                expected[position] += 1
                sha_of[position] = item.sha256
    kind_of = {(p.topic, p.sent.partition, p.sent.offset): p.kind for p in poison}

    rows = []
    for _ in range(120):
        rows = await harness.dead_letter_rows_since(mark)
        if len(rows) >= sum(expected.values()):
            break
        await asyncio.sleep(1)
    table = Counter(r.position for r in rows)
    missing = {kind_of.get(p[1:], p) for p in expected - table}
    extra = [r for r in rows if r.position not in expected]
    assert table == expected, f"dead_letters: missing {missing}; unexpected {extra[:5]}"
    assert all(r.reason.strip() for r in rows), [r for r in rows if not r.reason.strip()]

    topic = await harness.dlq_topic_since(mark)
    assert Counter(d.position for d in topic) == expected, (
        f"DLQ topics: missing {expected - Counter(d.position for d in topic)}; "
        f"unexpected {[d for d in topic if d.position not in expected][:5]}"
    )
    reasons = {r.position: r.reason for r in rows}
    for letter in topic:
        assert letter.reason == reasons[letter.position], letter
        assert letter.value_sha256 == sha_of[letter.position], f"bytes changed: {letter}"

    by_service = Counter(r.service for r in rows)
    by_kind = Counter(kind_of[r.position[1:]] for r in rows)
    record.injected = (
        f"{len(poison)} poison records on {len(kit.POISON_TYPES)} input topics "
        f"({', '.join(sorted({p.kind for p in poison}))}), a negative-quantity submission and "
        "a valid order with script/SQL text, at the same time as the load"
    )
    record.checks.append("dlq_exactly_the_poison_sent (table + topic, reason, original bytes)")
    record.numbers.update(
        poison_sent=len(poison),
        dead_letters=len(rows),
        dead_letters_by_service=dict(sorted(by_service.items())),
        dead_letters_by_kind=dict(sorted(by_kind.items())),
        answered_by_rejection=1,
        load_seconds=round(load.duration_s, 1),
    )


async def test_same_checkout_event_five_times_is_applied_once(harness, kit, record):
    """The same checkout event sent five times: one order, one reservation, one posting."""
    catalog = await harness.seed(prefix("D"), stock=100)
    mark = await harness.dlq_mark()
    load = kit.Load(harness.producer, catalog, seed=9).start()
    hot = catalog.skus[0]
    lines = [(hot, 3), (catalog.skus[1], 2)]
    dup_id, control_id = (f"ord-dup-{uuid.uuid4().hex[:8]}", f"ord-ctl-{uuid.uuid4().hex[:8]}")
    dup = submitted(order_payload(dup_id, lines))
    for _ in range(5):
        await kit.send_reliably(harness.producer, dup)
    await kit.send_reliably(harness.producer, submitted(order_payload(control_id, lines)))
    await asyncio.sleep(4)
    states = await harness.conclude(load, mark, record, focus=[dup_id, control_id])
    assert states == {dup_id: "delivered", control_id: "delivered"}

    async def footprint(order_id: str) -> tuple:
        movements = await harness.sql(
            "SELECT kind, sku, sum(quantity) AS q, count(*) AS n FROM stock.movements "
            "WHERE order_id = $1 GROUP BY kind, sku ORDER BY kind, sku",
            order_id,
        )
        timeline = await harness.val(
            "SELECT count(*) FROM orders.timeline WHERE order_id = $1 AND outcome = 'applied'",
            order_id,
        )
        journal = await harness.sql(
            "SELECT account, sum(debit) AS d, sum(credit) AS c, count(*) AS n "
            "FROM accounting.journal_lines WHERE order_id = $1 GROUP BY account ORDER BY account",
            order_id,
        )
        shipments = await harness.val(
            "SELECT count(*) FROM fulfillment.shipments WHERE order_id = $1", order_id
        )
        return (
            [(r["kind"], r["sku"].split("-", 1)[1], r["q"], r["n"]) for r in movements],
            timeline,
            [tuple(r) for r in journal],
            shipments,
        )

    dup_print, control_print = await footprint(dup_id), await footprint(control_id)
    assert dup_print == control_print
    assert dup_print[0], "the duplicated order moved no stock"
    assert dup_print[2], "the duplicated order posted nothing"
    assert await harness.val("SELECT count(*) FROM orders.orders WHERE order_id = $1", dup_id) == 1
    record.injected = "one checkout.order.submitted.v1 record (same ce_id, same bytes) sent 5 times"
    record.checks.append("footprint(5x order) == footprint(1x control order)")
    record.numbers.update(
        duplicates_sent=5,
        movements=len(dup_print[0]),
        journal_accounts=len(dup_print[2]),
        load_orders=len(load.order_ids),
    )


async def test_newer_schema_with_extra_fields_is_accepted_by_a_v1_consumer(harness, kit, record):
    """A v1 consumer receiving a newer event with extra fields processes it normally."""
    catalog = await harness.seed(prefix("X"), stock=100)
    mark = await harness.dlq_mark()
    load = kit.Load(harness.producer, catalog, seed=13).start()
    binary_id, structured_id = (f"ord-new-{uuid.uuid4().hex[:8]}" for _ in range(2))
    newer = order_payload(binary_id, [(catalog.skus[0], 2)], customer_id="cust-chaos") | {
        "loyalty": {"tier": "gold", "points": 1200},
        "channel": "app",
        "schema_minor": 3,
    }
    newer["lines"][0]["engraving"] = "to Ada"
    newer["lines"][0]["gift_wrap"] = True
    newer["shipping_address"]["what3words"] = "index.home.raft"
    newer["payment"]["wallet"] = "applepay"
    binary = raw_submitted(newer, binary_id)
    binary.headers.append(("ce_partnerid", b"acme"))  # an unknown CloudEvents extension
    await kit.send_reliably(harness.producer, binary)

    envelope = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "upstream/checkout-v2",
        "type": "checkout.order.submitted.v1",
        "time": datetime.now(UTC).isoformat(),
        "datacontenttype": "application/json",
        "dataschema": "https://example.com/checkout/order-submitted/1.3",
        "partnerid": "acme",
        "data": {**newer, "order_id": structured_id},
    }
    await kit.send_reliably(
        harness.producer,
        KafkaRecord(
            "checkout.orders.v1",
            structured_id.encode(),
            json.dumps(envelope).encode(),
            [("content-type", b"application/cloudevents+json")],
        ),
    )
    receipt_sku = catalog.skus[2]
    receipt = {
        "receipt_id": f"r-new-{uuid.uuid4().hex[:8]}",
        "sku": receipt_sku,
        "location": "WH-WEST",
        "quantity": 11,
        "unit_cost": "4.00",
        "currency": "USD",
        "received_at": datetime.now(UTC).isoformat(),
        "pallet_id": "PAL-1",
        "temperature_c": 4.5,
        "inspection": {"by": "qa-7", "passed": True},
    }
    headers = kit.poison_headers("warehouse.goods.received.v1", receipt_sku)
    headers = [(k, b"upstream/wms-v2" if k == "ce_source" else v) for k, v in headers]
    await kit.send_reliably(
        harness.producer,
        KafkaRecord(
            "warehouse.receipts.v1", receipt_sku.encode(), json.dumps(receipt).encode(), headers
        ),
    )
    await asyncio.sleep(4)
    states = await harness.conclude(load, mark, record, focus=[binary_id, structured_id])
    assert states == {binary_id: "delivered", structured_id: "delivered"}
    assert (
        await harness.val(
            "SELECT count(*) FROM stock.movements WHERE kind = 'receipt' AND sku = $1 "
            "AND quantity = 11 AND location = 'WH-WEST'",
            receipt_sku,
        )
        == 1
    )
    record.injected = (
        "checkout.order.submitted.v1 with extra fields (top level, lines, address, payment) in "
        "binary and structured mode with unknown CE extensions; a receipt with extra fields"
    )
    record.checks.append("newer orders delivered, receipt applied once, nothing dead-lettered")
    record.numbers.update(newer_events=3, load_orders=len(load.order_ids))


async def test_sigkill_of_one_service_mid_load_and_restart(harness, kit, record):
    """SIGKILL of one service at a random moment under load, then restart."""
    catalog = await harness.seed(prefix("K"))
    mark = await harness.dlq_mark()
    victim = harness.random.choice(["stock", "order", "fulfillment", "accounting"])
    when = round(harness.random.uniform(2.0, 8.0), 1)
    load = kit.Load(harness.producer, catalog, seed=17).start()
    await asyncio.sleep(when)
    await asyncio.to_thread(harness.system.restart, victim, signal.SIGKILL)
    await asyncio.sleep(6)
    await harness.conclude(load, mark, record)
    record.injected = f"SIGKILL of {victim} {when}s into the load, then restart"
    record.numbers.update(victim=victim, killed_at_s=when, load_seconds=round(load.duration_s, 1))


async def test_negative_receipt_movement_is_refused_by_accounting(harness, kit, record):
    """A receipt movement with a negative quantity is dead-lettered by accounting."""
    sku = f"{prefix('N')}-A"
    await harness.upsert_variant(sku)
    await harness.receive(sku, "WH-EAST", 3)
    await harness.wait_for(lambda: harness.on_hand(sku), (3, 0), what="the model receipt")
    sample = await kit.sample_event(
        harness.infra.kafka_bootstrap,
        "stock.movements.v1",
        "stock.movement.recorded.v1",
        lambda d: d.get("kind") == "receipt",
    )
    assert sample is not None
    tag = uuid.uuid4().hex[:8]
    (poison,) = [
        p
        for p in kit.build_poison("stock.movements.v1", sample, tag)
        if (p.topic, p.kind) == NEGATIVE_RECEIPT
    ]
    mark = await harness.dlq_mark()
    sent = await kit.send_reliably(harness.producer, poison.record)
    record.injected = "stock.movement.recorded.v1 kind=receipt quantity=-5 on stock.movements.v1"
    record.checks.append("dead-lettered by accounting.movements; no valuation, no posting")
    position = ("accounting.movements", sent.topic, sent.partition, sent.offset)
    rows = []
    for _ in range(60):  # accounting may still be working off the earlier scenarios' load
        rows = [r for r in await harness.dead_letter_rows_since(mark) if r.position == position]
        if rows:
            break
        await asyncio.sleep(1)
    booked = await harness.val(
        "SELECT count(*) FROM accounting.journal_lines WHERE sku = $1", f"PZN-{tag}"
    )
    record.numbers.update(dead_letters=len(rows), journal_lines_booked=booked)
    assert booked == 0, f"accounting posted {booked} journal lines for a negative receipt"
    assert rows and rows[0].reason
