"""A simulated upstream checkout: realistic orders at a constant arrival rate, and their outcomes.

Used by `stockflow demo`, the benchmark and the reliability suite. Open loop: orders are sent
on a fixed schedule whatever the system's response time, so slow answers cannot hide latency.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from stockflow.cli.common import kafka_security
from stockflow.contracts import Event, InvalidMessage, KafkaRecord, decode, encode
from stockflow.contracts.events.checkout import (
    CancelLine,
    CheckoutOrderCancelRequested,
    CheckoutOrderLinesCancelRequested,
    CheckoutOrderSubmitted,
    CheckoutPaymentConfirmed,
)

SOURCE = "stockflow/checkout-simulator"
TERMINAL_EVENTS = {
    "order.rejected.v1",
    "order.cancelled.v1",
    "order.delivered.v1",
    "order.returned.v1",
}
SETTLED_EVENTS = TERMINAL_EVENTS | {"order.confirmed.v1"}


class Scenario(StrEnum):
    NORMAL = "normal"
    PENDING_PAID = "payment pending, then paid"
    PENDING_UNPAID = "payment pending, never paid"
    CANCELLED = "cancelled by the customer"
    LINE_CANCEL = "one unit of a line cancelled after confirmation"
    OUT_OF_STOCK = "out-of-stock sku"
    BACKORDER = "backorderable sku, short"
    BUNDLE_BACKORDER = "backorderable bundle, short"
    DIGITAL = "digital goods only"
    UNKNOWN_SKU = "unknown sku"
    INVALID = "invalid order (quantity 0)"


DEMO_MIX: dict[Scenario, float] = {
    Scenario.NORMAL: 0.70,
    Scenario.PENDING_PAID: 0.05,
    Scenario.PENDING_UNPAID: 0.04,
    Scenario.CANCELLED: 0.06,
    Scenario.OUT_OF_STOCK: 0.05,
    Scenario.BACKORDER: 0.04,
    Scenario.UNKNOWN_SKU: 0.03,
    Scenario.INVALID: 0.03,
}
LOAD_MIX: dict[Scenario, float] = {Scenario.NORMAL: 1.0}


def with_extra_scenarios(
    mix: Mapping[Scenario, float], extra: Mapping[Scenario, float]
) -> dict[Scenario, float]:
    """`mix` with the `extra` shares added, taken from its normal orders."""
    taken = sum(extra.values())
    if taken > mix.get(Scenario.NORMAL, 0):
        raise ValueError(f"the extra scenarios take {taken:.2f}, more than the normal orders")
    return {
        **mix,
        Scenario.NORMAL: mix.get(Scenario.NORMAL, 0) - taken,
        **{scenario: share for scenario, share in extra.items() if share},
    }


@dataclass(frozen=True)
class Catalog:
    """The SKUs the simulator may order and what it knows of them."""

    skus: Sequence[str]
    prices: dict[str, Decimal]
    out_of_stock: Sequence[str] = ()
    backorderable: Sequence[str] = ()
    backorderable_bundles: Sequence[str] = ()  # ordered by BUNDLE_BACKORDER, 3 to 6 at a time
    digital: Sequence[str] = ()  # untracked skus: what a DIGITAL order buys
    hot_share: float = 0.2  # share of lines that go to the first (hot) sku
    skew: float = 1.0  # Zipf exponent of the other lines' popularity; 0 spreads them uniformly


@dataclass
class FollowUp:
    delay_s: float
    record: KafkaRecord


@dataclass
class PlannedOrder:
    order_id: str
    scenario: Scenario
    record: KafkaRecord
    follow_ups: list[FollowUp] = field(default_factory=list)

    @property
    def reallocates(self) -> bool:
        """The order asked for its warehouse exceptions to be reallocated."""
        policy = json.loads(self.record.value).get("fulfillment_exception_policy")
        return bool(policy == "reallocate")

    def lines(self) -> list[tuple[str, int]]:
        """(sku, quantity) of each line as sent (an invalid order's too)."""
        return [(line["sku"], line["quantity"]) for line in json.loads(self.record.value)["lines"]]


class OrderFactory:
    """Deterministic (seeded) stream of orders: 1 to 5 lines, skewed popularity with a hot SKU."""

    def __init__(  # noqa: PLR0913 -- the stream's knobs, keyword-only after the catalog
        self,
        catalog: Catalog,
        *,
        mix: dict[Scenario, float] | None = None,
        seed: int = 7,
        currency: str = "USD",
        run_id: str | None = None,
        payment_deadline_s: float = 8.0,
        reallocate_share: float = 0.0,
    ) -> None:
        """`reallocate_share` of the orders ask for `reallocate` as their fulfillment exception
        policy (the others take the merchant's default)."""
        self.catalog = catalog
        self.reallocate_share = reallocate_share
        self.mix = mix or DEMO_MIX
        self.random = random.Random(seed)
        self.currency = currency
        self.run_id = run_id or uuid.uuid4().hex[:8]
        self.payment_deadline_s = payment_deadline_s
        self.count = 0
        weights = [1.0 / (rank + 1) ** catalog.skew for rank in range(len(catalog.skus))]
        self._weights = weights

    def _pick_sku(self) -> str:
        if self.random.random() < self.catalog.hot_share:
            return self.catalog.skus[0]
        return self.random.choices(self.catalog.skus, weights=self._weights)[0]

    def _lines(self, scenario: Scenario) -> list[tuple[str, int]]:
        skus: list[str] = []
        for _ in range(self.random.randint(1, 5)):
            sku = self._pick_sku()
            if sku not in skus:
                skus.append(sku)
        if scenario is Scenario.OUT_OF_STOCK and self.catalog.out_of_stock:
            skus[0] = self.random.choice(self.catalog.out_of_stock)
        elif scenario is Scenario.BACKORDER and self.catalog.backorderable:
            skus = [self.random.choice(self.catalog.backorderable)]
        elif scenario is Scenario.BUNDLE_BACKORDER and self.catalog.backorderable_bundles:
            skus = [self.random.choice(self.catalog.backorderable_bundles)]
        elif scenario is Scenario.DIGITAL and self.catalog.digital:
            skus = [self.random.choice(self.catalog.digital)]
        elif scenario is Scenario.UNKNOWN_SKU:
            skus[0] = f"NOPE-{self.random.randint(1000, 9999)}"
        lines = []
        for sku in dict.fromkeys(skus):
            quantity = self.random.choice((1, 1, 1, 2, 2, 3))
            if scenario in (Scenario.BACKORDER, Scenario.BUNDLE_BACKORDER):
                quantity = self.random.randint(3, 6)
            lines.append((sku, quantity))
        if scenario is Scenario.LINE_CANCEL:
            lines[0] = (lines[0][0], max(2, lines[0][1]))  # one unit cancelled, the rest ships
        return lines

    def next(self, now: datetime | None = None) -> PlannedOrder:
        now = now or datetime.now(UTC)
        self.count += 1
        scenario = self.random.choices(list(self.mix), weights=list(self.mix.values()))[0]
        order_id = f"ord-{self.run_id}-{self.count:06d}"
        pending = scenario in (Scenario.PENDING_PAID, Scenario.PENDING_UNPAID)
        payment = {
            "status": "pending" if pending else "authorized",
            "reference": f"pay-{order_id}",
            "deadline": (now + timedelta(seconds=self.payment_deadline_s)).isoformat()
            if pending
            else None,
        }
        payload = order_payload(
            order_id,
            self._lines(scenario),
            prices=self.catalog.prices,
            customer_id=f"cust-{self.random.randint(1, 5000)}",
            currency=self.currency,
            payment=payment,
        ) | {"placed_at": now.isoformat()}
        if self.reallocate_share and self.random.random() < self.reallocate_share:
            payload["fulfillment_exception_policy"] = "reallocate"
        if scenario is Scenario.INVALID:
            payload["lines"][0]["quantity"] = 0
            record = raw_record(CheckoutOrderSubmitted, order_id, payload)
        else:
            record = encode(CheckoutOrderSubmitted.model_validate(payload), source=SOURCE)
        planned = PlannedOrder(order_id, scenario, record)
        if scenario is Scenario.PENDING_PAID:
            paid = CheckoutPaymentConfirmed(order_id=order_id, reference=f"pay-{order_id}")
            planned.follow_ups.append(
                FollowUp(self.random.uniform(0.5, 2.0), encode(paid, source=SOURCE))
            )
        if scenario is Scenario.CANCELLED:
            cancel = CheckoutOrderCancelRequested(order_id=order_id, reason="changed my mind")
            planned.follow_ups.append(
                FollowUp(self.random.uniform(0.2, 1.5), encode(cancel, source=SOURCE))
            )
        if scenario is Scenario.LINE_CANCEL:
            delay_s = self.random.uniform(0.8, 1.6)
            planned.follow_ups.append(FollowUp(delay_s, line_cancel(order_id)))
        return planned


def line_cancel(order_id: str) -> KafkaRecord:
    """The customer takes one unit off the order's first line (sent once confirmation is likely
    and before the warehouse picks: the autopilot picks shipments a few seconds old)."""
    request = CheckoutOrderLinesCancelRequested(
        order_id=order_id,
        request_id=f"lc-{order_id}",
        lines=[CancelLine(line_id="L1", quantity=1)],
        reason="customer removed one unit",
    )
    return encode(request, source=SOURCE)


def order_payload(
    order_id: str,
    lines: Sequence[tuple[str, int]],
    *,
    prices: Mapping[str, Decimal] | None = None,
    customer_id: str = "cust-sim",
    currency: str = "USD",
    payment: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A checkout.order.submitted.v1 payload placed now, not validated (callers break it on
    purpose).

    `lines` are (sku, quantity); a sku without a price in `prices` sells at 10.00."""
    return {
        "order_id": order_id,
        "customer_id": customer_id,
        "currency": currency,
        "placed_at": datetime.now(UTC).isoformat(),
        "lines": [
            {
                "line_id": f"L{index}",
                "sku": sku,
                "quantity": quantity,
                "unit_price": str((prices or {}).get(sku, Decimal("10.00"))),
            }
            for index, (sku, quantity) in enumerate(lines, start=1)
        ],
        "shipping_address": {
            "name": "Ada Lovelace",
            "line1": "12 Analytical Row",
            "city": "London",
            "postal_code": "N1 9GU",
            "country": "GB",
        },
        "payment": payment or {"status": "authorized", "reference": f"pay-{order_id}"},
    }


def raw_record(model: type[Event], key: str, payload: dict) -> KafkaRecord:
    """A binary-mode CloudEvent whose data was NOT validated (to send invalid input on purpose)."""
    template = encode(CheckoutOrderCancelRequested(order_id=key, reason="x"), source=SOURCE)
    headers = [
        (name, model.event_type.encode() if name == "ce_type" else value)
        for name, value in template.headers
    ]
    return KafkaRecord(model.topic, key.encode(), json.dumps(payload).encode(), headers)


@dataclass
class Outcomes:
    """What the order service said about each order, and when (seconds since the epoch)."""

    submitted_at: dict[str, float] = field(default_factory=dict)
    first_seen: dict[tuple[str, str], float] = field(default_factory=dict)
    last_event: dict[str, str] = field(default_factory=dict)
    line_cancel_reasons: Counter = field(default_factory=Counter)  # order.line_cancelled.v1
    warehouse_paths: dict[str, set[str]] = field(default_factory=dict)  # path -> order ids

    def record(self, order_id: str, event_type: str, at: float) -> None:
        self.first_seen.setdefault((order_id, event_type), at)
        self.last_event[order_id] = event_type

    def settled(self, order_ids: Sequence[str]) -> int:
        return sum(1 for o in order_ids if any((o, t) in self.first_seen for t in SETTLED_EVENTS))

    def terminal(self, order_ids: Sequence[str]) -> int:
        return sum(1 for o in order_ids if any((o, t) in self.first_seen for t in TERMINAL_EVENTS))

    def latencies_ms(self, event_type: str = "order.confirmed.v1") -> list[float]:
        return sorted(
            (at - self.submitted_at[order_id]) * 1000
            for (order_id, kind), at in self.first_seen.items()
            if kind == event_type and order_id in self.submitted_at
        )

    def walked(self, path: str) -> set[str]:
        """The orders a warehouse path (`warehouse_path`) was seen for."""
        return self.warehouse_paths.get(path, set())

    def ended_as(self, order_id: str) -> str:
        """The order's terminal event (a refusal may follow it), else its last event."""
        ends = [t for (o, t) in self.first_seen if o == order_id and t in TERMINAL_EVENTS]
        return ends[0] if ends else self.last_event.get(order_id, "(none yet)")

    def final_states(self, order_ids: Sequence[str]) -> Counter:
        return Counter(self.ended_as(o) for o in order_ids)


def percentile(sorted_values: Sequence[float], fraction: float) -> float | None:
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


class OutcomeTracker:
    """Reads orders.events.v1 from where it ends now, so it sees only this run's answers."""

    def __init__(
        self, bootstrap_servers: str, outcomes: Outcomes, topic: str = "orders.events.v1"
    ) -> None:
        self.consumer = AIOKafkaConsumer(
            **kafka_security(),
            bootstrap_servers=bootstrap_servers,
            group_id=None,
            enable_auto_commit=False,
        )
        self.outcomes = outcomes
        self.topic = topic
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        await self.consumer.start()
        partitions = [
            TopicPartition(self.topic, p)
            for p in self.consumer.partitions_for_topic(self.topic) or ()
        ]
        if not partitions:
            partitions = [TopicPartition(self.topic, p) for p in (await self._partitions())]
        self.consumer.assign(partitions)
        ends = await self.consumer.end_offsets(partitions)
        for tp, offset in ends.items():
            self.consumer.seek(tp, offset)
        self._task = asyncio.create_task(self._run())

    async def _partitions(self) -> list[int]:
        await self.consumer._client.force_metadata_update()
        return sorted(self.consumer.partitions_for_topic(self.topic) or ())

    async def _run(self) -> None:
        while True:
            batch = await self.consumer.getmany(timeout_ms=200)
            now = time.time()
            for records in batch.values():
                for record in records:
                    try:
                        cloud = decode(record.value, record.headers)
                    except InvalidMessage:
                        continue  # not ours to judge here
                    order_id = record.key.decode() if record.key else cloud.subject or ""
                    self.outcomes.record(order_id, cloud.type, now)
                    if cloud.type == "order.line_cancelled.v1":
                        self.outcomes.line_cancel_reasons[_data(cloud).get("reason", "?")] += 1
                    if path := warehouse_path(cloud.type, cloud):
                        self.outcomes.warehouse_paths.setdefault(path, set()).add(order_id)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.consumer.stop()


SHORT_PICK = "short pick"
WAREHOUSE_CANCEL = "warehouse cancel"
LINE_CANCEL_DROP = "line cancel"


def warehouse_path(event_type: str, cloud: Any) -> str | None:
    """Which path a fulfillment report walked: a short pick (shortened on its own), the
    warehouse cancelling a shipment, or units dropped for a lines-cancel request."""
    if event_type not in ("fulfillment.shipment.shortened.v1", "fulfillment.shipment.cancelled.v1"):
        return None
    data = _data(cloud)
    if data.get("cancel_request_id"):
        return LINE_CANCEL_DROP
    if event_type == "fulfillment.shipment.shortened.v1":
        return SHORT_PICK
    return WAREHOUSE_CANCEL if str(data.get("reason") or "").startswith("warehouse") else None


def _data(cloud: Any) -> dict[str, Any]:
    data = cloud.data
    if isinstance(data, bytes | bytearray):
        data = json.loads(data)
    return data if isinstance(data, dict) else {}


async def send_orders(
    producer: AIOKafkaProducer,
    factory: OrderFactory,
    count: int,
    rate_per_s: float,
    outcomes: Outcomes,
    *,
    duplicate_every: int = 0,
) -> list[PlannedOrder]:
    """Send `count` orders at a constant arrival rate; follow-ups (payments, cancels) on time."""
    planned: list[PlannedOrder] = []
    follow_ups: list[asyncio.Task] = []
    started = time.perf_counter()
    pending_acks: list[asyncio.Future] = []
    for index in range(count):
        due = started + index / rate_per_s
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        order = factory.next()
        outcomes.submitted_at[order.order_id] = time.time()
        pending_acks.append(await _send(producer, order.record))
        if duplicate_every and index % duplicate_every == 0:
            pending_acks.append(await _send(producer, order.record))  # same ce_id: a redelivery
        for follow_up in order.follow_ups:
            follow_ups.append(asyncio.create_task(_later(producer, follow_up)))
        planned.append(order)
        if len(pending_acks) >= 500:
            await asyncio.gather(*pending_acks)
            pending_acks.clear()
    await asyncio.gather(*pending_acks)
    await asyncio.gather(*follow_ups)
    return planned


async def _send(producer: AIOKafkaProducer, record: KafkaRecord) -> asyncio.Future:
    return await producer.send(record.topic, record.value, key=record.key, headers=record.headers)


async def _later(producer: AIOKafkaProducer, follow_up: FollowUp) -> None:
    await asyncio.sleep(follow_up.delay_s)
    await (await _send(producer, follow_up.record))
