"""`available` is defined once, as the levels table's generated column; the domain's
`Level.available` mirrors it. Both must agree on every bucket."""

from __future__ import annotations

from pathlib import Path

import pytest

from stockflow.runtime.db import migrate
from stockflow.stock import invariants
from stockflow.stock.domain import BUCKETS, Level

pytestmark = pytest.mark.integration

MIGRATIONS = Path(invariants.__file__).parent / "migrations"


def _levels() -> list[Level]:
    """A level where each bucket in turn differs, and one with every bucket set."""
    base = {bucket: 0 for bucket in BUCKETS} | {"on_hand": 50}
    levels = [
        Level("SKU", f"L-{bucket}", **(base | {bucket: base[bucket] + 3})) for bucket in BUCKETS
    ]
    every = dict(zip(BUCKETS, (40, 5, 4, 3, 2, 7, 9), strict=True))
    return [*levels, Level("SKU", "L-every", **every)]


async def test_the_generated_column_and_the_domain_agree_on_every_bucket(scratch_schema, infra):
    schema, pool = scratch_schema
    await migrate(infra.admin_database_url, schema, MIGRATIONS)
    levels = _levels()
    async with pool.acquire() as conn:
        for level in levels:
            await conn.execute(
                f"INSERT INTO levels (sku, location, {', '.join(BUCKETS)}) "
                f"VALUES ($1, $2, {', '.join(f'${i}' for i in range(3, 3 + len(BUCKETS)))})",
                level.sku,
                level.location,
                *(getattr(level, bucket) for bucket in BUCKETS),
            )
        stored = {
            r["location"]: r["available"]
            for r in await conn.fetch("SELECT location, available FROM levels")
        }
    assert stored == {level.location: level.available for level in levels}
    # Every bucket is in the formula: changing any one of them changes `available` or not
    # exactly as the domain says.
    assert len({stored[f"L-{bucket}"] for bucket in BUCKETS}) > 1


async def test_the_database_refuses_a_level_with_negative_available(scratch_schema, infra):
    schema, pool = scratch_schema
    await migrate(infra.admin_database_url, schema, MIGRATIONS)
    with pytest.raises(Exception, match="levels_available_never_negative"):
        await pool.execute(
            "INSERT INTO levels (sku, location, on_hand, reserved) VALUES ('SKU', 'L', 1, 2)"
        )
