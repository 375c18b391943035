"""The reliability suite's harness: load in the background, faults, invariants, DLQ, results.

Every scenario runs the five real service processes (the `system` fixture) against real Kafka
and PostgreSQL, drives orders with the checkout simulator's `OrderFactory` at a modest rate,
injects one kind of fault, and then asserts three things:

- `assert_invariants`: the system checker (`stockflow.cli.check.check_system`, or the bench's
  SQL checks until it exists) finds nothing, every submitted order settled, each event was
  applied once and the journal balances;
- the dead letters of the scenario are exactly the poison it sent (none for the others), each
  with its reason, on the service's DLQ topic and in its `dead_letters` table;
- the scenario's own expectation (exact stock, one order per duplicate, ...).

Each test records what it injected, what it checked and its numbers into
chaos-results/latest.json (`record` fixture); `tests/chaos/report.py` turns that into the table
of the top-level README.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib.util
import inspect
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata

from stockflow.cli.checkout_sim import (
    DEMO_MIX,
    Catalog,
    OrderFactory,
    PlannedOrder,
    Scenario,
    with_extra_scenarios,
)
from stockflow.contracts import EVENT_TYPES, KafkaRecord, encode
from stockflow.runtime.outbox import build_producer
from stockflow.runtime.testing.factories import goods_received, variant
from stockflow.runtime.testing.plugin import reader_from_start

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "chaos-results" / "latest.json"
SERVICES = ("catalog", "stock", "order", "fulfillment", "accounting")
# The demo's mix, and orders of a short backorderable bundle, of digital goods only, and orders
# that cancel a unit once confirmed (it lands before picking, or is refused and ships).
LOAD_MIX = with_extra_scenarios(
    DEMO_MIX,
    {Scenario.BUNDLE_BACKORDER: 0.03, Scenario.DIGITAL: 0.03, Scenario.LINE_CANCEL: 0.04},
)
# Every Nth order the warehouse also receives a few units, and re-sends that receipt (same
# receipt_id, new event id) as a WMS retries: applied once.
LOAD_RECEIPT_EVERY = 10
SCHEMAS = {s: ("orders" if s == "order" else s) for s in SERVICES}
DLQ_TOPICS = {s: f"{SCHEMAS[s]}.dlq.v1" for s in SERVICES}
LOCATIONS = ("WH-EAST", "WH-WEST")
SOURCE = "stockflow/chaos"
# A modest arrival rate: the machine is shared, and the point is faults, not throughput.
LOAD_RATE = float(os.environ.get("STOCKFLOW_CHAOS_RATE", "8"))
SEED = int(os.environ.get("STOCKFLOW_CHAOS_SEED", "20261127"))  # kill moments, victims
SETTLE_TIMEOUT_S = 180.0
TERMINAL_STATES = ("delivered", "rejected", "cancelled", "returned")


def _bench_invariants():
    """tests/bench/invariants.py by path (tests/bench is not a package)."""
    path = ROOT / "tests" / "bench" / "invariants.py"
    spec = importlib.util.spec_from_file_location("stockflow_bench_invariants", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


BENCH = _bench_invariants()
SETTLED_STATES: tuple[str, ...] = BENCH.SETTLED_STATES


@dataclass(frozen=True)
class Finding:
    """One invariant violation, whichever checker found it."""

    invariant: str
    subject: str
    detail: str

    def __str__(self) -> str:
        return f"{self.invariant}: {self.subject}: {self.detail}"


async def system_violations(admin_dsn: str, order_ids: list[str]) -> tuple[str, list[Finding]]:
    """THE adapter to the system checker: the one place to change when it evolves.

    Calls `stockflow.cli.check.check_system(admin_dsn, settle_seconds=...)` when importable
    (sync or async); otherwise runs tests/bench/invariants.py's SQL checks. Returns the name of
    the checker used and what it found.
    """
    try:
        from stockflow.cli.check import check_system
    except ImportError:
        check_system = None
    if check_system is not None:
        if inspect.iscoroutinefunction(check_system):
            found = await check_system(admin_dsn, settle_seconds=60.0)
        else:  # a sync entry point may run its own event loop: keep it off ours
            found = await asyncio.to_thread(check_system, admin_dsn, settle_seconds=60.0)
        return "stockflow.cli.check", [
            Finding(str(v.invariant), str(v.subject), str(v.detail)) for v in found
        ]
    conn = await asyncpg.connect(admin_dsn)
    try:
        results = await BENCH.run_checks(conn, order_ids, limit=20)
    finally:
        await conn.close()
    findings = []
    for name, result in results.items():
        if result.get("error"):
            findings.append(Finding(name, "(query)", result["error"]))
        for example in result.get("examples", []):
            subject, _, detail = example.partition(": ")
            findings.append(Finding(name, subject, detail))
    return "tests/bench/invariants.py", findings


# Checks of this suite, run after the system checker whichever it is. Each returns one row
# per violation (subject, detail). `$1` is the scenario's order ids.
SUITE_CHECKS: dict[str, str] = {
    # A saga input (event or timer) changes an order at most once.
    "saga_input_applied_once": """
        SELECT order_id || ' ' || cause_id AS subject, count(*) || ' applied rows' AS detail
        FROM orders.timeline WHERE outcome = 'applied' AND order_id = ANY($1::text[])
        GROUP BY order_id, cause_id HAVING count(*) > 1""",
    # One stock event makes one movement of a kind per (sku, location, order).
    "movement_applied_once": """
        SELECT cause_event_id || ' ' || kind || ' ' || sku || '@' || location AS subject,
               count(*) || ' movements' AS detail
        FROM stock.movements WHERE order_id = ANY($1::text[])
        GROUP BY cause_event_id, kind, sku, location, order_id HAVING count(*) > 1""",
    # An order never has more of a sku reserved than it ordered (a reservation applied twice).
    "order_reserved_once": """
        SELECT order_id || ' ' || sku AS subject,
               sum(quantity) FILTER (WHERE kind = 'reservation') || ' reserved of '
               || max(requested) || ' ordered' AS detail
        FROM stock.movements m
        JOIN (SELECT o.order_id, l->>'sku' AS sku, sum((l->>'quantity')::int) AS requested
              FROM orders.orders o,
                   jsonb_array_elements(coalesce(o.saga->'lines', '[]'::jsonb)) l
              WHERE o.order_id = ANY($1::text[]) GROUP BY 1, 2) r USING (order_id, sku)
        GROUP BY order_id, sku
        HAVING coalesce(sum(quantity) FILTER (WHERE kind = 'reservation'), 0) > max(requested)""",
    "journal_balanced": """
        SELECT e.entry_id::text AS subject,
               format('debits %s credits %s lines %s', coalesce(sum(l.debit), 0),
                      coalesce(sum(l.credit), 0), count(l.entry_id)) AS detail
        FROM accounting.journal_entries e
        LEFT JOIN accounting.journal_lines l USING (entry_id)
        GROUP BY e.entry_id
        HAVING coalesce(sum(l.debit), 0) <> coalesce(sum(l.credit), 0) OR count(l.entry_id) < 2""",
    "journal_posted_once_per_cause": """
        SELECT e.cause_type || ' ' || e.cause_id AS subject,
               count(*) || ' entries, ' || count(DISTINCT e.entry_id) || ' distinct' AS detail
        FROM accounting.journal_entries e
        JOIN accounting.journal_lines l USING (entry_id)
        WHERE l.order_id = ANY($1::text[])
        GROUP BY e.cause_type, e.cause_id, l.order_id, l.account, l.sku
        HAVING count(*) > count(DISTINCT e.entry_id)""",
}


# ----------------------------------------------------------------------------- results


@dataclass
class ScenarioRecord:
    """What one scenario injected, what it checked, and its numbers (for the README)."""

    scenario: str
    injected: str
    checks: list[str] = field(default_factory=list)
    numbers: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.time)


_RECORDS: dict[str, tuple[ScenarioRecord, Any]] = {}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if not hasattr(item, "chaos_reports"):
        item.chaos_reports = {}
    item.chaos_reports[report.when] = report
    return report


@pytest.fixture(autouse=True)
def every_service_running(request):
    """A scenario starts with all five services up, whatever the one before it left behind (a
    failed scenario may have killed one): one failure must not fail every scenario after it."""
    if "system" in request.fixturenames:
        system = request.getfixturevalue("system")
        for service, proc in list(system.procs.items()):
            if proc.poll() is not None:
                system.start(service)


@pytest.fixture(autouse=True)
def no_load_outlives_its_scenario():
    """A scenario that fails before `load.stop()` must not leave orders flowing into the next."""
    yield
    for load in list(Load.running):
        load.abandon()


@pytest.fixture
def record(request):
    """`record.injected = ...; record.checks += [...]; record.numbers[...] = ...`."""
    entry = ScenarioRecord(scenario=request.node.name, injected="")
    _RECORDS[request.node.nodeid] = (entry, request.node)
    return entry


def _row(entry: ScenarioRecord, item) -> dict[str, Any]:
    reports = getattr(item, "chaos_reports", {})
    failed = [r for r in reports.values() if r.failed]
    call = reports.get("call")
    if any(hasattr(r, "wasxfail") for r in reports.values()):
        result = "xfail (known bug)"
    elif failed:
        result = "FAILED"
    elif call is not None and call.passed:
        result = "passed"
    else:
        result = "skipped"
    doc = (item.function.__doc__ or "").strip().splitlines()
    row = {
        "scenario": entry.scenario,
        "title": doc[0] if doc else entry.scenario,
        "injected": entry.injected,
        "checks": entry.checks,
        "numbers": entry.numbers,
        "result": result,
        "marker": "chaos" if item.get_closest_marker("chaos") else "fast",
        "duration_s": round(sum(r.duration for r in reports.values()), 1),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if failed:
        row["failure"] = str(failed[0].longrepr)[-800:]
    return row


def pytest_sessionfinish(session, exitstatus):
    rows = [_row(entry, item) for entry, item in _RECORDS.values()]
    if not rows:
        return
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    previous: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        previous = json.loads(RESULTS.read_text())
    # Merge by scenario: a `make test` run (the fast subset) refreshes its rows and keeps the
    # last results of the long scenarios, each row saying when it ran.
    merged = {row["scenario"]: row for row in previous.get("scenarios", [])}
    merged.update({row["scenario"]: row for row in rows})
    RESULTS.write_text(
        json.dumps(
            {
                "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "profile": os.environ.get("STOCKFLOW_TEST_PROFILE", "test"),
                "load_rate_per_s": LOAD_RATE,
                "seed": SEED,
                "scenarios": sorted(merged.values(), key=lambda r: (r["marker"], r["scenario"])),
            },
            indent=2,
        )
        + "\n"
    )


# ----------------------------------------------------------------------------- load


@dataclass
class Sent:
    topic: str
    partition: int
    offset: int


async def send_reliably(producer: AIOKafkaProducer, record: KafkaRecord) -> Sent:
    """Send until the broker acknowledges, as an upstream with a retry policy does."""
    delay = 0.2
    deadline = time.monotonic() + 240
    while True:
        try:
            future = await producer.send(
                record.topic, record.value, key=record.key, headers=record.headers
            )
            meta = await future
            return Sent(meta.topic, meta.partition, meta.offset)
        except (KafkaError, TimeoutError) as exc:
            if time.monotonic() > deadline:
                raise AssertionError(f"broker never acknowledged a record: {exc!r}") from exc
            await asyncio.sleep(delay)
            delay = min(delay * 2, 3.0)


class Load:
    """Orders at a constant rate in the background (open loop), each sent until acknowledged."""

    running: ClassVar[set[Load]] = set()  # stopped after each scenario, even a failed one

    def __init__(
        self,
        producer: AIOKafkaProducer,
        catalog: Catalog,
        *,
        rate: float = LOAD_RATE,
        seed: int = 1,
        mix=None,
        payment_deadline_s: float = 3.0,
    ) -> None:
        self.producer = producer
        self.catalog = catalog
        self.factory = OrderFactory(
            catalog, mix=mix or LOAD_MIX, seed=seed, payment_deadline_s=payment_deadline_s
        )
        self.rate = rate
        self.planned: list[PlannedOrder] = []
        self.acked: set[str] = set()
        self._tasks: set[asyncio.Task] = set()
        self._runner: asyncio.Task | None = None
        self._stop = asyncio.Event()
        self.started = 0.0
        self.duration_s = 0.0

    @property
    def order_ids(self) -> list[str]:
        return [p.order_id for p in self.planned]

    def start(self) -> Load:
        self.started = time.monotonic()
        self._runner = asyncio.create_task(self._run())
        Load.running.add(self)
        return self

    async def _run(self) -> None:
        index = 0
        while not self._stop.is_set():
            due = self.started + index / self.rate
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), max(0.0, due - time.monotonic()))
                break
            order = self.factory.next()
            self.planned.append(order)
            self._spawn(self._send(order))
            if index % LOAD_RECEIPT_EVERY == LOAD_RECEIPT_EVERY - 1:
                self._spawn(self._receive_retried(index))
            index += 1

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _receive_retried(self, index: int) -> None:
        """A receipt of a few units, sent twice under one receipt_id (new event id each)."""
        sku = self.catalog.skus[index % len(self.catalog.skus)]
        location = LOCATIONS[index % len(LOCATIONS)]
        receipt_id = f"load-{self.factory.run_id}-{index}"
        event = goods_received(sku, location, 3, unit_cost="4.00", receipt_id=receipt_id)
        for _ in range(2):
            await send_reliably(self.producer, encode(event, source=SOURCE))

    async def _send(self, order: PlannedOrder) -> None:
        await send_reliably(self.producer, order.record)
        self.acked.add(order.order_id)
        for follow_up in order.follow_ups:
            await asyncio.sleep(follow_up.delay_s)
            await send_reliably(self.producer, follow_up.record)

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    async def stop(self) -> list[str]:
        """Stop sending new orders; wait until every started order and follow-up is sent."""
        self._stop.set()
        if self._runner is not None:
            await self._runner
        while self._tasks:
            await asyncio.gather(*list(self._tasks))
        self.duration_s = time.monotonic() - self.started
        Load.running.discard(self)
        return self.order_ids

    def abandon(self) -> None:
        """A failed scenario's load: stop sending at once, follow-ups included."""
        self._stop.set()
        for task in [self._runner, *self._tasks]:
            if task is not None:
                task.cancel()
        Load.running.discard(self)

    async def run_for(self, seconds: float) -> list[str]:
        self.start()
        await asyncio.sleep(seconds)
        return await self.stop()


