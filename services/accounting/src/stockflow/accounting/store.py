"""SQL for the accounting schema: load a `Books` working set, write it back, and the reports."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from stockflow.accounting.domain import (
    Account,
    Cause,
    CostMethod,
    JournalEntry,
    JournalLine,
    Money,
    PeriodCalendar,
    SkuValuation,
)
from stockflow.accounting.domain.books import Books, LinePrice, Pending, PriceRow, ShipmentCost

PERIODS_LOCK = "accounting:periods"


# --- locks ----------------------------------------------------------------------------------


async def lock_calendar(conn: asyncpg.Connection, *, exclusive: bool = False) -> PeriodCalendar:
    """The closed periods, read under a lock that a period close takes exclusively.

    Posting takes it shared, so a period cannot close between reading the calendar and
    committing entries placed by it.
    """
    lock = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
    await conn.execute(f"SELECT {lock}(hashtext($1))", PERIODS_LOCK)
    rows = await conn.fetch("SELECT period FROM periods")
    return PeriodCalendar(frozenset(row["period"] for row in rows))


async def lock_orders(conn: asyncpg.Connection, order_ids: Iterable[str]) -> None:
    """Serialise the consumers that meet on an order (prices, shipment costs, parked postings).

    Taken in sorted order by everyone, so two transactions never wait on each other in a cycle.
    """
    ids = sorted(set(order_ids))
    if ids:
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('accounting:order:' || id, 0)) "
            "FROM unnest($1::text[]) WITH ORDINALITY AS u(id, n) ORDER BY n",
            ids,
        )


# --- loading a working set ------------------------------------------------------------------


async def open_books(
    conn: asyncpg.Connection,
    *,
    skus: Iterable[str] = (),
    order_ids: Iterable[str] = (),
) -> Books:
    """Lock and load what posting for these SKUs and orders needs."""
    calendar = await lock_calendar(conn)
    order_ids = sorted(set(order_ids))
    await lock_orders(conn, order_ids)
    books = Books(calendar)
    skus = sorted(set(skus))
    if skus:
        for row in await conn.fetch(
            "SELECT state FROM valuations WHERE sku = ANY($1::text[]) ORDER BY sku FOR UPDATE",
            skus,
        ):
            valuation = SkuValuation.from_dict(row["state"])
            books.valuations[valuation.sku] = valuation
        for row in await conn.fetch(
            "SELECT sku, method FROM sku_cost_methods WHERE sku = ANY($1::text[])", skus
        ):
            books.methods[row["sku"]] = CostMethod(row["method"])
    if order_ids:
        await _load_order_state(conn, books, order_ids)
    return books


async def _load_order_state(conn: asyncpg.Connection, books: Books, order_ids: list[str]) -> None:
    for row in await conn.fetch(
        "SELECT * FROM shipment_costs WHERE order_id = ANY($1::text[]) ORDER BY seq", order_ids
    ):
        currency = row["currency"]
        books.shipment_costs.setdefault((row["order_id"], row["sku"]), []).append(
            ShipmentCost(
                row["movement_id"],
                row["order_id"],
                row["sku"],
                row["quantity"],
                Money(row["cost"], currency),
                row["quantity_left"],
                Money(row["cost_left"], currency),
            )
        )
    for row in await conn.fetch(
        # The revenue posted on confirmation (untracked lines), net of a cancel's reversal.
        "SELECT l.order_id, l.sku, e.currency, sum(l.credit - l.debit) AS revenue "
        "FROM journal_lines l JOIN journal_entries e USING (entry_id) "
        "WHERE l.order_id = ANY($1::text[]) AND l.account = 'revenue' "
        "AND e.cause_type IN ('order.confirmed.v1', 'order.cancelled.v1') GROUP BY 1, 2, 3",
        order_ids,
    ):
        books.untracked_revenue.setdefault(row["order_id"], {})[row["sku"]] = Money(
            row["revenue"], row["currency"]
        )
    for row in await conn.fetch(
        "SELECT * FROM order_prices WHERE order_id = ANY($1::text[])", order_ids
    ):
        books.prices[(row["order_id"], row["line_id"])] = LinePrice(
            row["sku"], row["unit_price"], row["currency"]
        )


async def load_pending(conn: asyncpg.Connection, order_ids: Iterable[str]) -> list[Pending]:
    rows = await conn.fetch(
        "SELECT * FROM pending_postings WHERE order_id = ANY($1::text[]) "
        "ORDER BY parked_at, cause_id, rule",
        sorted(set(order_ids)),
    )
    return [
        Pending(
            Cause(row["cause_type"], row["cause_id"]),
            row["rule"],
            row["order_id"],
            row["occurred_at"],
            row["payload"],
        )
        for row in rows
    ]


async def claim_movements(conn: asyncpg.Connection, movement_ids: Sequence[str]) -> set[str]:
    """Record movements as valued; returns the ids not valued before."""
    rows = await conn.fetch(
        "INSERT INTO applied_movements (movement_id) SELECT unnest($1::text[]) "
        "ON CONFLICT DO NOTHING RETURNING movement_id",
        list(movement_ids),
    )
    return {row["movement_id"] for row in rows}


async def save_prices(conn: asyncpg.Connection, rows: Sequence[PriceRow]) -> None:
    if not rows:
        return
    columns = list(zip(*rows, strict=True))
    await conn.execute(
        "INSERT INTO order_prices (order_id, line_id, sku, unit_price, currency) "
        "SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::numeric[], $5::text[]) "
        "ON CONFLICT DO NOTHING",
        *[list(column) for column in columns],
    )


# --- writing a working set back -------------------------------------------------------------


async def save_books(conn: asyncpg.Connection, books: Books) -> list[JournalEntry]:
    """Write valuations, shipment costs, parked postings and entries; returns entries new here."""
    await _save_valuations(conn, [books.valuations[s] for s in sorted(books.changed_skus)])
    await _save_shipment_costs(
        conn, [row for rows in books.shipment_costs.values() for row in rows if row.changed]
    )
    await _save_pending(conn, books.parked, books.settled)
    return await insert_entries(conn, books.entries)


async def _save_valuations(conn: asyncpg.Connection, valuations: list[SkuValuation]) -> None:
    if not valuations:
        return
    await conn.execute(
        "INSERT INTO valuations (sku, currency, method, state, quantity, value, version) "
        "SELECT s, c, m, st::jsonb, q, v, 1 FROM unnest($1::text[], $2::text[], $3::text[], "
        "$4::text[], $5::int[], $6::numeric[]) AS u(s, c, m, st, q, v) "
        "ON CONFLICT (sku) DO UPDATE SET method = EXCLUDED.method, state = EXCLUDED.state, "
        "quantity = EXCLUDED.quantity, value = EXCLUDED.value, "
        "version = valuations.version + 1, updated_at = now()",
        [v.sku for v in valuations],
        [v.currency for v in valuations],
        [v.method.value for v in valuations],
        [json.dumps(v.to_dict()) for v in valuations],
        [v.quantity for v in valuations],
        [v.value.amount for v in valuations],
    )


async def _save_shipment_costs(conn: asyncpg.Connection, rows: list[ShipmentCost]) -> None:
    if not rows:
        return
    await conn.execute(
        "INSERT INTO shipment_costs (movement_id, order_id, sku, currency, quantity, cost, "
        "quantity_left, cost_left) SELECT * FROM unnest($1::text[], $2::text[], $3::text[], "
        "$4::text[], $5::int[], $6::numeric[], $7::int[], $8::numeric[]) "
        "ON CONFLICT (movement_id) DO UPDATE SET quantity_left = EXCLUDED.quantity_left, "
        "cost_left = EXCLUDED.cost_left",
        [r.movement_id for r in rows],
        [r.order_id for r in rows],
        [r.sku for r in rows],
        [r.cost.currency for r in rows],
        [r.quantity for r in rows],
        [r.cost.amount for r in rows],
        [r.quantity_left for r in rows],
        [r.cost_left.amount for r in rows],
    )


async def _save_pending(
    conn: asyncpg.Connection, parked: list[Pending], settled: list[Pending]
) -> None:
    if settled:
        await conn.execute(
            "DELETE FROM pending_postings p USING unnest($1::text[], $2::text[]) AS u(c, r) "
            "WHERE p.cause_id = u.c AND p.rule = u.r",
            [p.cause.id for p in settled],
            [p.rule for p in settled],
        )
    if parked:
        await conn.execute(
            "INSERT INTO pending_postings (cause_id, rule, cause_type, order_id, occurred_at, "
            "payload, waiting_for) SELECT c, r, t, o, a, p::jsonb, w FROM unnest($1::text[], "
            "$2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::text[], $7::text[]) "
            "AS u(c, r, t, o, a, p, w) ON CONFLICT DO NOTHING",
            [p.cause.id for p in parked],
            [p.rule for p in parked],
            [p.cause.type for p in parked],
            [p.order_id for p in parked],
            [p.occurred_at for p in parked],
            [json.dumps(p.payload) for p in parked],
            [p.waiting_for for p in parked],
        )


async def insert_entries(
    conn: asyncpg.Connection, entries: list[JournalEntry]
) -> list[JournalEntry]:
    """Insert entries and their lines; an entry whose id exists already is skipped."""
    if not entries:
        return []
    rows = await conn.fetch(
        "INSERT INTO journal_entries (entry_id, posted_at, period, cause_type, cause_id, "
        "currency, note) SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::text[], "
        "$4::text[], $5::text[], $6::text[], $7::text[]) "
        "ON CONFLICT (entry_id) DO NOTHING RETURNING entry_id",
        [e.entry_id for e in entries],
        [e.posted_at for e in entries],
        [e.period for e in entries],
        [e.cause.type for e in entries],
        [e.cause.id for e in entries],
        [e.currency for e in entries],
        [e.note for e in entries],
    )
    new_ids = {row["entry_id"] for row in rows}
    fresh = [e for e in entries if e.entry_id in new_ids]
    lines = [(e.entry_id, n, line) for e in fresh for n, line in enumerate(e.lines, start=1)]
    if lines:
        await conn.execute(
            "INSERT INTO journal_lines (entry_id, line_no, account, debit, credit, sku, "
            "order_id) SELECT * FROM unnest($1::uuid[], $2::int[], $3::text[], "
            "$4::numeric[], $5::numeric[], $6::text[], $7::text[])",
            [entry_id for entry_id, _, _ in lines],
            [n for _, n, _ in lines],
            [line.account.value for _, _, line in lines],
            [line.debit.amount for _, _, line in lines],
            [line.credit.amount for _, _, line in lines],
            [line.sku for _, _, line in lines],
            [line.order_id for _, _, line in lines],
        )
    return fresh


# --- admin writes ---------------------------------------------------------------------------


async def close_period(conn: asyncpg.Connection, period: str) -> tuple[datetime, bool]:
    """Close `period` (waits for postings in flight); returns when it closed, newly or not."""
    await lock_calendar(conn, exclusive=True)
    row = await conn.fetchrow(
        "INSERT INTO periods (period) VALUES ($1) ON CONFLICT DO NOTHING RETURNING closed_at",
        period,
    )
    if row is not None:
        return row["closed_at"], True
    return await conn.fetchval("SELECT closed_at FROM periods WHERE period = $1", period), False


async def set_cost_method(
    conn: asyncpg.Connection, sku: str, method: CostMethod
) -> SkuValuation | None:
    """Choose a SKU's cost method; units held are restated without changing their value."""
    await conn.execute(
        "INSERT INTO sku_cost_methods (sku, method) VALUES ($1, $2) ON CONFLICT (sku) DO UPDATE "
        "SET method = EXCLUDED.method, changed_at = now()",
        sku,
        method.value,
    )
    row = await conn.fetchrow("SELECT state FROM valuations WHERE sku = $1 FOR UPDATE", sku)
    if row is None:
        return None
    current = SkuValuation.from_dict(row["state"])
    if current.method is method:
        return current
    state = current.to_dict()
    state["method"] = method.value
    if method is CostMethod.MOVING_AVERAGE and current.quantity:
        state["layers"] = [
            {"ref": "moving-average", "quantity": current.quantity, "value": str(current.value)}
        ]
    restated = SkuValuation.from_dict(state)
    await _save_valuations(conn, [restated])
    return restated


