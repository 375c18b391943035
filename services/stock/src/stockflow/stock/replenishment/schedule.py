"""The scheduled replenishment run: leader-only (an advisory lock), once per
``STOCKFLOW_REPLENISH_INTERVAL_S``; the background task of the replenishment worker."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from stockflow.runtime.logging import get_logger
from stockflow.stock.replenishment.run import RunRequest, RunResult, run_replenishment
from stockflow.stock.replenishment.settings import ReplenishDefaults

if TYPE_CHECKING:
    from stockflow.runtime.service import TaskContext

log = get_logger(__name__)

# How often each instance asks whether a scheduled run is due (cheap: one query).
CHECK_EVERY_S = 60.0


async def replenish_periodically(ctx: TaskContext) -> None:
    """Background task of the replenishment worker: run when the last scheduled run is older than
    ``STOCKFLOW_REPLENISH_INTERVAL_S``, on one instance at a time (an advisory lock)."""
    defaults = ReplenishDefaults()
    if defaults.interval_s <= 0:
        log.info("scheduled replenishment is off (STOCKFLOW_REPLENISH_INTERVAL_S=0)")
        return
    while True:
        try:
            await run_if_due(ctx, defaults)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 — a failed run must not end the schedule
            log.warning("scheduled replenishment failed; retrying later", error=repr(exc))
        await asyncio.sleep(min(defaults.interval_s, CHECK_EVERY_S))


async def run_if_due(ctx: TaskContext, defaults: ReplenishDefaults) -> RunResult | None:
    """Run once if this instance leads and the interval has passed; None otherwise."""
    lock = f"replenish:{ctx.settings.schema_name}"
    async with ctx.pool.acquire() as conn:
        if not await conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", lock):
            return None  # another instance is running it
        try:
            last = await conn.fetchval(
                "SELECT max(finished_at) FROM replenishment_runs WHERE trigger = 'schedule'"
            )
            if last is not None and (datetime.now(UTC) - last).total_seconds() < (
                defaults.interval_s
            ):
                return None
            request = RunRequest(
                "schedule",
                apply_reorder_points=defaults.apply_reorder_points,
                report_dir=Path(defaults.report_dir) if defaults.report_dir else None,
            )
            return await run_replenishment(ctx.pool, request, source=ctx.source, defaults=defaults)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", lock)