# ----------------------------------------------------------------------------- dead letters


@dataclass(frozen=True)
class DeadLetter:
    service: str
    group: str
    topic: str
    partition: int
    offset: int
    reason: str
    value_sha256: str = ""

    @property
    def position(self) -> tuple[str, str, int, int]:
        return (self.group, self.topic, self.partition, self.offset)


@dataclass
class DlqMark:
    """Where the DLQ topics ended and which dead_letters rows existed when a scenario began."""

    offsets: dict[str, int]
    rows: set[tuple[str, str, int, int]]


# ----------------------------------------------------------------------------- harness


class Harness:
    """What every scenario needs: the running system, a producer, SQL, DLQ, invariants."""

    def __init__(self, system, infra, producer: AIOKafkaProducer) -> None:
        self.system = system
        self.infra = infra
        self.producer = producer
        self.dsn = infra.admin_database_url
        self.random = random.Random(SEED)
        # What the system checker already reported when the scenario began (a previous scenario
        # of the session that failed): reported, not blamed on this scenario.
        self.baseline: set[tuple[str, str]] = set()

    # --- SQL (a fresh connection per call: PostgreSQL itself is restarted by a scenario)

    async def sql(self, query: str, *args: Any, retries: int = 60) -> list[asyncpg.Record]:
        for attempt in range(retries):
            try:
                conn = await asyncpg.connect(self.dsn, timeout=10)
            except (OSError, asyncpg.PostgresError, TimeoutError):
                if attempt == retries - 1:
                    raise
                await asyncio.sleep(1.0)
                continue
            try:
                return await conn.fetch(query, *args)
            finally:
                await conn.close()
        raise AssertionError("unreachable")

    async def val(self, query: str, *args: Any) -> Any:
        rows = await self.sql(query, *args)
        return rows[0][0] if rows else None

    # --- catalog and stock

    async def seed(self, prefix: str, *, stock: int = 5000, back: int = 2) -> Catalog:
        """Variants on catalog.products.v1 and receipts at two locations; wait until stock has
        them. SKUs: HOT, A, B, C (stocked), SOLDOUT (none), BACK (backorderable, short), KIT
        (backorderable bundle of LAMP and 2 BULB, both short), EBOOK (digital: untracked)."""
        names = {
            n: f"{prefix}-{n}"
            for n in ("HOT", "A", "B", "C", "SOLDOUT", "BACK", "LAMP", "BULB", "KIT", "EBOOK")
        }
        for name, sku in names.items():
            if name not in ("KIT", "EBOOK"):
                await self.upsert_variant(sku, backorderable=name == "BACK")
        await send_reliably(
            self.producer,
            encode(
                variant(
                    names["KIT"],
                    backorderable=True,
                    components=[(names["LAMP"], 1), (names["BULB"], 2)],
                ),
                source=SOURCE,
            ),
        )
        await send_reliably(
            self.producer, encode(variant(names["EBOOK"], tracked=False), source=SOURCE)
        )
        expected = 0
        for name, sku in names.items():
            if name in ("SOLDOUT", "KIT", "EBOOK"):
                continue
            for location in LOCATIONS:
                quantity = back if name in ("BACK", "LAMP", "BULB") else stock
                await self.receive(sku, location, quantity, receipt_id=f"r-{sku}-{location}")
                expected += quantity
        await self.wait_for(
            lambda: self.val(
                "SELECT coalesce(sum(on_hand), 0) FROM stock.levels WHERE sku LIKE $1",
                f"{prefix}-%",
            ),
            expected,
            what=f"stock to record the receipts of {prefix}",
        )
        return Catalog(
            skus=[names["HOT"], names["A"], names["B"], names["C"]],
            prices={sku: Decimal("10.00") for sku in names.values()},
            out_of_stock=[names["SOLDOUT"]],
            backorderable=[names["BACK"]],
            backorderable_bundles=[names["KIT"]],
            digital=[names["EBOOK"]],
        )

    async def upsert_variant(self, sku: str, *, backorderable: bool = False) -> Sent:
        return await send_reliably(
            self.producer, encode(variant(sku, backorderable=backorderable), source=SOURCE)
        )

    async def receive(
        self, sku: str, location: str, quantity: int, *, receipt_id: str | None = None
    ) -> Sent:
        event = goods_received(sku, location, quantity, unit_cost="4.00", receipt_id=receipt_id)
        return await send_reliably(self.producer, encode(event, source=SOURCE))

    async def on_hand(self, sku: str) -> tuple[int, int]:
        row = (
            await self.sql(
                "SELECT coalesce(sum(on_hand), 0) AS on_hand, coalesce(sum(reserved), 0) AS res"
                " FROM stock.levels WHERE sku = $1",
                sku,
            )
        )[0]
        return int(row["on_hand"]), int(row["res"])

    async def wait_for(self, probe, expected, *, what: str, timeout_s: float = 90) -> None:
        deadline = time.monotonic() + timeout_s
        value = None
        while time.monotonic() < deadline:
            value = await probe()
            if value == expected:
                return
            await asyncio.sleep(0.3)
        raise AssertionError(f"timed out waiting for {what}: {value!r} != {expected!r}")

    # --- orders

    async def states(self, order_ids: list[str]) -> dict[str, str]:
        rows = await self.sql(
            "SELECT order_id, state FROM orders.orders WHERE order_id = ANY($1::text[])",
            order_ids,
        )
        return {r["order_id"]: r["state"] for r in rows}

    async def settle(
        self, order_ids: list[str], *, states=SETTLED_STATES, timeout_s: float = SETTLE_TIMEOUT_S
    ) -> dict[str, str]:
        """Wait until every order is in one of `states`; return the states (never raises)."""
        deadline = time.monotonic() + timeout_s
        found: dict[str, str] = {}
        while time.monotonic() < deadline:
            found = await self.states(order_ids)
            if len(found) == len(order_ids) and all(s in states for s in found.values()):
                break
            await asyncio.sleep(1.0)
        return found

    # --- invariants

    async def assert_invariants(
        self, order_ids: list[str], record: ScenarioRecord | None = None, *, terminal=False
    ) -> dict[str, str]:
        """Orders settled (terminal when asked), the system checker and this suite's checks find
        nothing. Returns the final states of `order_ids`."""
        wanted = TERMINAL_STATES if terminal else SETTLED_STATES
        states = await self.settle(order_ids, states=wanted)
        problems = [
            Finding("orders_settled", o, states.get(o, "(missing)"))
            for o in order_ids
            if states.get(o) not in wanted
        ]
        checker, found = await system_violations(self.dsn, order_ids)
        preexisting = [f for f in found if (f.invariant, f.subject) in self.baseline]
        problems += [f for f in found if (f.invariant, f.subject) not in self.baseline]
        for name, query in SUITE_CHECKS.items():
            args = [order_ids] if "$1" in query else []
            rows = await self.sql(f"SELECT * FROM ({query}) v LIMIT 20", *args)
            problems += [Finding(name, str(r["subject"]), str(r["detail"])) for r in rows]
        if record is not None:
            record.checks = sorted(
                {"orders_settled" if not terminal else "orders_terminal", f"checker={checker}"}
                | set(SUITE_CHECKS)
                | set(record.checks)
            )
            record.numbers["orders"] = len(order_ids)
            record.numbers["final_states"] = dict(Counter(states.values()))
            record.numbers["violations"] = len(problems)
            if preexisting:
                record.numbers["preexisting_violations"] = len(preexisting)
        assert not problems, f"{len(problems)} violation(s):\n" + "\n".join(
            str(p) for p in problems[:30]
        )
        return states

    async def conclude(
        self, load: Load, mark: DlqMark, record: ScenarioRecord, *, focus: list[str] | None = None
    ) -> dict[str, str]:
        """The end every scenario shares: stop the load; its orders settled (the scenario's own
        `focus` orders terminal) with the checker and the suite's checks clean; no new dead
        letter. Returns the states of the orders the record describes."""
        order_ids = await load.stop()
        if focus is None:
            states = await self.assert_invariants(order_ids, record)
        else:
            states = await self.assert_invariants(focus, record, terminal=True)
            await self.assert_invariants(order_ids)
        await self.assert_no_dead_letters(mark, record)
        return states

    # --- dead letters

    async def dlq_mark(self) -> DlqMark:
        """The start of a scenario: DLQ positions, dead_letters rows and checker baseline."""
        _, found = await system_violations(self.dsn, [])
        self.baseline = {(f.invariant, f.subject) for f in found}
        consumer = AIOKafkaConsumer(bootstrap_servers=self.infra.kafka_bootstrap)
        await consumer.start()
        try:
            parts = [TopicPartition(t, 0) for t in DLQ_TOPICS.values()]
            ends = await consumer.end_offsets(parts)
        finally:
            await consumer.stop()
        return DlqMark({tp.topic: o for tp, o in ends.items()}, await self._dead_letter_keys())

    async def _dead_letter_keys(self) -> set[tuple[str, str, int, int]]:
        keys: set[tuple[str, str, int, int]] = set()
        for service in SERVICES:
            rows = await self.sql(
                f"SELECT consumer_group, topic, partition, kafka_offset "
                f"FROM {SCHEMAS[service]}.dead_letters"
            )
            keys |= {tuple(r) for r in rows}
        return keys

    async def dead_letter_rows_since(self, mark: DlqMark) -> list[DeadLetter]:
        found = []
        for service in SERVICES:
            rows = await self.sql(
                f"SELECT consumer_group, topic, partition, kafka_offset, reason "
                f"FROM {SCHEMAS[service]}.dead_letters"
            )
            found += [
                DeadLetter(service, r[0], r[1], r[2], r[3], r[4])
                for r in rows
                if tuple(r[:4]) not in mark.rows
            ]
        return found

    async def dlq_topic_since(self, mark: DlqMark) -> list[DeadLetter]:
        """Every record the DLQ topics gained since `mark`, once their outboxes are drained."""
        for service in SERVICES:
            await self.wait_for(
                lambda s=service: self.val(
                    f"SELECT count(*) FROM {SCHEMAS[s]}.outbox "
                    "WHERE sent_at IS NULL AND topic LIKE '%.dlq.v1'"
                ),
                0,
                what=f"{service}'s relay to publish its dead letters",
                timeout_s=120,
            )
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.infra.kafka_bootstrap,
            enable_auto_commit=False,
            fetch_max_bytes=64 * 1024 * 1024,
            max_partition_fetch_bytes=16 * 1024 * 1024,
        )
        await consumer.start()
        letters: list[DeadLetter] = []
        try:
            parts = [TopicPartition(t, 0) for t in DLQ_TOPICS.values()]
            consumer.assign(parts)
            ends = await consumer.end_offsets(parts)
            for tp in parts:
                consumer.seek(tp, mark.offsets[tp.topic])
            service_of = {t: s for s, t in DLQ_TOPICS.items()}
            deadline = time.monotonic() + 60
            remaining = {tp for tp in parts if mark.offsets[tp.topic] < ends[tp]}
            while remaining and time.monotonic() < deadline:
                batch = await consumer.getmany(*remaining, timeout_ms=500)
                for tp, records in batch.items():
                    for r in records:
                        h = {k: v.decode(errors="replace") for k, v in r.headers}
                        letters.append(
                            DeadLetter(
                                service_of[tp.topic],
                                h.get("dlq_consumer_group", ""),
                                h.get("dlq_source_topic", ""),
                                int(h.get("dlq_source_partition", -1)),
                                int(h.get("dlq_source_offset", -1)),
                                h.get("dlq_reason", ""),
                                hashlib.sha256(r.value or b"").hexdigest(),
                            )
                        )
                    if await consumer.position(tp) >= ends[tp]:
                        remaining.discard(tp)
        finally:
            await consumer.stop()
        return letters

    async def assert_no_dead_letters(self, mark: DlqMark, record: ScenarioRecord) -> None:
        rows = await self.dead_letter_rows_since(mark)
        topic = await self.dlq_topic_since(mark)
        record.checks.append("dlq_exactly_the_poison_sent")
        record.numbers["dead_letters"] = len(rows)
        assert not rows, f"valid traffic was dead-lettered: {rows[:5]}"
        assert not topic, f"DLQ topics gained records: {topic[:5]}"

    # --- processes

    def kafka_pid(self) -> int:
        pid_file = self.infra.kafka_pid_file
        assert pid_file is not None, "the broker is not a local process of this profile"
        return int(Path(pid_file).read_text().strip())

    def infra_up(self) -> None:
        result = subprocess.run(
            [
                sys.executable,
                str(ROOT / "deploy" / "local" / "infra.py"),
                "up",
                "--profile",
                self.system.profile.name,
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, result.stderr[-800:]

    def wait_all_ready(self, timeout_s: float = 180) -> None:
        for service in SERVICES:
            self.system.wait_ready(service, timeout_s=timeout_s)

    def spawn_extra(self, service: str, port_offset: int) -> subprocess.Popen:
        """A second instance of `service` (own HTTP port, same consumer groups and schema)."""
        local, profile = self.system.local, self.system.profile
        port = profile.http_base + port_offset
        env = {**local.service_env(profile, service), "STOCKFLOW_HTTP_PORT": str(port)}
        log_file = profile.state / "logs" / f"{service}-extra.log"
        with open(log_file, "ab") as out:
            proc = subprocess.Popen(
                local.service_cmd(service, port),
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=ROOT,
            )
        local.wait_until(
            f"{service} (second instance) on {port}",
            lambda: _ready(port),
            120,
            proc_alive=lambda: proc.poll() is None,
            log_file=log_file,
        )
        return proc

    async def group_lag(self, groups: list[str]) -> int:
        """Total lag (end offset - committed offset) of `groups` over their topics."""
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=self.infra.kafka_bootstrap)
        consumer = AIOKafkaConsumer(bootstrap_servers=self.infra.kafka_bootstrap)
        await admin.start()
        await consumer.start()
        try:
            lag = 0
            for group in groups:
                offsets = await admin.list_consumer_group_offsets(group)
                if not offsets:
                    continue
                ends = await consumer.end_offsets(list(offsets))
                lag += sum(max(0, ends[tp] - meta.offset) for tp, meta in offsets.items())
            return lag
        finally:
            await consumer.stop()
            await admin.close()

    async def rewind_groups(self, groups: dict[str, list[str]]) -> int:
        """Commit the beginning offset of every partition for each (stopped) group."""
        rewound = 0
        for group, topics in groups.items():
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.infra.kafka_bootstrap,
                group_id=group,
                enable_auto_commit=False,
            )
            await consumer.start()
            try:
                parts = [
                    TopicPartition(t, p)
                    for t in topics
                    for p in sorted(consumer.partitions_for_topic(t) or ())
                ]
                if not parts:
                    for t in topics:
                        await consumer._client.force_metadata_update()
                        parts += [
                            TopicPartition(t, p)
                            for p in sorted(consumer.partitions_for_topic(t) or ())
                        ]
                consumer.assign(parts)
                starts = await consumer.beginning_offsets(parts)
                await consumer.commit({tp: OffsetAndMetadata(o, "") for tp, o in starts.items()})
                rewound += len(parts)
            finally:
                await consumer.stop()
        return rewound


