"""`stockflow demo`: seed a catalog and stock, then act as an upstream checkout and report.

Everything goes through the system's real front doors: the catalog's HTTP API, the warehouse
receipts topic and the checkout topic. The demo then waits until every order has reached a
terminal state and prints what happened, with throughput and latency, and which of the less
common paths it walked (digital goods, bundle backorders, receipt retries, line cancels, and
the warehouse's short picks and cancels when the fulfillment autopilot is told to make them,
under both fulfillment exception policies).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from typing import Any

import httpx
import typer
from aiokafka import AIOKafkaProducer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from stockflow.cli import kafka_tools as kt
from stockflow.cli.checkout_sim import (
    DEMO_MIX,
    LINE_CANCEL_DROP,
    SHORT_PICK,
    WAREHOUSE_CANCEL,
    Catalog,
    OrderFactory,
    Outcomes,
    OutcomeTracker,
    PlannedOrder,
    Scenario,
    percentile,
    send_orders,
    with_extra_scenarios,
)
from stockflow.cli.common import auth_headers, service_url, setting
from stockflow.contracts import encode
from stockflow.contracts.events.catalog import CatalogVariantUpserted
from stockflow.contracts.events.warehouse import WarehouseGoodsReceived

console = Console()
SERVICES = ("catalog", "stock", "order", "fulfillment", "accounting")

# (handle, title, [(sku, price, tracked, backorderable, bundle components)])
PRODUCTS: list[tuple[str, str, list[tuple[str, str, bool, bool, list[tuple[str, int]]]]]] = [
    (
        "demo-tee",
        "Organic cotton tee",
        [
            ("TEE-M", "19.00", True, False, []),
            ("TEE-S", "19.00", True, False, []),
            ("TEE-L", "21.00", True, False, []),
        ],
    ),
    ("demo-mug", "Enamel camp mug", [("MUG-1", "12.50", True, False, [])]),
    ("demo-cap", "Canvas cap", [("CAP-1", "15.00", True, False, [])]),
    ("demo-socks", "Wool socks", [("SOCKS-1", "6.00", True, False, [])]),
    ("demo-hoodie", "Heavy hoodie (backorderable)", [("HOOD-M", "49.00", True, True, [])]),
    ("demo-poster", "Limited poster (sold out)", [("POSTER-1", "25.00", True, False, [])]),
    ("demo-ebook", "Field guide e-book", [("EBOOK-1", "9.00", False, False, [])]),
    (
        "demo-gift",
        "Gift set: mug and two pairs of socks",
        [("GIFT-1", "22.00", False, False, [("MUG-1", 1), ("SOCKS-1", 2)])],
    ),
    ("demo-lamp", "Desk lamp", [("LAMP-1", "25.00", True, False, [])]),
    ("demo-bulb", "LED bulb", [("BULB-1", "4.00", True, False, [])]),
    (
        "demo-lamp-kit",
        "Lamp kit: a lamp and two bulbs (backorderable)",
        [("KIT-LAMP", "30.00", False, True, [("LAMP-1", 1), ("BULB-1", 2)])],
    ),
]
DIGITAL = ["EBOOK-1"]
BACKORDERABLE_BUNDLES = ["KIT-LAMP"]
# (sku, location, quantity, unit cost)
RECEIPTS = [
    ("TEE-M", "WH-EAST", 150, "6.10"),
    ("TEE-M", "WH-WEST", 100, "6.30"),
    ("TEE-S", "WH-EAST", 200, "6.10"),
    ("TEE-L", "WH-WEST", 120, "6.80"),
    ("MUG-1", "WH-EAST", 200, "3.20"),
    ("CAP-1", "WH-WEST", 100, "4.00"),
    ("SOCKS-1", "WH-EAST", 300, "1.50"),
    ("SOCKS-1", "WH-WEST", 300, "1.55"),
    ("HOOD-M", "WH-EAST", 5, "18.00"),
    ("LAMP-1", "WH-EAST", 4, "11.00"),
    ("BULB-1", "WH-EAST", 8, "1.20"),
]
# Late stock for the backorders, in two waves: the lamps alone make no kit whole; the bulbs
# that follow do, and each kit is allocated whole.
LATE_RECEIPTS = [
    [("HOOD-M", "WH-EAST", 60, "18.50"), ("LAMP-1", "WH-EAST", 60, "11.50")],
    [("BULB-1", "WH-EAST", 120, "1.25")],
]
LATE_WAVE_GAP_S = 3.0


def register(app: typer.Typer) -> None:
    """Add the demo command to the top-level app."""

    @app.command()
    def demo(  # noqa: PLR0913 -- typer: one parameter per command-line option
        orders: int = typer.Option(300, help="How many orders the simulated checkout sends."),
        rate: float = typer.Option(60.0, help="Orders per second (constant arrival rate)."),
        timeout: float = typer.Option(240.0, help="Seconds to wait for every order to end."),
        seed: int = typer.Option(7, help="Seed of the order stream."),
        bundle_backorders: float = typer.Option(
            0.03, min=0, max=0.5, help="Share of orders for a backorderable bundle, short."
        ),
        digital_orders: float = typer.Option(
            0.03, min=0, max=0.5, help="Share of orders of digital goods only (never shipped)."
        ),
        receipt_retries: int = typer.Option(
            1,
            min=0,
            help="Times the warehouse re-sends each late receipt (same receipt_id, new event "
            "id), as a WMS retries.",
        ),
        line_cancels: float = typer.Option(
            0.04, min=0, max=0.5, help="Share of orders that cancel a unit once confirmed."
        ),
        reallocate: float = typer.Option(
            0.3,
            min=0,
            max=1,
            help="Share of orders whose short picks and warehouse cancels are reallocated "
            "(the others: cancel_remainder).",
        ),
    ) -> None:
        """Seed catalog and stock, emit a stream of orders, wait, and summarise.

        The warehouse's short picks and cancels are the fulfillment autopilot's
        (STOCKFLOW_FULFILLMENT_AUTO_SHORT_PICK_EVERY, _AUTO_CANCEL_EVERY; `make demo
        DEMO_SHORT_PICK_EVERY=4 DEMO_WAREHOUSE_CANCEL_EVERY=15`, its defaults).
        """
        paths = DemoPaths(
            bundle_backorders, digital_orders, receipt_retries, line_cancels, reallocate
        )
        ok = kt.run_command(run_demo(orders, rate, timeout, seed, paths))
        raise typer.Exit(0 if ok else 1)


@dataclass(frozen=True)
class DemoPaths:
    """The knobs of the less common paths: shares of orders, and receipt retries."""

    bundle_backorders: float = 0.03
    digital_orders: float = 0.03
    receipt_retries: int = 1
    line_cancels: float = 0.04
    reallocate: float = 0.3

    def mix(self) -> dict[Scenario, float]:
        return with_extra_scenarios(
            DEMO_MIX,
            {
                Scenario.BUNDLE_BACKORDER: self.bundle_backorders,
                Scenario.DIGITAL: self.digital_orders,
                Scenario.LINE_CANCEL: self.line_cancels,
            },
        )


async def run_demo(
    count: int, rate: float, timeout_s: float, seed: int, paths: DemoPaths | None = None
) -> bool:
    paths = paths or DemoPaths()
    console.rule("[bold]stockflow demo")
    bootstrap = setting("KAFKA_BOOTSTRAP_SERVERS")
    # The Kafka credentials are checked first: a refusal ends the demo before it waits.
    async with kt.writer(bootstrap, linger_ms=5) as producer, httpx.AsyncClient(timeout=15) as http:
        await wait_for_services(http)
        await seed_catalog(http, producer)
        await seed_stock(http, producer)
        before = await stock_snapshot(http)
        outcomes = Outcomes()
        tracker = OutcomeTracker(bootstrap, outcomes)
        await tracker.start()
        catalog = Catalog(
            skus=["TEE-M", "TEE-S", "MUG-1", "TEE-L", "CAP-1", "SOCKS-1", "EBOOK-1", "GIFT-1"],
            prices={
                sku: Decimal(price) for _, _, variants in PRODUCTS for sku, price, *_ in variants
            },
            out_of_stock=["POSTER-1"],
            backorderable=["HOOD-M"],
            backorderable_bundles=BACKORDERABLE_BUNDLES,
            digital=DIGITAL,
        )
        factory = OrderFactory(
            catalog,
            mix=paths.mix(),
            seed=seed,
            run_id=uuid.uuid4().hex[:6],
            reallocate_share=paths.reallocate,
        )
        warehouse = Outcomes()
        shipments = OutcomeTracker(bootstrap, warehouse, topic="fulfillment.events.v1")
        await shipments.start()
        started = time.time()
        planned = await emit_with_progress(producer, factory, count, rate, outcomes)
        console.print(
            f"sent {len(planned)} orders (some twice, to show that a redelivered "
            "event changes nothing); receiving late stock for the backorders"
        )
        retries = await receive_late_stock(producer, factory.run_id, paths.receipt_retries)
        ids = [p.order_id for p in planned]
        finished = await wait_until_terminal(outcomes, ids, timeout_s)
        await tracker.stop()
        await shipments.stop()
        after = await stock_snapshot(http)
        stats = (await http.get(f"{service_url('order')}/orders/stats")).json()
    run = DemoRun(planned, outcomes, before, after, started, finished, stats)
    report(run)
    report_paths(run, warehouse, retries)
    ok = outcomes.terminal([p.order_id for p in planned]) == len(planned)
    console.print(
        "\n[bold]The system is still running.[/] Look around:\n"
        f"  stockflow order show {planned[0].order_id}\n"
        "  stockflow stock show TEE-M        stockflow accounting trial-balance\n"
        "  stockflow topics tail orders.events.v1 --limit 20     stockflow lag\n"
        "  make status                       (URLs; open $ORDER_URL/docs for the API)\n"
        "Stop everything with: make down"
    )
    return ok


async def wait_for_services(http: httpx.AsyncClient, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    for service in SERVICES:
        while True:
            try:
                if (await http.get(f"{service_url(service)}/readyz")).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise typer.BadParameter(
                    f"{service} at {service_url(service)} is not ready; "
                    "start the system with `make up run` or `make demo`"
                )
            await asyncio.sleep(0.5)
    console.print("all five services are ready")


def product_payload(handle: str, title: str, variants: list) -> dict[str, Any]:
    return {
        "handle": handle,
        "title": title,
        "vendor": "stockflow demo",
        "status": "active",
        "options": ["Size"] if len(variants) > 1 else [],
        "variants": [
            {
                "sku": sku,
                "option_values": {"Size": sku.split("-")[-1]} if len(variants) > 1 else {},
                "prices": [{"amount": price, "currency": "USD"}],
                "tracked": tracked,
                "requires_shipping": tracked or bool(components),
                "backorderable": backorderable,
                "weight_grams": 250,
                "bundle_components": [{"sku": c, "quantity": q} for c, q in components],
            }
            for sku, price, tracked, backorderable, components in variants
        ],
    }


async def seed_catalog(http: httpx.AsyncClient, producer: AIOKafkaProducer) -> None:
    created = existing = 0
    for handle, title, variants in PRODUCTS:
        response = await http.post(
            f"{service_url('catalog')}/products",
            json=product_payload(handle, title, variants),
            headers={**auth_headers(), "Idempotency-Key": f"demo-seed-{handle}"},
        )
        if response.status_code == 404 and created == existing == 0:
            # A catalog without its admin API yet: publish the variants as it would.
            await publish_catalog(producer)
            console.print("catalog: variants published on catalog.products.v1")
            break
        if response.status_code in (200, 201):
            created += 1
        elif response.status_code == 409:
            existing += 1
        else:
            raise typer.BadParameter(
                f"catalog refused {handle}: {response.status_code} {response.text[:300]}"
            )
    else:
        console.print(f"catalog: {created} products created, {existing} already there")
    # Stock learns the catalog from catalog.products.v1; wait until it knows the bundles.
    for bundle in ("GIFT-1", *BACKORDERABLE_BUNDLES):
        await wait_until(
            partial(_known_to_stock, http, bundle), 30, f"stock to learn the catalog ({bundle})"
        )


async def publish_catalog(producer: AIOKafkaProducer) -> None:
    now = datetime.now(UTC)
    for handle, title, variants in PRODUCTS:
        for sku, price, tracked, backorderable, components in variants:
            variant = CatalogVariantUpserted(
                sku=sku,
                product_id=handle,
                handle=handle,
                title=title,
                status="active",
                vendor="stockflow demo",
                prices=[{"amount": price, "currency": "USD"}],
                tracked=tracked and not components,
                backorderable=backorderable,
                weight_grams=250,
                version=1,
                updated_at=now,
                bundle_components=[{"sku": c, "quantity": q} for c, q in components],
            )
            record = encode(variant, source="stockflow/catalog")
            await producer.send(record.topic, record.value, key=record.key, headers=record.headers)
    await producer.flush()


async def _known_to_stock(http: httpx.AsyncClient, sku: str) -> bool:
    response = await http.post(f"{service_url('stock')}/availability", json={"skus": [sku]})
    return response.status_code == 200 and sku in response.json().get("known", [])


async def receive(
    producer: AIOKafkaProducer,
    sku: str,
    location: str,
    quantity: int,
    unit_cost: str,
    *,
    receipt_id: str,
) -> None:
    await send_receipt(producer, goods_received(sku, location, quantity, unit_cost, receipt_id))


def goods_received(
    sku: str, location: str, quantity: int, unit_cost: str, receipt_id: str
) -> WarehouseGoodsReceived:
    return WarehouseGoodsReceived(
        receipt_id=receipt_id,
        sku=sku,
        location=location,
        quantity=quantity,
        unit_cost=unit_cost,
        currency="USD",
        received_at=datetime.now(UTC),
    )


async def send_receipt(
    producer: AIOKafkaProducer, event: WarehouseGoodsReceived, *, retries: int = 0
) -> None:
    """Send a receipt; `retries` more times as a WMS retries it: the same receipt (same
    receipt_id and payload) under a new event id each time."""
    for _ in range(1 + retries):
        record = encode(event, source="stockflow/demo-warehouse")
        await producer.send_and_wait(
            record.topic, record.value, key=record.key, headers=record.headers
        )


async def receive_late_stock(producer: AIOKafkaProducer, run_id: str, retries: int) -> int:
    """The late receipts, wave by wave, each re-sent `retries` times; returns the re-sends."""
    sent = 0
    for wave, receipts in enumerate(LATE_RECEIPTS):
        if wave:
            await asyncio.sleep(LATE_WAVE_GAP_S)
        for sku, location, quantity, cost in receipts:
            event = goods_received(sku, location, quantity, cost, f"late-{run_id}-{sku}")
            await send_receipt(producer, event, retries=retries)
            sent += retries
    return sent


async def seed_stock(http: httpx.AsyncClient, producer: AIOKafkaProducer) -> None:
    run = uuid.uuid4().hex[:6]
    expected: dict[str, int] = defaultdict(int)
    before = await stock_snapshot(http)
    for sku, location, quantity, cost in RECEIPTS:
        await receive(
            producer, sku, location, quantity, cost, receipt_id=f"seed-{run}-{sku}-{location}"
        )
        expected[sku] += quantity

    async def arrived() -> bool:
        now = await stock_snapshot(http)
        return all(
            now.get(sku, {}).get("on_hand", 0) >= before.get(sku, {}).get("on_hand", 0) + q
            for sku, q in expected.items()
        )

    await wait_until(arrived, 30, "stock to record the receipts")
    console.print(
        f"stock: received {sum(expected.values())} units of {len(expected)} skus "
        "at WH-EAST and WH-WEST"
    )


async def stock_snapshot(http: httpx.AsyncClient) -> dict[str, dict[str, int]]:
    snapshot: dict[str, dict[str, int]] = {}
    for _, _, variants in PRODUCTS:
        for sku, *_ in variants:
            response = await http.get(f"{service_url('stock')}/levels/{sku}")
            if response.status_code != 200:
                continue
            totals = response.json().get("totals") or {}
            snapshot[sku] = {
                k: int(totals.get(k, 0))
                for k in ("on_hand", "reserved", "available", "backordered")
            }
    return snapshot


async def emit_with_progress(producer, factory, count, rate, outcomes):
    columns = (
        TextColumn("[bold]checkout"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[settled]} settled"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("orders", total=count, settled=0)
        sending = asyncio.create_task(
            send_orders(producer, factory, count, rate, outcomes, duplicate_every=25)
        )
        while True:
            done, _ = await asyncio.wait({sending}, timeout=0.2)
            sent = list(outcomes.submitted_at)
            progress.update(task, completed=len(sent), settled=outcomes.settled(sent[-200:]))
            if done:
                return sending.result()


async def wait_until_terminal(outcomes: Outcomes, ids: list[str], timeout_s: float) -> float:
    columns = (
        TextColumn("[bold]waiting for every order to end"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    deadline = time.monotonic() + timeout_s
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("terminal", total=len(ids))
        while time.monotonic() < deadline:
            done = outcomes.terminal(ids)
            progress.update(task, completed=done)
            if done == len(ids):
                break
            await asyncio.sleep(0.5)
    return time.time()


async def wait_until(probe, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await probe():
            return
        await asyncio.sleep(0.3)
    raise typer.BadParameter(f"timed out after {timeout_s:.0f}s waiting for {what}")


@dataclass(frozen=True)
class DemoRun:
    """What one demo sent and saw: the orders and their outcomes, stock per SKU before and
    after, its start and end (seconds since the epoch) and the order service's statistics."""

    planned: list[PlannedOrder]
    outcomes: Outcomes
    before: dict[str, dict[str, int]]
    after: dict[str, dict[str, int]]
    started: float
    finished: float
    stats: dict[str, Any]


