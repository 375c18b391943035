"""Invariants as SQL: each names what must always be true and finds the rows where it is not.

A service declares its invariants next to its schema; the runtime runs them continuously in the
service (one Prometheus gauge per invariant, an alert event when one breaks), and
`stockflow check` runs every service's invariants, plus cross-service ones, from outside.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from stockflow.contracts import Event
from stockflow.runtime import metrics
from stockflow.runtime.logging import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class Invariant:
    """`sql` returns one row per violation with the columns `subject` and `detail`.

    `{schema}` in the SQL is replaced by the schema name, so the same text runs inside the
    service (its own schema) and from `stockflow check` (an admin connection).
    """

    name: str
    description: str
    sql: str

    def query(self, schema: str) -> str:
        return self.sql.replace("{schema}", schema)


@dataclass(frozen=True)
class Violation:
    invariant: str
    subject: str
    detail: str


async def find_violations(
    conn: asyncpg.Connection, schema: str, invariants: Sequence[Invariant], *, limit: int = 100
) -> list[Violation]:
    """Run every invariant in one read-only snapshot; at most `limit` rows per invariant."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        return await run_invariants(conn, schema, invariants, limit=limit)


async def run_invariants(
    conn: asyncpg.Connection, schema: str, invariants: Sequence[Invariant], *, limit: int = 100
) -> list[Violation]:
    """Run `invariants` in the caller's transaction (so several schemas share one snapshot)."""
    found: list[Violation] = []
    for invariant in invariants:
        rows = await conn.fetch(f"SELECT * FROM ({invariant.query(schema)}) v LIMIT {limit}")
        found += [Violation(invariant.name, str(r["subject"]), str(r["detail"])) for r in rows]
    return found


AlertFactory = Callable[[Violation, datetime], Event]


def watch(
    invariants: Sequence[Invariant],
    *,
    alert: AlertFactory | None = None,
    interval_s: float | None = None,
):
    """A service background task: check every `interval_s`, set a gauge per invariant and
    publish `alert(violation)` once when a violation first appears.

    Args:
        invariants: the service's own invariants (its schema only).
        alert: builds the event to publish for a new violation; None logs and counts only
            (for a service that may not publish the alert's topic).
        interval_s: seconds between checks; None takes the service's `invariant_interval_s`
            setting (STOCKFLOW_INVARIANT_INTERVAL_S, default 30).
    """

    async def watch_invariants(context) -> None:
        reported: set[tuple[str, str]] = set()
        schema = context.settings.schema_name
        every = interval_s if interval_s is not None else context.settings.invariant_interval_s
        while True:
            await asyncio.sleep(every)
            try:
                async with context.pool.acquire() as conn:
                    violations = await find_violations(conn, schema, invariants)
            except Exception as exc:  # noqa: BLE001 — a failed check must not stop the service
                log.warning("invariant check failed", error=repr(exc))
                continue
            for invariant in invariants:
                count = sum(1 for v in violations if v.invariant == invariant.name)
                metrics.INVARIANT_VIOLATIONS.labels(context.settings.service, invariant.name).set(
                    count
                )
            current = {(v.invariant, v.subject) for v in violations}
            fresh = [v for v in violations if (v.invariant, v.subject) not in reported]
            if fresh:
                log.error("invariant violated", violations=[v.__dict__ for v in fresh[:20]])
                if alert is not None:
                    try:
                        async with context.unit_of_work() as uow:
                            for violation in fresh:
                                uow.publish(alert(violation, datetime.now(UTC)))
                    except Exception as exc:  # noqa: BLE001 — alert again on the next round
                        log.warning("invariant alert not published", error=repr(exc))
                        continue
            reported = current

    return watch_invariants