def _ready(port: int) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as resp:
            return resp.status == 200
    except OSError:
        return False


def consumer_wiring() -> dict[str, list[tuple[str, str, set[str] | None]]]:
    """Input topic -> [(service, consumer group, event types it wants)] from the services'
    own definitions, so a new consumer is covered by the poison test without editing it."""
    from stockflow.runtime.serve import load_definition

    wiring: dict[str, list[tuple[str, str, set[str] | None]]] = {}
    for service in SERVICES:
        for consumer in load_definition(service).consumers:
            for topic in consumer.topics:
                wiring.setdefault(topic, []).append(
                    (service, consumer.group, set(consumer.event_types or ()) or None)
                )
    return wiring


def wants(event_types: set[str] | None, ce_type: str | None) -> bool:
    """Does a consumer judge a record of `ce_type` (None: not a CloudEvent at all)?

    Known types outside the consumer's list are skipped; unknown types and undecodable records
    are judged (and dead-lettered) by everyone.
    """
    if ce_type is None or ce_type not in EVENT_TYPES or event_types is None:
        return True
    return ce_type in event_types


@pytest.fixture(scope="module")
async def harness(system, infra):
    producer = build_producer(infra.kafka_bootstrap, client_id="chaos-harness")
    await producer.start()
    yield Harness(system, infra, producer)
    await producer.stop()


