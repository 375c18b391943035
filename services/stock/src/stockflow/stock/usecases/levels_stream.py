"""The levels stream at start-up: every level without a record of its version gets one.

Levels written before stock.levels.v1 was keyed `sku@location` (migration 0006) were published
keyed by sku alone; compaction keeps one location per sku of those. Publishing each once under
its own key lets a reader from the beginning rebuild every level again.
"""

from __future__ import annotations

from stockflow.runtime.logging import get_logger
from stockflow.runtime.service import TaskContext
from stockflow.stock.ledger import publish_unpublished_levels

log = get_logger(__name__)
BATCH = 500


async def publish_levels_at_start(context: TaskContext) -> None:
    """A background task: publish unpublished levels in batches of one transaction each, then
    stop (the watch's `level_changes_published` reports any change made later outside
    LevelBook; the next start publishes it)."""
    published = 0
    while True:
        async with context.unit_of_work() as uow:
            count = await publish_unpublished_levels(uow, BATCH)
        published += count
        if count < BATCH:
            break
    if published:
        log.info("levels published under their sku@location key", levels=published)
