"""`stockflow check`: every service's invariants and the cross-service ones, in one snapshot.

The invariants themselves live beside each service's schema (`stockflow.<service>.invariants`);
only what spans two schemas is here, because no service may read another's. With `--repair`
the checker proposes corrective movements for drifted reservations and, once confirmed, has the
stock service apply them (`POST /admin/repairs`: ledger movements under the levels' locks,
refused when stale), then records the repair in `ops.audit.v1`.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import socket
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Annotated, Any

import asyncpg
import httpx
import typer
from aiokafka.errors import KafkaError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from stockflow.accounting import invariants as accounting_invariants
from stockflow.cli import kafka_tools as kt
from stockflow.cli.common import JsonOption, auth_headers, service_url, setting
from stockflow.contracts.cloudevents import (
    JSON,
    SPEC_VERSION,
    InvalidMessage,
    decode,
    new_traceparent,
    parse,
)
from stockflow.contracts.events.stock import LEVELS, StockLevelChanged
from stockflow.fulfillment import invariants as fulfillment_invariants
from stockflow.order import invariants as order_invariants
from stockflow.runtime.invariants import Invariant, Violation, run_invariants
from stockflow.stock import invariants as stock_invariants

# Service -> schema, as every command sees them (tests pass scratch schemas instead).
SCHEMAS = {
    "stock": "stock",
    "order": "orders",
    "fulfillment": "fulfillment",
    "accounting": "accounting",
}
TERMINAL_ORDER_STATES = ("rejected", "cancelled", "delivered", "returned")
REPAIR_EVENT_TYPE = "ops.stock.repaired.v1"
CROSS_SERVICE = "stock+order"
LIMIT = 1000  # rows per invariant: enough to see a pattern, bounded for a broken system


def reservations_of_terminal_orders(orders_schema: str, settle_seconds: float) -> Invariant:
    """Stock still held for an order that ended more than `settle_seconds` ago (the release
    command may be in flight until then). `{schema}` is the stock schema."""
    states = ", ".join(f"'{s}'" for s in TERMINAL_ORDER_STATES)
    return Invariant(
        "reservations_of_terminal_orders",
        "an order that ended (rejected, cancelled, delivered, returned) holds no stock",
        f"""SELECT r.order_id AS subject,
                   o.state || ' but holds ' || string_agg(r.quantity || ' of ' || r.sku || '@'
                   || r.location, ', ' ORDER BY r.sku, r.location) AS detail
            FROM {{schema}}.reservations r JOIN {orders_schema}.orders o USING (order_id)
            WHERE o.state IN ({states}) AND r.quantity > 0
              AND o.updated_at < now() - make_interval(secs => {float(settle_seconds)!r})
            GROUP BY r.order_id, o.state""",
    )


def reservations_beyond_what_is_left_to_ship(
    orders_schema: str, settle_seconds: float
) -> Invariant:
    """Stock holds more units for a line of a live order than the order has left to ship
    (ordered - shipped - cancelled): units cancelled or lost whose release never came. A
    bundle line holds its components, so for it only "holds something, nothing left" counts.
    `{schema}` is the stock schema; terminal orders are `reservations_of_terminal_orders`."""
    states = ", ".join(f"'{s}'" for s in TERMINAL_ORDER_STATES)
    return Invariant(
        "reservations_beyond_what_is_left_to_ship",
        "stock holds no more for an order line than the order has left to ship",
        f"""SELECT r.order_id || '/' || r.line_id AS subject,
                   format('%s holds %s unit(s) (%s); %s left to ship of %s ordered',
                          o.state, sum(r.quantity),
                          string_agg(r.sku || '@' || r.location, ', ' ORDER BY r.sku, r.location),
                          w.left_to_ship, w.sku) AS detail
            FROM {{schema}}.reservations r
            JOIN {orders_schema}.orders o USING (order_id)
            CROSS JOIN LATERAL (
                SELECT l->>'sku' AS sku,
                       (l->>'quantity')::int - (l->>'shipped')::int
                       - coalesce((l->>'cancelled')::int, 0) AS left_to_ship
                FROM jsonb_array_elements(o.saga->'lines') l
                WHERE l->>'line_id' = r.line_id
            ) w
            WHERE r.quantity > 0 AND o.state NOT IN ({states})
              AND o.updated_at < now() - make_interval(secs => {float(settle_seconds)!r})
            GROUP BY r.order_id, r.line_id, o.state, w.sku, w.left_to_ship
            HAVING coalesce(sum(r.quantity) FILTER (WHERE r.sku = w.sku), 0) > w.left_to_ship
                OR w.left_to_ship = 0""",
    )


def backorders_the_order_waits_for(orders_schema: str, settle_seconds: float) -> Invariant:
    """A live order waits for backordered units of a line for which stock has no open
    backorder: nothing will ever allocate them (units put back on backorder that stock served
    without telling the order). Nothing stock said about the order may be younger than
    `settle_seconds` or unsent (its outbox), so an allocation on its way is not counted.
    `{schema}` is the stock schema."""
    states = ", ".join(f"'{s}'" for s in (*TERMINAL_ORDER_STATES, "received", "reserving"))
    settled = f"make_interval(secs => {float(settle_seconds)!r})"
    return Invariant(
        "backorders_the_order_waits_for_are_open",
        "a live order that waits for backordered units of a line has an open backorder for it",
        f"""SELECT o.order_id || '/' || (l->>'line_id') AS subject,
                   format('%s waits for %s backordered unit(s) of %s; stock has no open '
                          'backorder for the line', o.state, l->>'backordered', l->>'sku')
                   AS detail
            FROM {orders_schema}.orders o
            CROSS JOIN LATERAL jsonb_array_elements(o.saga->'lines') l
            WHERE o.state NOT IN ({states}) AND (l->>'backordered')::int > 0
              AND o.updated_at < now() - {settled}
              AND NOT EXISTS (SELECT 1 FROM {{schema}}.backorders b
                              WHERE b.order_id = o.order_id AND b.line_id = l->>'line_id'
                                AND b.open > 0)
              AND NOT EXISTS (SELECT 1 FROM {{schema}}.outbox ob
                              WHERE ob.key = convert_to(o.order_id, 'UTF8')
                                AND (ob.sent_at IS NULL OR ob.created_at > now() - {settled}))""",
    )


def service_invariants(settle_seconds: float) -> dict[str, tuple[Invariant, ...]]:
    return {
        "stock": stock_invariants.INVARIANTS,
        "order": order_invariants.invariants(settle_seconds),
        "fulfillment": fulfillment_invariants.INVARIANTS,
        "accounting": accounting_invariants.INVARIANTS,
    }


def owner_of(invariant: str, settle_seconds: float = 60.0) -> str:
    """The service whose invariant this is ('stock+order' for a cross-service one)."""
    if invariant == LEVELS_STREAM:
        return "stock"
    for service, invariants in service_invariants(settle_seconds).items():
        if any(i.name == invariant for i in invariants):
            return service
    return CROSS_SERVICE


async def find_system_violations(
    conn: asyncpg.Connection,
    *,
    settle_seconds: float = 60.0,
    schemas: dict[str, str] | None = None,
    limit: int = LIMIT,
) -> list[Violation]:
    """Every invariant of every service plus the cross-service ones, in one read-only snapshot."""
    schemas = schemas or SCHEMAS
    found: list[Violation] = []
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        for service, invariants in service_invariants(settle_seconds).items():
            found += await run_invariants(conn, schemas[service], invariants, limit=limit)
        cross = [
            reservations_of_terminal_orders(schemas["order"], settle_seconds),
            reservations_beyond_what_is_left_to_ship(schemas["order"], settle_seconds),
            backorders_the_order_waits_for(schemas["order"], settle_seconds),
        ]
        found += await run_invariants(conn, schemas["stock"], cross, limit=limit)
    return found


async def check_system(admin_dsn: str, *, settle_seconds: float = 60.0) -> list[Violation]:
    """Every violation of stockflow's invariants, all services, one snapshot.

    Args:
        admin_dsn: a connection that may read every service's schema.
        settle_seconds: how long an order may take to settle (and a terminal order's release
            to arrive) before it counts as a violation.
    """
    conn = await asyncpg.connect(admin_dsn)
    try:
        return await find_system_violations(conn, settle_seconds=settle_seconds)
    finally:
        await conn.close()


# --- the levels stream ----------------------------------------------------------------------

LEVELS_STREAM = "levels_stream_matches_table"
STREAM_BUCKETS = (
    "on_hand",
    "reserved",
    "available",
    "incoming",
    "backordered",
    "damaged",
    "quality_control",
    "safety_stock",
)
Level = tuple[str, str]


def stream_levels(records: Iterable[Any]) -> dict[Level, StockLevelChanged]:
    """Levels rebuilt from a compacted read: per (sku, location) the highest version (records
    keyed by sku alone, from before the key named the location, lose to newer versions)."""
    levels: dict[Level, StockLevelChanged] = {}
    for record in records:
        try:
            event = parse(decode(record.value, record.headers))
        except InvalidMessage:
            continue  # not a level record: nothing to rebuild from it
        if not isinstance(event, StockLevelChanged):
            continue
        seen = levels.get((event.sku, event.location))
        if seen is None or seen.version < event.version:
            levels[(event.sku, event.location)] = event
    return levels


def compare_levels_stream(
    table: Iterable[Mapping[str, Any]],
    stream: Mapping[Level, StockLevelChanged],
    in_flight: set[str],
) -> list[Violation]:
    """Each level whose record on the stream is missing, of another version or says other
    buckets; levels whose record still waits in the outbox (`in_flight`, `sku@location`) and
    levels never changed (version 0: nothing to publish) are left out."""
    rows = {(r["sku"], r["location"]): r for r in table if r["version"] > 0}
    found: list[Violation] = []
    for level in sorted(rows.keys() | stream.keys()):
        subject = f"{level[0]}@{level[1]}"
        detail = _stream_difference(rows.get(level), stream.get(level))
        if detail and subject not in in_flight:
            found.append(Violation(LEVELS_STREAM, subject, detail))
    return found


def _stream_difference(row: Mapping[str, Any] | None, event: StockLevelChanged | None) -> str:
    if row is None:
        assert event is not None
        return f"version {event.version} on {LEVELS}, no level in the table"
    if event is None:
        return f"version {row['version']} in the table, no record on {LEVELS}"
    if event.version != row["version"]:
        return f"version {row['version']} in the table, {event.version} on {LEVELS}"
    return "; ".join(
        f"{b} {row[b]}, {LEVELS} says {getattr(event, b)}"
        for b in STREAM_BUCKETS
        if row[b] != getattr(event, b)
    )


async def check_levels_stream(
    admin_dsn: str, bootstrap: str, schema: str = "stock"
) -> list[Violation]:
    """Every level against the last record of its key on stock.levels.v1.

    The table and the outbox are read first, in one snapshot; then the topic to its end: a
    record the snapshot saw sent is on it by then. A record newer than the snapshot is
    checked against the level as it is now.
    """
    conn = await asyncpg.connect(admin_dsn)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            table = await conn.fetch(
                f"SELECT sku, location, version, {', '.join(STREAM_BUCKETS)} FROM {schema}.levels"
            )
            in_flight = await conn.fetch(
                f"SELECT DISTINCT convert_from(key, 'UTF8') AS k FROM {schema}.outbox "
                "WHERE sent_at IS NULL AND topic = $1",
                LEVELS,
            )
        try:
            stream = stream_levels((await kt.last_per_key(bootstrap, LEVELS)).values())
        except (kt.OpsError, KafkaError) as exc:  # unchecked is not clean: say why
            return [Violation(LEVELS_STREAM, "*", f"cannot read {LEVELS}: {exc}")]
        versions = {(r["sku"], r["location"]): r["version"] for r in table}
        ahead = [key for key, e in stream.items() if e.version > versions.get(key, 0)]
        now = await conn.fetch(
            f"SELECT sku, location, version FROM {schema}.levels "
            "WHERE (sku, location) IN (SELECT * FROM unnest($1::text[], $2::text[]))",
            [k[0] for k in ahead],
            [k[1] for k in ahead],
        )
    finally:
        await conn.close()
    moved_since = {
        f"{r['sku']}@{r['location']}"
        for r in now
        if r["version"] >= stream[(r["sku"], r["location"])].version
    }
    return compare_levels_stream(table, stream, {r["k"] for r in in_flight} | moved_since)


# --- repair ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Correction:
    """A corrective movement and what it was proposed from (the stock API re-checks it)."""

    invariant: str
    kind: str
    sku: str
    location: str
    quantity: int
    drift: int | None = None
    order_id: str | None = None
    line_id: str | None = None
    held: int | None = None


async def propose_repairs(
    conn: asyncpg.Connection,
    *,
    settle_seconds: float = 60.0,
    schemas: dict[str, str] | None = None,
) -> list[Correction]:
    """One movement per drifted level, then a release per line a terminal order still holds.

    A level's drift is its reserved minus its open reservations: released when positive,
    reserved when negative. Releasing a terminal order's line lowers both sides alike, so the
    two kinds of correction do not interfere. A level its own ledger does not explain gets no
    proposal: a movement would only move the ledger further from it (someone edited the level
    in place; that needs a person, not a movement).
    """
    schemas = schemas or SCHEMAS
    stock, orders = schemas["stock"], schemas["order"]
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        lines = await conn.fetch(
            f"""SELECT r.order_id, r.line_id, r.sku, r.location, r.quantity
                FROM {stock}.reservations r JOIN {orders}.orders o USING (order_id)
                WHERE o.state = ANY($1::text[]) AND r.quantity > 0
                  AND o.updated_at < now() - make_interval(secs => $2)
                ORDER BY r.order_id, r.line_id, r.sku, r.location""",
            list(TERMINAL_ORDER_STATES),
            float(settle_seconds),
        )
        levels = await conn.fetch(
            f"""SELECT l.sku, l.location, l.reserved - coalesce(r.held, 0) AS drift
                FROM {stock}.levels l
                LEFT JOIN (SELECT sku, location, sum(quantity) AS held
                           FROM {stock}.reservations GROUP BY sku, location) r
                  USING (sku, location)
                WHERE l.reserved <> coalesce(r.held, 0)
                ORDER BY l.sku, l.location"""
        )
        unexplained = {
            v.subject
            for v in await run_invariants(
                conn, stock, [stock_invariants.LEDGER_EXPLAINS_LEVELS], limit=100_000
            )
        }
    corrections = [
        Correction(
            "reserved_is_open_reservations",
            "release" if r["drift"] > 0 else "reservation",
            r["sku"],
            r["location"],
            abs(r["drift"]),
            drift=r["drift"],
        )
        for r in levels
        if f"{r['sku']}@{r['location']}" not in unexplained
    ]
    releases = [
        Correction(
            "reservations_of_terminal_orders",
            "release",
            r["sku"],
            r["location"],
            r["quantity"],
            order_id=r["order_id"],
            line_id=r["line_id"],
            held=r["quantity"],
        )
        for r in lines
    ]
    # Level corrections first: a level whose rows claim more than it holds gets its units back
    # before a dead order's line gives them up (and the drift is re-checked as it was seen).
    return corrections + releases


class RepairRefused(Exception):
    """The stock service refused the repair (stale proposal, not enough stock, no access)."""


async def apply_repairs(
    corrections: list[Correction],
    *,
    operator: str,
    note: str | None = None,
    repair_id: str | None = None,
    stock_url: str | None = None,
) -> dict[str, Any]:
    """POST the corrections to the stock service (one transaction there); its answer."""
    repair_id = repair_id or str(uuid.uuid4())
    body = {
        "repair_id": repair_id,
        "operator": operator,
        "note": note,
        "corrections": [{k: v for k, v in asdict(c).items() if v is not None} for c in corrections],
    }
    async with httpx.AsyncClient(base_url=stock_url or service_url("stock"), timeout=30) as api:
        response = await api.post(
            "/admin/repairs",
            json=body,
            headers=auth_headers() | {"Idempotency-Key": f"repair:{repair_id}"},
        )
    if response.status_code != 200:
        raise RepairRefused(f"{response.status_code}: {response.text}")
    return response.json()


async def record_repair(bootstrap: str, applied: dict[str, Any], note: str | None) -> None:
    """Write the repair to ops.audit.v1 (the operator's principal writes it, as DLQ replays)."""
    moment = kt.now_text()
    data = {
        "action": "stock.repair",
        "repair_id": applied["repair_id"],
        "cause_event_id": applied["cause_event_id"],
        "repaired_by": applied["operator"],
        "repaired_at": moment,
        "note": note,
        "movements": applied["movements"],
    }
    headers = [
        ("ce_specversion", SPEC_VERSION.encode()),
        ("ce_id", str(uuid.uuid4()).encode()),
        ("ce_source", kt.AUDIT_SOURCE.encode()),
        ("ce_type", REPAIR_EVENT_TYPE.encode()),
        ("ce_time", moment.encode()),
        ("ce_subject", applied["cause_event_id"].encode()),
        ("content-type", JSON.encode()),
        ("traceparent", new_traceparent().encode()),
    ]
    async with kt.writer(bootstrap) as producer:
        await producer.send_and_wait(
            kt.AUDIT_TOPIC,
            json.dumps(data, default=str).encode(),
            key=applied["cause_event_id"].encode(),
            headers=headers,
        )


# --- the command ----------------------------------------------------------------------------


def check(
    settle: Annotated[
        float,
        typer.Option(
            "--settle",
            min=0,
            help="Seconds an order may take to settle (and a release to arrive) before it counts.",
        ),
    ] = 60.0,
    as_json: JsonOption = False,
    repair: Annotated[
        bool,
        typer.Option("--repair", help="Propose corrective movements for drifted reservations."),
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Apply without asking.")] = False,
    note: Annotated[str | None, typer.Option(help="Why: kept with the repair.")] = None,
) -> None:
    """Check every invariant of every service; exit 1 when anything is violated.

    With --repair: propose a release for each line a terminal order still holds and a
    movement for each level whose reserved drifted from its open reservations, apply them
    through the stock service once confirmed (each an audited ledger movement), check again.
    """
    console = Console()
    dsn = setting("DATABASE_URL")
    violations = asyncio.run(check_system(dsn, settle_seconds=settle))
    violations += asyncio.run(check_levels_stream(dsn, setting("KAFKA_BOOTSTRAP_SERVERS")))
    if as_json and not repair:
        typer.echo(
            json.dumps(
                {
                    "ok": not violations,
                    "violations": [
                        asdict(v) | {"service": owner_of(v.invariant)} for v in violations
                    ],
                }
            )
        )
        raise typer.Exit(1 if violations else 0)
    _print_violations(console, violations)
    if not repair:
        raise typer.Exit(1 if violations else 0)

    async def propose() -> list[Correction]:
        conn = await asyncpg.connect(dsn)
        try:
            return await propose_repairs(conn, settle_seconds=settle)
        finally:
            await conn.close()

    corrections = asyncio.run(propose())
    if not corrections:
        console.print("no drifted reservations to repair")
        raise typer.Exit(1 if violations else 0)
    _print_corrections(console, corrections)
    if not yes:
        typer.confirm(f"Apply {len(corrections)} corrective movement(s)?", abort=True)
    operator = os.environ.get("STOCKFLOW_OPERATOR") or f"{getpass.getuser()}@{socket.gethostname()}"
    try:
        applied = asyncio.run(apply_repairs(corrections, operator=operator, note=note))
    except (RepairRefused, httpx.HTTPError) as exc:
        Console(stderr=True).print(f"[red]repair refused, nothing changed:[/] {escape(str(exc))}")
        raise typer.Exit(1) from exc
    console.print(
        f"[green]applied[/] {len(applied['movements'])} movement(s), cause "
        f"{applied['cause_event_id']}"
    )
    try:
        asyncio.run(record_repair(setting("KAFKA_BOOTSTRAP_SERVERS"), applied, note))
        console.print(f"recorded in {kt.AUDIT_TOPIC}")
    except Exception as exc:  # the repair stands: say it went unrecorded
        Console(stderr=True).print(
            f"[red]repaired but NOT recorded in {kt.AUDIT_TOPIC}:[/] "
            f"{applied['cause_event_id']} ({escape(repr(exc))})"
        )
        raise typer.Exit(1) from exc
    remaining = asyncio.run(check_system(dsn, settle_seconds=settle))
    console.rule("after the repair")
    _print_violations(console, remaining)
    raise typer.Exit(1 if remaining else 0)


def _print_violations(console: Console, violations: list[Violation]) -> None:
    if not violations:
        console.print("[green]every invariant holds[/]")
        return
    table = Table("service", "invariant", "subject", "detail", title="invariant violations")
    for v in violations:
        table.add_row(owner_of(v.invariant), v.invariant, escape(v.subject), escape(v.detail[:200]))
    console.print(table)
    console.print(f"[red]{len(violations)} violation(s)[/]")


def _print_corrections(console: Console, corrections: list[Correction]) -> None:
    table = Table("invariant", "movement", "sku@location", "quantity", "for", title="proposed")
    for c in corrections:
        why = (
            f"order {c.order_id} line {c.line_id}"
            if c.order_id
            else f"reserved is {c.drift:+d} off its open reservations"
        )
        table.add_row(c.invariant, c.kind, f"{c.sku}@{c.location}", str(c.quantity), escape(why))
    console.print(table)