def kill_process_group(pid: int, sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


# ----------------------------------------------------------------------------- poison

# The event type each input topic's poison pretends to be: one its consumers want, so that
# the record is judged rather than skipped (checkout: a cancel, since the order service answers
# a malformed *submission* with order.rejected instead of dead-lettering it).
POISON_TYPES = {
    "checkout.orders.v1": "checkout.order.cancel_requested.v1",
    "stock.commands.v1": "stock.reserve.requested.v1",
    "warehouse.receipts.v1": "warehouse.goods.received.v1",
    "catalog.products.v1": "catalog.variant.upserted.v1",
    "fulfillment.events.v1": "fulfillment.shipment.shipped.v1",
    "stock.events.v1": "stock.reserved.v1",
    "orders.events.v1": "order.confirmed.v1",
    "stock.movements.v1": "stock.movement.recorded.v1",
}
QUANTITY_KEYS = {"quantity", "requested", "reserved", "backordered", "weight_grams"}
SQL_TEXT = "x'); DROP TABLE stock.levels; --"
SCRIPT_TEXT = "<script>alert('pwn')</script>"
OVERSIZE_BYTES = 10 * 1024 * 1024
POISON_SOURCE = "stockflow/chaos-poison"


@dataclass
class Poison:
    kind: str
    topic: str
    record: KafkaRecord
    judged_type: str | None  # the type consumers judge it as; None: no CloudEvent at all
    sent: Sent | None = None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.record.value).hexdigest()


