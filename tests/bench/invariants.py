"""What must hold after any run of the saga, as SQL over the services' schemas.

Each check returns one row per violation (`subject`, `detail`), the shape of
`stockflow.runtime.invariants.Invariant`, so the reliability suite and a `stockflow check`
command can take these as they are. `{stock}` and `{orders}` are the schema names.

- no_oversell: no bucket of a level below zero, available never below zero.
- reserved_is_open_reservations: a level's reserved equals the sum of its open reservations.
- ledger_explains_levels: replaying the movement ledger gives each level's on_hand, reserved
  and backordered (stock conserved: nothing appears or vanishes outside the ledger).
- reservation_applied_once: at most one `reservation` movement per (order, sku, location).
- no_stock_held_for_dead_orders: a rejected or cancelled order holds nothing.
- orders_settled (run-scoped): every order this run submitted exists and its reservation saga
  is over.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

SETTLED_STATES = (
    "confirmed",
    "partially_shipped",
    "shipped",
    "delivered",
    "rejected",
    "cancelled",
    "returned",
)


@dataclass(frozen=True)
class Check:
    name: str
    description: str
    sql: str

    def query(self, schemas: dict[str, str]) -> str:
        text = self.sql
        for placeholder, schema in schemas.items():
            text = text.replace("{" + placeholder + "}", schema)
        return text


AVAILABLE = "l.on_hand - l.reserved - l.damaged - l.quality_control - l.safety_stock"

STOCK_CHECKS = [
    Check(
        "no_oversell",
        "every bucket of a level is >= 0 and available is >= 0",
        f"""SELECT l.sku || '@' || l.location AS subject,
                   'on_hand=' || l.on_hand || ' reserved=' || l.reserved
                   || ' available=' || ({AVAILABLE}) AS detail
            FROM {{stock}}.levels l
            WHERE ({AVAILABLE}) < 0 OR l.on_hand < 0 OR l.reserved < 0 OR l.backordered < 0""",
    ),
    Check(
        "reserved_is_open_reservations",
        "levels.reserved equals the sum of the level's open reservations",
        """SELECT l.sku || '@' || l.location AS subject,
                  'reserved=' || l.reserved || ' open reservations=' || coalesce(r.held, 0)
                  AS detail
           FROM {stock}.levels l
           LEFT JOIN (SELECT sku, location, sum(quantity) AS held
                      FROM {stock}.reservations GROUP BY sku, location) r
             USING (sku, location)
           WHERE l.reserved <> coalesce(r.held, 0)""",
    ),
    Check(
        "ledger_explains_levels",
        "replaying the movement ledger gives on_hand, reserved and backordered",
        """WITH ledger AS (
             SELECT sku, location,
               sum(CASE kind WHEN 'receipt' THEN quantity WHEN 'return_restock' THEN quantity
                             WHEN 'adjustment' THEN quantity WHEN 'transfer_in' THEN quantity
                             WHEN 'transfer_out' THEN -quantity WHEN 'shipment' THEN -quantity
                             WHEN 'write_off' THEN -quantity ELSE 0 END) AS on_hand,
               sum(CASE kind WHEN 'reservation' THEN quantity WHEN 'release' THEN -quantity
                             WHEN 'shipment' THEN -quantity
                             WHEN 'backorder_allocated' THEN quantity ELSE 0 END) AS reserved,
               sum(CASE kind WHEN 'backorder_opened' THEN quantity
                             WHEN 'backorder_allocated' THEN -quantity ELSE 0 END)
                 AS backordered
             FROM {stock}.movements GROUP BY sku, location)
           SELECT l.sku || '@' || l.location AS subject,
                  format('level on_hand=%s reserved=%s backordered=%s; ledger %s/%s/%s',
                         l.on_hand, l.reserved, l.backordered,
                         coalesce(g.on_hand, 0), coalesce(g.reserved, 0),
                         coalesce(g.backordered, 0)) AS detail
           FROM {stock}.levels l LEFT JOIN ledger g USING (sku, location)
           WHERE l.on_hand <> coalesce(g.on_hand, 0)
              OR l.reserved <> coalesce(g.reserved, 0)
              OR l.backordered <> coalesce(g.backordered, 0)""",
    ),
    Check(
        "reservation_applied_once",
        "at most one reservation movement per (order, sku, location)",
        """SELECT order_id || ' ' || sku || '@' || location AS subject,
                  count(*) || ' reservation movements' AS detail
           FROM {stock}.movements WHERE kind = 'reservation' AND order_id IS NOT NULL
           GROUP BY order_id, sku, location HAVING count(*) > 1""",
    ),
    Check(
        "no_stock_held_for_dead_orders",
        "a rejected or cancelled order holds no reservation",
        """SELECT r.order_id AS subject,
                  o.state || ' but holds ' || sum(r.quantity) || ' units' AS detail
           FROM {stock}.reservations r JOIN {orders}.orders o USING (order_id)
           WHERE o.state IN ('rejected', 'cancelled') AND r.quantity > 0
           GROUP BY r.order_id, o.state""",
    ),
]


async def run_checks(
    conn: asyncpg.Connection,
    order_ids: list[str],
    *,
    schemas: dict[str, str] | None = None,
    limit: int = 20,
    stock_checks: bool = True,
) -> dict[str, Any]:
    """Every check in one read-only snapshot; {name: {ok, violations, examples}}."""
    schemas = schemas or {"stock": "stock", "orders": "orders"}
    results: dict[str, Any] = {}
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        for check in STOCK_CHECKS if stock_checks else ():
            try:
                rows = await conn.fetch(f"SELECT * FROM ({check.query(schemas)}) v")
            except asyncpg.PostgresError as exc:
                results[check.name] = {"ok": False, "error": repr(exc)[:300]}
                continue
            results[check.name] = _result(rows, limit)
        rows = await conn.fetch(
            f"""SELECT i.order_id AS subject, coalesce(o.state, '(missing)') AS detail
                FROM unnest($1::text[]) AS i(order_id)
                LEFT JOIN {schemas["orders"]}.orders o USING (order_id)
                WHERE o.state IS NULL OR NOT (o.state = ANY($2::text[]))""",
            order_ids,
            list(SETTLED_STATES),
        )
        results["orders_settled"] = _result(rows, limit) | {"orders": len(order_ids)}
    return results


def _result(rows: list[asyncpg.Record], limit: int) -> dict[str, Any]:
    return {
        "ok": not rows,
        "violations": len(rows),
        "examples": [f"{r['subject']}: {r['detail']}" for r in rows[:limit]],
    }


def all_ok(results: dict[str, Any]) -> bool:
    return bool(results) and all(r.get("ok") for r in results.values())