# --- reads ----------------------------------------------------------------------------------

ENTRY_FILTERS = {
    "period": "e.period = ${}",
    "cause_type": "e.cause_type = ${}",
    "cause_id": "e.cause_id = ${}",
    "since": "e.posted_at >= ${}",
    "until": "e.posted_at < ${}",
}
LINE_FILTERS = {"sku": "l.sku = ${}", "order_id": "l.order_id = ${}", "account": "l.account = ${}"}


def _where(filters: dict[str, Any], args: list[Any]) -> str:
    clauses, line_clauses = [], []
    for name, value in filters.items():
        if value is None:
            continue
        args.append(value)
        if name in ENTRY_FILTERS:
            clauses.append(ENTRY_FILTERS[name].format(len(args)))
        else:
            line_clauses.append(LINE_FILTERS[name].format(len(args)))
    if line_clauses:
        clauses.append(
            "EXISTS (SELECT 1 FROM journal_lines l WHERE l.entry_id = e.entry_id AND "
            + " AND ".join(line_clauses)
            + ")"
        )
    return " AND ".join(clauses) or "true"


async def journal_page(
    conn: asyncpg.Connection, filters: dict[str, Any], *, after: int | None, limit: int
) -> list[tuple[int, JournalEntry]]:
    """Entries matching `filters` (an entry matches when any of its lines does), by seq."""
    args: list[Any] = []
    where = _where(filters, args)
    args += [after or 0, limit]
    heads = await conn.fetch(
        f"SELECT * FROM journal_entries e WHERE {where} AND e.seq > ${len(args) - 1} "
        f"ORDER BY e.seq LIMIT ${len(args)}",
        *args,
    )
    if not heads:
        return []
    lines: dict[UUID, list[asyncpg.Record]] = {}
    for row in await conn.fetch(
        "SELECT * FROM journal_lines WHERE entry_id = ANY($1::uuid[]) ORDER BY entry_id, line_no",
        [h["entry_id"] for h in heads],
    ):
        lines.setdefault(row["entry_id"], []).append(row)
    return [(head["seq"], _entry(head, lines[head["entry_id"]])) for head in heads]