def poison_headers(ce_type: str, subject: str) -> list[tuple[str, bytes]]:
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return [
        ("ce_specversion", b"1.0"),
        ("ce_id", str(uuid.uuid4()).encode()),
        ("ce_source", POISON_SOURCE.encode()),
        ("ce_type", ce_type.encode()),
        ("ce_time", now.encode()),
        ("ce_subject", subject.encode()),
        ("content-type", b"application/json"),
    ]


def _rename(obj: Any, tag: str) -> Any:
    """A real event's data with every identity replaced, so a poison that happened to be valid
    could never touch a real order, sku or shipment."""
    if isinstance(obj, list):
        return [_rename(v, tag) for v in obj]
    if not isinstance(obj, dict):
        return obj
    out = {}
    for key, value in obj.items():
        if key == "order_id" and isinstance(value, str):
            out[key] = f"pzn-{tag}"
        elif key == "sku" and isinstance(value, str):
            out[key] = f"PZN-{tag}"
        elif key.endswith("_id") and key not in ("line_id", "customer_id") and value:
            out[key] = str(uuid.uuid4())
        else:
            out[key] = _rename(value, tag)
    return out


def _negative(obj: Any) -> tuple[Any, int]:
    if isinstance(obj, list):
        pairs = [_negative(v) for v in obj]
        return [p[0] for p in pairs], sum(p[1] for p in pairs)
    if not isinstance(obj, dict):
        return obj, 0
    out, changed = {}, 0
    for key, value in obj.items():
        if key in QUANTITY_KEYS and isinstance(value, int) and not isinstance(value, bool):
            out[key], changed = -5, changed + 1
        else:
            out[key], inner = _negative(value)
            changed += inner
    return out, changed


