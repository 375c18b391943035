"""End to end: the five services on the bench infrastructure under an open-loop order stream.

Seed a catalog through the catalog API and stock through warehouse receipts, then offer orders
at stepped constant rates until the system saturates (decisions/s stop tracking the offered
rate, orders are still undecided after the drain window, or p99 explodes). Then measure
latency at 50% and 80% of the saturation throughput, and the same ramp with a hot SKU.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from benchinfra import ADMIN_TOKEN, BenchInfra, CpuMeter, Services

from stockflow.cli.checkout_sim import (
    LOAD_MIX,
    Catalog,
    OrderFactory,
    Outcomes,
    OutcomeTracker,
    percentile,
    send_orders,
)
from stockflow.cli.demo import product_payload, receive

DECISIONS = ("order.confirmed.v1", "order.rejected.v1")
SCHEMAS = ("catalog", "stock", "orders", "fulfillment", "accounting")
LOCATIONS = ("WH-EAST", "WH-WEST")


def log(msg: str) -> None:
    print(f"[bench] {msg}", flush=True)


class NotReady(Exception):
    """The saga cannot run end to end on this build (e.g. a service is not wired yet)."""


@dataclass
class Step:
    label: str
    offered_per_s: float
    seconds: float
    sent: int = 0
    send_seconds: float = 0.0
    decided: int = 0
    confirmed: int = 0
    rejected: int = 0
    decisions_per_s: float = 0.0
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    undecided: int = 0
    cpu_percent: dict[str, float] = field(default_factory=dict)
    cpu_ms_per_order: dict[str, float] = field(default_factory=dict)
    hops_ms: dict[str, dict[str, float | None]] = field(default_factory=dict)
    consumer_lag: dict[str, int] = field(default_factory=dict)
    outbox_backlog: dict[str, int] = field(default_factory=dict)
    order_ids: list[str] = field(default_factory=list, repr=False)

    @property
    def achieved_offer_per_s(self) -> float:
        return self.sent / self.send_seconds if self.send_seconds else 0.0

    def saturated(self, p99_limit_ms: float) -> bool:
        return (
            self.decisions_per_s < 0.9 * self.achieved_offer_per_s
            or self.undecided > 0
            or (self.p99_ms or 0) > p99_limit_ms
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "offered_per_s": self.offered_per_s,
            "achieved_offer_per_s": round(self.achieved_offer_per_s, 1),
            "seconds": self.seconds,
            "sent": self.sent,
            "decided": self.decided,
            "confirmed": self.confirmed,
            "rejected": self.rejected,
            "undecided_after_drain": self.undecided,
            "decisions_per_s": round(self.decisions_per_s, 1),
            "p50_ms": _r(self.p50_ms),
            "p95_ms": _r(self.p95_ms),
            "p99_ms": _r(self.p99_ms),
            "cpu_percent": self.cpu_percent,
            "cpu_ms_per_order": self.cpu_ms_per_order,
            "hops_ms": self.hops_ms,
            "consumer_lag_at_end_of_send": self.consumer_lag,
            "outbox_backlog_at_end_of_send": self.outbox_backlog,
        }


def _r(value: float | None) -> float | None:
    return round(value, 1) if value is not None else None


@dataclass
class Setup:
    uniform: Catalog
    hot: Catalog
    skus: list[str]


class EndToEnd:
    """One bench run of the saga; `Services` must already be up on the bench infra."""

    def __init__(
        self,
        infra: BenchInfra,
        services: Services,
        *,
        skus: int = 100,
        stock_per_location: int = 1_000_000,
    ) -> None:
        self.infra = infra
        self.services = services
        self.sku_count = skus
        self.stock_per_location = stock_per_location
        self.run_id = uuid.uuid4().hex[:6]
        self.outcomes = Outcomes()
        self.producer: AIOKafkaProducer | None = None
        self.tracker: OutcomeTracker | None = None
        self.admin: asyncpg.Connection | None = None
        self.all_ids: list[str] = []

    async def __aenter__(self) -> EndToEnd:
        self.producer = AIOKafkaProducer(
            bootstrap_servers=self.infra.kafka_bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            max_batch_size=1_048_576,
        )
        await self.producer.start()
        self.tracker = OutcomeTracker(self.infra.kafka_bootstrap, self.outcomes)
        await self.tracker.start()
        self.admin = await asyncpg.connect(self.infra.admin_url)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.tracker:
            await self.tracker.stop()
        if self.producer:
            await self.producer.stop()
        if self.admin:
            await self.admin.close()

    # ------------------------------------------------------------------ seeding

    async def seed(self, timeout_s: float = 60, *, standin_stock: bool = False) -> Setup:
        """Products through the catalog API, stock through warehouse receipts."""
        assert self.producer is not None
        skus = [f"BENCH-{i:04d}" for i in range(1, self.sku_count + 1)]
        prices = {sku: Decimal("10.00") for sku in skus}
        uniform = Catalog(skus=skus, prices=prices, hot_share=0.0, skew=0.0)
        hot = Catalog(skus=skus, prices=prices, hot_share=0.3, skew=1.0)
        if standin_stock:  # the stand-in reserves anything: no catalog, no receipts needed
            return Setup(uniform=uniform, hot=hot, skus=skus)
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        async with httpx.AsyncClient(base_url=self.infra.url("catalog"), timeout=30) as http:
            for sku in skus:
                payload = product_payload(
                    sku.lower(), f"Bench product {sku}", [(sku, "10.00", True, False, [])]
                )
                response = await http.post(
                    "/products", json=payload, headers={**headers, "Idempotency-Key": f"seed-{sku}"}
                )
                if response.status_code not in (200, 201, 409):
                    raise NotReady(
                        f"catalog refused {sku}: {response.status_code} {response.text[:200]}"
                    )
        before = await self._bench_on_hand()
        for sku in skus:
            for location in LOCATIONS:
                await receive(
                    self.producer,
                    sku,
                    location,
                    self.stock_per_location,
                    "4.00",
                    receipt_id=f"bench-{self.run_id}-{sku}-{location}",
                )
        await self.producer.flush()
        await self._wait_for_stock(
            before + len(skus) * len(LOCATIONS) * self.stock_per_location, timeout_s
        )
        return Setup(uniform=uniform, hot=hot, skus=skus)

    async def _bench_on_hand(self) -> int:
        assert self.admin is not None
        try:
            return int(
                await self.admin.fetchval(
                    "SELECT coalesce(sum(on_hand), 0) FROM stock.levels WHERE sku LIKE 'BENCH-%'"
                )
            )
        except asyncpg.PostgresError:
            return 0

    async def _wait_for_stock(self, on_hand: int, timeout_s: float) -> None:
        """The seeded receipts are on hand in the stock schema."""
        deadline = time.monotonic() + timeout_s
        now = 0
        while time.monotonic() < deadline:
            now = await self._bench_on_hand()
            if now >= on_hand:
                return
            await asyncio.sleep(0.5)
        raise NotReady(
            f"stock did not record the seeded receipts in {timeout_s:.0f}s "
            f"(on hand {now} of {on_hand})"
        )

    async def probe(self, catalog: Catalog, timeout_s: float = 30) -> None:
        """A handful of orders must reach a decision, or the saga is not end-to-end ready."""
        step = await self.step("probe", catalog, rate=20, seconds=1, drain_s=timeout_s)
        if step.decided < step.sent:
            raise NotReady(
                f"only {step.decided} of {step.sent} probe orders reached a decision "
                f"within {timeout_s:.0f}s"
            )

    # ------------------------------------------------------------------ measuring

    async def step(
        self, label: str, catalog: Catalog, *, rate: float, seconds: float, drain_s: float
    ) -> Step:
        """Offer `rate` orders/s for `seconds`; wait up to `drain_s` for their decisions."""
        assert self.producer is not None
        result = Step(label, rate, seconds)
        factory = OrderFactory(
            catalog, mix=LOAD_MIX, seed=hash(label) & 0xFFFF, run_id=f"{self.run_id}{label}"
        )
        groups = self.process_groups()
        cpu = CpuMeter(groups, recursive=frozenset({"postgres"}))
        whole = CpuMeter(groups, recursive=frozenset({"postgres"}))  # send and drain
        count = max(1, int(rate * seconds))
        cpu.start()
        whole.start()
        started = time.time()
        planned = await send_orders(self.producer, factory, count, rate, self.outcomes)
        sent_at = time.time()
        result.cpu_percent = cpu.stop()
        result.sent = len(planned)
        result.send_seconds = sent_at - started
        result.order_ids = [p.order_id for p in planned]
        self.all_ids += result.order_ids
        result.consumer_lag = await self.consumer_lag()
        result.outbox_backlog = await self.outbox_backlog()
        deadline = time.monotonic() + drain_s
        while time.monotonic() < deadline and self._decided(result.order_ids) < result.sent:  # noqa: ASYNC110 — decisions arrive on another task's Kafka reads
            await asyncio.sleep(0.1)
        whole.stop()
        times = self._decision_times(result.order_ids)
        result.decided = len(times)
        if result.decided:
            result.cpu_ms_per_order = {
                name: round(1000 * used / result.decided, 3)
                for name, used in whole.seconds.items()
                if name != "elapsed"
            }
            ours = sum(v for k, v in result.cpu_ms_per_order.items() if k in self.services.procs)
            result.cpu_ms_per_order["services"] = round(ours, 3)
        result.hops_ms = await self.hops(result.order_ids)
        result.undecided = result.sent - result.decided
        result.decisions_per_s = decision_rate(times, started)
        ids = set(result.order_ids)
        confirmed = sorted(
            (at - self.outcomes.submitted_at[o]) * 1000
            for (o, kind), at in self.outcomes.first_seen.items()
            if kind == "order.confirmed.v1" and o in ids
        )
        result.confirmed = len(confirmed)
        result.rejected = sum(
            1 for o in ids if (o, "order.rejected.v1") in self.outcomes.first_seen
        )
        result.p50_ms = percentile(confirmed, 0.50)
        result.p95_ms = percentile(confirmed, 0.95)
        result.p99_ms = percentile(confirmed, 0.99)
        log(
            f"{label}: offered {result.achieved_offer_per_s:7.1f}/s → decided "
            f"{result.decisions_per_s:7.1f}/s, p50 {_fmt(result.p50_ms)} p99 "
            f"{_fmt(result.p99_ms)} ms, undecided {result.undecided}"
        )
        return result

    def _decision_times(self, ids: list[str]) -> list[float]:
        seen = self.outcomes.first_seen
        times = []
        for o in ids:
            at = [seen[(o, kind)] for kind in DECISIONS if (o, kind) in seen]
            if at:
                times.append(min(at))
        return times

    def _decided(self, ids: list[str]) -> int:
        seen = self.outcomes.first_seen
        return sum(1 for o in ids if (o, DECISIONS[0]) in seen or (o, DECISIONS[1]) in seen)

    async def ramp(
        self,
        label: str,
        catalog: Catalog,
        rates: list[float],
        *,
        seconds: float,
        drain_s: float,
        p99_limit_ms: float,
    ) -> list[Step]:
        """Stepped rates until saturation; the system drains between steps."""
        steps = []
        for rate in rates:
            step = await self.step(
                f"{label}-{int(rate)}", catalog, rate=rate, seconds=seconds, drain_s=drain_s
            )
            steps.append(step)
            if step.saturated(p99_limit_ms):
                break
            await self.quiesce(timeout_s=drain_s)
        await self.quiesce(timeout_s=max(60.0, drain_s * 4))
        return steps

    async def quiesce(self, timeout_s: float) -> bool:
        """Wait until every order so far is decided and the outboxes are empty."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            backlog = await self.outbox_backlog()
            if self._decided(self.all_ids) == len(self.all_ids) and not any(backlog.values()):
                return True
            await asyncio.sleep(0.25)
        log(
            f"not quiet after {timeout_s:.0f}s: "
            f"{len(self.all_ids) - self._decided(self.all_ids)} orders undecided"
        )
        return False

    # ------------------------------------------------------------------ observing

    async def hops(self, order_ids: list[str]) -> dict[str, dict[str, float | None]]:
        """Where an order's time goes, hop by hop, from the outboxes' timestamps.

        An outbox row's `created_at` is the start of the transaction that wrote it (the batch
        that handled the input), its `sent_at` the moment the relay had Kafka's acks. So per
        confirmed order: submit → order's checkout batch → ReserveStock published → stock's
        batch → answer published → order's answer batch → order.confirmed published → seen by
        the load generator.
        """
        assert self.admin is not None
        keys = [o.encode() for o in order_ids]
        marks: dict[str, dict[str, float]] = {o: {} for o in order_ids}
        queries = (
            ("orders", "stock.commands.v1", None, ("order_batch", "command_sent")),
            ("stock", "stock.events.v1", None, ("stock_batch", "answer_sent")),
            ("orders", "orders.events.v1", DECISIONS[0], ("answer_batch", "confirmed_sent")),
        )
        try:
            for schema, topic, ce_type, (created, sent) in queries:
                type_filter = (
                    "AND EXISTS (SELECT 1 FROM jsonb_array_elements(x.headers) h "
                    "WHERE h->>0 = 'ce_type' AND decode(h->>1, 'base64') = $3::bytea)"
                    if ce_type
                    else "AND $3::bytea IS NULL"
                )
                rows = await self.admin.fetch(
                    f"""SELECT convert_from(x.key, 'UTF8') AS order_id,
                               extract(epoch FROM min(x.created_at)) AS created,
                               extract(epoch FROM min(x.sent_at)) AS sent
                        FROM {schema}.outbox x JOIN unnest($1::bytea[]) AS k(key) USING (key)
                        WHERE x.topic = $2 {type_filter}
                        GROUP BY x.key""",
                    keys,
                    topic,
                    ce_type.encode() if ce_type else None,
                )
                for row in rows:
                    mark = marks[row["order_id"]]
                    mark[created] = float(row["created"])
                    if row["sent"] is not None:
                        mark[sent] = float(row["sent"])
        except asyncpg.PostgresError as exc:
            log(f"hop breakdown unavailable: {exc!r}")
            return {}
        chain = [
            "submitted",
            "order_batch",
            "command_sent",
            "stock_batch",
            "answer_sent",
            "answer_batch",
            "confirmed_sent",
            "seen",
        ]
        spans: dict[str, list[float]] = {f"{a}→{b}": [] for a, b in itertools.pairwise(chain)}
        for order_id, mark in marks.items():
            mark["submitted"] = self.outcomes.submitted_at.get(order_id, 0.0)
            seen = self.outcomes.first_seen.get((order_id, DECISIONS[0]))
            if seen is None or not all(name in mark for name in chain[:-1]):
                continue
            mark["seen"] = seen
            for a, b in itertools.pairwise(chain):
                spans[f"{a}→{b}"].append((mark[b] - mark[a]) * 1000)
        return {
            name: {
                "p50": _r(percentile(sorted(values), 0.50)),
                "p99": _r(percentile(sorted(values), 0.99)),
                "n": len(values),
            }
            for name, values in spans.items()
        }

    def process_groups(self) -> dict[str, list[int]]:
        groups = {name: [pid] for name, pid in self.services.pids().items()}
        if pid := self.infra.kafka_pid():
            groups["kafka"] = [pid]
        if pid := self.infra.postgres_pid():
            groups["postgres"] = [pid]
        groups["load generator"] = [os.getpid()]
        return groups

    async def outbox_backlog(self) -> dict[str, int]:
        assert self.admin is not None
        backlog = {}
        for schema in SCHEMAS:
            try:
                backlog[schema] = await self.admin.fetchval(
                    f"SELECT count(*) FROM {schema}.outbox WHERE sent_at IS NULL"
                )
            except asyncpg.PostgresError:
                continue
        return backlog

    async def consumer_lag(self) -> dict[str, int]:
        """Per consumer group: end offsets minus committed offsets, summed over partitions."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.infra.kafka_bootstrap)
        probe = AIOKafkaConsumer(bootstrap_servers=self.infra.kafka_bootstrap, group_id=None)
        await admin.start()
        await probe.start()
        lag: dict[str, int] = {}
        try:
            groups = [g[0] for g in await admin.list_consumer_groups()]
            for group in sorted(g for g in groups if not g.startswith("bench")):
                offsets = await admin.list_consumer_group_offsets(group)
                committed = {tp: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}
                if not committed:
                    continue
                ends = await probe.end_offsets(list(committed))
                lag[group] = sum(max(ends[tp] - off, 0) for tp, off in committed.items())
        except Exception as exc:  # noqa: BLE001 — lag is an observation; never fail the run on it
            log(f"consumer lag unavailable: {exc!r}")
        finally:
            await probe.stop()
            await admin.close()
        return lag


def decision_rate(times: list[float], started: float) -> float:
    """Decisions per second in the middle 90% of the step's decisions.

    Keeping up, the decisions are spread like the submissions (the offered rate); saturated,
    they are spread by the system's own pace (its capacity). Latency shifts them both ends
    alike and its tail is cut off, so a short step is not mistaken for a saturated one.
    """
    if len(times) < 20:
        return len(times) / max(max(times, default=started) - started, 1e-3)
    times = sorted(times)
    low, high = times[len(times) * 5 // 100], times[len(times) * 95 // 100]
    return (len(times) * 90 / 100) / max(high - low, 1e-3)


def _fmt(value: float | None) -> str:
    return f"{value:.0f}" if value is not None else "-"