def _entry(head: asyncpg.Record, lines: list[asyncpg.Record]) -> JournalEntry:
    currency = head["currency"]
    return JournalEntry(
        entry_id=head["entry_id"],
        posted_at=head["posted_at"],
        cause=Cause(head["cause_type"], head["cause_id"]),
        currency=currency,
        lines=tuple(
            JournalLine(
                Account(row["account"]),
                Money.of(row["debit"], currency),
                Money.of(row["credit"], currency),
                row["sku"],
                row["order_id"],
            )
            for row in lines
        ),
        note=head["note"],
    )


async def trial_balance(conn: asyncpg.Connection, period: str | None) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT e.currency, l.account, sum(l.debit) AS debit, sum(l.credit) AS credit "
        "FROM journal_lines l JOIN journal_entries e USING (entry_id) "
        "WHERE $1::text IS NULL OR e.period = $1 GROUP BY 1, 2 ORDER BY 1, 2",
        period,
    )


async def valuation_now(conn: asyncpg.Connection, sku: str | None) -> list[asyncpg.Record]:
    """Per SKU: the open layers' quantity and value, and the inventory account beside them."""
    return await conn.fetch(
        "SELECT v.sku, v.currency, v.method, v.quantity, v.value, v.version, "
        "coalesce(i.balance, 0) AS ledger_value FROM valuations v LEFT JOIN ("
        "  SELECT l.sku, sum(l.debit - l.credit) AS balance FROM journal_lines l "
        "  WHERE l.account = 'inventory' AND ($1::text IS NULL OR l.sku = $1) GROUP BY l.sku"
        ") i ON i.sku = v.sku WHERE $1::text IS NULL OR v.sku = $1 ORDER BY v.sku",
        sku,
    )