def _wrong_types(data: dict) -> dict:
    swap = {str: 12345, int: "twelve", float: "twelve", list: "many", dict: "x", bool: "yes"}
    return {k: swap.get(type(v), v) for k, v in data.items()}


def _injected(data: dict) -> dict:
    out = dict(data)
    for key, value in data.items():
        if key in ("order_id", "sku", "reason", "title", "handle", "receipt_id"):
            out[key] = f"{SQL_TEXT}{SCRIPT_TEXT}" if key != "sku" else SCRIPT_TEXT
        elif key == "product_id" and isinstance(value, str):
            out[key] = SQL_TEXT
    return out


def build_poison(topic: str, sample: dict, tag: str) -> list[Poison]:
    """The poison kinds of the issue for one input topic, built from a real event's data."""
    ce_type = POISON_TYPES[topic]
    base = _rename(sample, tag)
    key = str(base.get("order_id") or base.get("sku") or f"pzn-{tag}")

    def binary(kind: str, value: bytes, event_type: str = ce_type) -> Poison:
        return Poison(
            kind,
            topic,
            KafkaRecord(topic, key.encode(), value, poison_headers(event_type, key)),
            event_type,
        )

    items = [
        Poison(
            "not JSON, no headers",
            topic,
            KafkaRecord(topic, key.encode(), b"\x00\xff\xfe garbage \x80 not json", []),
            None,
        ),
        binary("not JSON, CloudEvent headers", b"{'order_id': nope, \xff\xfe"),
        binary("wrong types", json.dumps(_wrong_types(base)).encode()),
        binary("unknown event type", json.dumps(base).encode(), "stockflow.chaos.unknown.v9"),
        binary("SQL and script text", json.dumps(_injected(base)).encode()),
    ]
    negative, changed = _negative(base)
    if changed:
        items.append(binary("negative quantities", json.dumps(negative).encode()))
    # A structured CloudEvent whose data nests 5,000 levels deep: too deep to even decode.
    envelope = {"specversion": "1.0", "id": str(uuid.uuid4()), "source": POISON_SOURCE}
    deep = json.dumps({**envelope, "type": ce_type}).encode()[:-1]
    deep += b', "data": {"nested": ' + b"[" * 5000 + b"]" * 5000 + b"}}"
    structured = [("content-type", b"application/cloudevents+json")]
    nested = Poison(
        "JSON nested 5,000 deep", topic, KafkaRecord(topic, key.encode(), deep, structured), None
    )
    items.append(nested)
    padding = b'{"pad": "' + b"x" * (OVERSIZE_BYTES - 11) + b'"}'
    oversize = binary("10 MB value", padding)
    oversize.judged_type = None  # refused on size before anyone looks at its type
    items.append(oversize)
    return items


