"""The checker's comparison of the levels table with stock.levels.v1, on plain values."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path
from types import SimpleNamespace

import asyncpg
import pytest

from stockflow.cli.check import (
    STREAM_BUCKETS,
    check_levels_stream,
    compare_levels_stream,
    stream_levels,
)
from stockflow.contracts import encode
from stockflow.contracts.events.stock import StockLevelChanged
from stockflow.runtime.db import migrate

STOCK_MIGRATIONS = Path(str(files("stockflow.stock") / "migrations"))


def level(version: int, on_hand: int = 5, location: str = "WH-A") -> StockLevelChanged:
    return StockLevelChanged(
        sku="TEE",
        location=location,
        on_hand=on_hand,
        reserved=0,
        available=on_hand,
        incoming=0,
        backordered=0,
        version=version,
        changed_at=datetime(2024, 5, 1, tzinfo=UTC),
    )


def row(event: StockLevelChanged) -> dict:
    return {"sku": event.sku, "location": event.location, "version": event.version} | {
        b: getattr(event, b) for b in STREAM_BUCKETS
    }


def records(*events: StockLevelChanged) -> list[SimpleNamespace]:
    encoded = [encode(e, source="test") for e in events]
    return [SimpleNamespace(key=r.key, value=r.value, headers=r.headers) for r in encoded]


def test_a_reader_keeps_the_highest_version_of_each_level_whatever_the_order():
    rebuilt = stream_levels(records(level(3, 7), level(2, 6), level(1, 1, location="WH-B")))
    assert {k: e.version for k, e in rebuilt.items()} == {("TEE", "WH-A"): 3, ("TEE", "WH-B"): 1}


def test_a_level_the_stream_shows_as_it_is_passes():
    stream = stream_levels(records(level(3)))
    assert compare_levels_stream([row(level(3))], stream, set()) == []


def test_a_missing_stale_or_different_record_is_a_violation_unless_still_in_the_outbox():
    table = [row(level(4)), row(level(2, location="WH-B")), row(level(1, location="WH-C"))]
    stream = stream_levels(
        records(level(3), level(2, 9, location="WH-B"), level(1, location="WH-D"))
    )
    found = {v.subject: v.detail for v in compare_levels_stream(table, stream, set())}
    assert found == {
        "TEE@WH-A": "version 4 in the table, 3 on stock.levels.v1",
        "TEE@WH-B": "on_hand 5, stock.levels.v1 says 9; available 5, stock.levels.v1 says 9",
        "TEE@WH-C": "version 1 in the table, no record on stock.levels.v1",
        "TEE@WH-D": "version 1 on stock.levels.v1, no level in the table",
    }
    in_flight = {"TEE@WH-A", "TEE@WH-C"}
    assert {v.subject for v in compare_levels_stream(table, stream, in_flight)} == {
        "TEE@WH-B",
        "TEE@WH-D",
    }


def test_a_level_never_changed_needs_no_record():
    assert compare_levels_stream([row(level(1)) | {"version": 0}], {}, set()) == []


@pytest.mark.integration
async def test_a_stream_that_cannot_be_read_is_reported_not_taken_for_clean(infra):
    # A schema of its own: the test needs stock's tables, not a stock service having run first.
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(infra.admin_database_url)
    try:
        await admin.execute(f"CREATE SCHEMA {schema}")
        await migrate(infra.admin_database_url, schema, STOCK_MIGRATIONS)
        found = await check_levels_stream(infra.admin_database_url, "127.0.0.1:1", schema)
    finally:
        await admin.execute(f"DROP SCHEMA {schema} CASCADE")
        await admin.close()
    assert [(v.invariant, v.subject) for v in found] == [("levels_stream_matches_table", "*")]
    assert "cannot read stock.levels.v1" in found[0].detail