async def valuation_as_of(
    conn: asyncpg.Connection, as_of: datetime, sku: str | None
) -> list[asyncpg.Record]:
    """Inventory value per SKU at `as_of`, from the inventory account (which tracks the layers)."""
    return await conn.fetch(
        "SELECT l.sku, e.currency, sum(l.debit - l.credit) AS value "
        "FROM journal_lines l JOIN journal_entries e USING (entry_id) "
        "WHERE l.account = 'inventory' AND l.sku IS NOT NULL AND e.posted_at <= $1 "
        "AND ($2::text IS NULL OR l.sku = $2) GROUP BY 1, 2 ORDER BY 1, 2",
        as_of,
        sku,
    )


GROUPS = {"sku": "l.sku", "period": "e.period", "order": "l.order_id"}


async def profitability(
    conn: asyncpg.Connection, by: str, filters: dict[str, Any]
) -> list[asyncpg.Record]:
    """Revenue, returns, COGS, shrinkage and shipping per group, each on its account's normal
    side."""
    group = GROUPS[by]
    args: list[Any] = []
    extra = []
    for name, column in (("period", "e.period"), ("sku", "l.sku"), ("order_id", "l.order_id")):
        if filters.get(name) is not None:
            args.append(filters[name])
            extra.append(f"{column} = ${len(args)}")
    where = " AND ".join([f"{group} IS NOT NULL", *extra])
    return await conn.fetch(
        f"SELECT {group} AS grp, e.currency, "
        "sum(CASE WHEN l.account = 'revenue' THEN l.credit - l.debit ELSE 0 END) AS revenue, "
        "sum(CASE WHEN l.account = 'sales_returns' THEN l.debit - l.credit ELSE 0 END) "
        "AS sales_returns, "
        "sum(CASE WHEN l.account = 'cost_of_goods_sold' THEN l.debit - l.credit ELSE 0 END) "
        "AS cost_of_goods_sold, "
        "sum(CASE WHEN l.account = 'inventory_shrinkage' THEN l.debit - l.credit ELSE 0 END) "
        "AS shrinkage, "
        "sum(CASE WHEN l.account = 'shipping_expense' THEN l.debit - l.credit ELSE 0 END) "
        "AS shipping "
        "FROM journal_lines l JOIN journal_entries e USING (entry_id) "
        f"WHERE {where} AND l.account IN ('revenue', 'sales_returns', 'cost_of_goods_sold', "
        "'inventory_shrinkage', 'shipping_expense') GROUP BY 1, 2 ORDER BY 1, 2",
        *args,
    )


async def closed_periods(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT period, closed_at FROM periods ORDER BY period")


async def pending(conn: asyncpg.Connection, order_id: str | None) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT cause_type, cause_id, rule, order_id, occurred_at, waiting_for, parked_at "
        "FROM pending_postings WHERE $1::text IS NULL OR order_id = $1 "
        "ORDER BY parked_at LIMIT 1000",
        order_id,
    )