def report(run: DemoRun) -> None:
    planned, outcomes, before, after = run.planned, run.outcomes, run.before, run.after
    started, finished, stats = run.started, run.finished, run.stats
    ids = [p.order_id for p in planned]
    finals = outcomes.final_states(ids)
    table = Table(title="Orders by final state")
    table.add_column("final event")
    table.add_column("orders", justify="right")
    for state, n in finals.most_common():
        table.add_row(state, str(n))
    console.print(table)

    by_scenario: dict[str, Counter] = defaultdict(Counter)
    for order in planned:
        by_scenario[order.scenario.value][outcomes.ended_as(order.order_id)] += 1
    cross = Table(title="What each kind of order became")
    cross.add_column("order kind")
    cross.add_column("outcomes")
    for scenario, counter in by_scenario.items():
        cross.add_row(scenario, ", ".join(f"{k} × {v}" for k, v in counter.most_common()))
    console.print(cross)

    stock = Table(title="Stock before → after (all locations)")
    for column in ("sku", "on hand", "reserved", "available", "backordered"):
        stock.add_column(column, justify="right" if column != "sku" else "left")
    for sku in sorted(set(before) | set(after)):
        b, a = before.get(sku, {}), after.get(sku, {})
        stock.add_row(
            sku,
            *(
                f"{b.get(k, 0)} → {a.get(k, 0)}"
                for k in ("on_hand", "reserved", "available", "backordered")
            ),
        )
    console.print(stock)

    confirmed = outcomes.latencies_ms("order.confirmed.v1")
    settled = [
        min(
            at
            for (o, t), at in outcomes.first_seen.items()
            if o == order_id and t in ("order.confirmed.v1", "order.rejected.v1")
        )
        for order_id in ids
        if any(
            (order_id, t) in outcomes.first_seen
            for t in ("order.confirmed.v1", "order.rejected.v1")
        )
    ]
    span = (max(settled) - started) if settled else float("nan")
    numbers = Table(title="Speed")
    numbers.add_column("measure")
    numbers.add_column("value", justify="right")
    numbers.add_row("orders confirmed or rejected", str(len(settled)))
    numbers.add_row(
        "orders/s (first submission → last decision)",
        f"{len(settled) / span:.1f}" if settled else "-",
    )
    for label, fraction in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        value = percentile(confirmed, fraction)
        numbers.add_row(
            f"submission → order.confirmed {label}", f"{value:.1f} ms" if value is not None else "-"
        )
    numbers.add_row("whole run (until every order ended)", f"{finished - started:.1f} s")
    numbers.add_row("orders still open in the order service", str(stats.get("unsettled", "?")))
    console.print(numbers)