async def sample_event(bootstrap: str, topic: str, ce_type: str, accept=None) -> dict | None:
    """The data of the first record of `ce_type` on `topic` (read from the start), waiting up to
    20 s for it: the relay publishes after the transaction that caused it has committed."""
    consumer = reader_from_start(bootstrap, topic)
    await consumer.start()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for r in records:
                    headers = {k: v for k, v in r.headers}
                    if headers.get("ce_type", b"").decode(errors="replace") != ce_type:
                        continue
                    if headers.get("ce_source", b"").decode(errors="replace") == POISON_SOURCE:
                        continue
                    try:
                        data = json.loads(r.value)
                    except (ValueError, TypeError):
                        continue
                    if isinstance(data, dict) and (accept is None or accept(data)):
                        return data
    finally:
        await consumer.stop()
    return None


@pytest.fixture(scope="session")
def kit():
    """The harness's module-level helpers for the test modules (conftest is not importable)."""
    from types import SimpleNamespace

    return SimpleNamespace(
        Load=Load,
        build_poison=build_poison,
        sample_event=sample_event,
        consumer_wiring=consumer_wiring,
        wants=wants,
        send_reliably=send_reliably,
        kill_process_group=kill_process_group,
        poison_headers=poison_headers,
        POISON_TYPES=POISON_TYPES,
        SETTLED_STATES=SETTLED_STATES,
        TERMINAL_STATES=TERMINAL_STATES,
        LOCATIONS=LOCATIONS,
        SQL_TEXT=SQL_TEXT,
        SCRIPT_TEXT=SCRIPT_TEXT,
        SOURCE=SOURCE,
        LOAD_RATE=LOAD_RATE,
    )
