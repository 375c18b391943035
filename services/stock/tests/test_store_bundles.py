"""The bundle backorder rows on real PostgreSQL: what the in-memory store cannot show (the
jsonb codec of the pool, the upsert)."""

from __future__ import annotations

from pathlib import Path

import pytest

from stockflow.runtime.db import migrate
from stockflow.stock import store
from stockflow.stock.domain import BundleBackorder

pytestmark = pytest.mark.integration
MIGRATIONS = Path(store.__file__).parent / "migrations"


def kits(quantity: int) -> BundleBackorder:
    return BundleBackorder("O1", "L1", "KIT", "WH-1", quantity, 0, (("A", 1), ("B", 2)))


async def test_kits_queued_again_grow_the_lines_bundle_row_and_keep_its_components(
    scratch_schema, infra
):
    schema, pool = scratch_schema
    await migrate(infra.admin_database_url, schema, MIGRATIONS)
    async with pool.acquire() as conn:
        rows = store.ReservationStore(conn)
        await rows.queue_bundle_again(kits(1))  # a line that never waited gets its row
        await rows.queue_bundle_again(kits(2))  # a line that waits grows
        async with conn.transaction():
            [bundle] = await rows.lock_bundle_backorders([("O1", "L1")])
    assert bundle == kits(3)