def report_paths(run: DemoRun, warehouse: Outcomes, receipt_retries: int) -> None:
    """The less common paths the run walked, and how the orders that walked them ended."""
    ids = [p.order_id for p in run.planned]
    digital = [
        (p.order_id, quantity) for p in run.planned for sku, quantity in p.lines() if sku in DIGITAL
    ]
    kits = [p for p in run.planned if p.scenario is Scenario.BUNDLE_BACKORDER]
    allocated = {o for (o, t) in run.outcomes.first_seen if t == "order.backorder.allocated.v1"}
    table = Table(title="Paths walked")
    table.add_column("path")
    table.add_column("count", justify="right")
    table.add_column("how they ended")
    table.add_row(
        "digital lines (never shipped)",
        str(len(digital)),
        _ended(run, {o for o, _ in digital}),
    )
    table.add_row(
        "bundle backorders (orders; allocated in whole kits)",
        str(len(kits)),
        _ended(run, {p.order_id for p in kits})
        + f"; {len({p.order_id for p in kits} & allocated)} got kits from late stock",
    )
    table.add_row("receipt retries (same receipt_id, new event id)", str(receipt_retries), "-")
    for path, label in WAREHOUSE_EXCEPTIONS.items():
        hit = warehouse.walked(path) & set(ids)
        table.add_row(label, str(len(hit)), _ended(run, hit))
    reallocating = {p.order_id for p in run.planned if p.reallocates}
    exceptions = set().union(*(warehouse.walked(p) for p in WAREHOUSE_EXCEPTIONS))
    reallocated = reallocating & exceptions & allocated
    table.add_row(
        "reallocations (reallocate orders served again after an exception)",
        str(len(reallocated)),
        _ended(run, reallocated),
    )
    requested = {p.order_id for p in run.planned if p.scenario is Scenario.LINE_CANCEL}
    dropped = warehouse.walked(LINE_CANCEL_DROP) & requested
    table.add_row(
        "line cancels requested (one unit, once confirmed)",
        str(len(requested)),
        _ended(run, requested) + f"; fulfillment dropped the units of {len(dropped)}",
    )
    reasons = run.outcomes.line_cancel_reasons
    table.add_row(
        "order.line_cancelled.v1 by reason",
        str(sum(reasons.values())),
        ", ".join(f"{k} × {v}" for k, v in reasons.most_common()) or "-",
    )
    console.print(table)
    console.print(
        f"{len(digital)} digital lines, {len(kits)} bundle backorders, "
        f"{receipt_retries} receipt retries, "
        + ", ".join(
            f"{len(warehouse.walked(path))} {path}s"
            for path in (*WAREHOUSE_EXCEPTIONS, LINE_CANCEL_DROP)
        )
        + f", {len(reallocated)} reallocations, {sum(reasons.values())} order.line_cancelled"
    )


WAREHOUSE_EXCEPTIONS = {
    SHORT_PICK: "short picks (orders; the shipment left as picked)",
    WAREHOUSE_CANCEL: "warehouse cancels (orders; a picked shipment cancelled)",
}


def _ended(run: DemoRun, order_ids: set[str]) -> str:
    ends = Counter(run.outcomes.ended_as(o) for o in order_ids)
    return ", ".join(f"{k} × {v}" for k, v in ends.most_common()) or "-"
