"""What must hold after any run of the saga: the services' own invariants, plus the run's orders.

The SQL lives with the services (`stockflow.stock.invariants`) and the cross-service check with
`stockflow check` (`stockflow.cli.check`); this module only runs them for the benchmark and adds
what is scoped to one run:

- every stock invariant (no_oversell, reserved_is_open_reservations, ledger_explains_levels,
  reservation_applied_once, shipment_applied_once, backordered_is_open_backorders,
  receipt_applied_once, return_applied_once, count_applied_once);
- reservations_of_terminal_orders: an order that ended holds nothing (no settle time: the run
  is over when this is checked);
- orders_settled (run-scoped): every order this run submitted exists and its reservation saga
  is over.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from stockflow.cli.check import reservations_of_terminal_orders
from stockflow.order.domain.model import SETTLED_STATES as ORDER_SETTLED_STATES
from stockflow.runtime.invariants import Violation, run_invariants
from stockflow.stock.invariants import INVARIANTS as STOCK_INVARIANTS

SETTLED_STATES = tuple(sorted(state.value for state in ORDER_SETTLED_STATES))


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
    checks = [*STOCK_INVARIANTS, reservations_of_terminal_orders(schemas["orders"], 0)]
    results: dict[str, Any] = {}
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        for check in checks if stock_checks else ():
            try:
                # A savepoint, so one failing check does not abort the snapshot for the rest.
                async with conn.transaction():
                    found = await run_invariants(conn, schemas["stock"], [check], limit=100_000)
            except asyncpg.PostgresError as exc:
                results[check.name] = {"ok": False, "error": repr(exc)[:300]}
                continue
            results[check.name] = _result(found, limit)
        rows = await conn.fetch(
            f"""SELECT i.order_id AS subject, coalesce(o.state, '(missing)') AS detail
                FROM unnest($1::text[]) AS i(order_id)
                LEFT JOIN {schemas["orders"]}.orders o USING (order_id)
                WHERE o.state IS NULL OR NOT (o.state = ANY($2::text[]))""",
            order_ids,
            list(SETTLED_STATES),
        )
        unsettled = [Violation("orders_settled", r["subject"], r["detail"]) for r in rows]
        results["orders_settled"] = _result(unsettled, limit) | {"orders": len(order_ids)}
    return results


def _result(found: list[Violation], limit: int) -> dict[str, Any]:
    return {
        "ok": not found,
        "violations": len(found),
        "examples": [f"{v.subject}: {v.detail}" for v in found[:limit]],
    }


def all_ok(results: dict[str, Any]) -> bool:
    return bool(results) and all(r.get("ok") for r in results.values())
