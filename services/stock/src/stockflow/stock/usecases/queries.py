"""What the HTTP API reads: levels, availability, the ledger, reservations, transfers, incoming
stock and locations. Reads take a pool or a connection and change nothing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from stockflow.stock import store
from stockflow.stock.domain import BUCKETS
from stockflow.stock.usecases.backorders import Arrivals
from stockflow.stock.usecases.refusals import NotFound
from stockflow.stock.usecases.warehouse import transfer_json


async def levels_of_sku(db: store.Db, sku: str) -> dict[str, Any]:
    """Levels of one SKU per location, and their totals."""
    locations = [
        {
            "location": row["location"],
            **{b: row[b] for b in (*BUCKETS, "available")},
            "reorder_point": row["reorder_point"],
            "version": row["version"],
        }
        for row in await store.levels_of_sku(db, sku)
    ]
    totals = {key: sum(loc[key] for loc in locations) for key in (*BUCKETS, "available")}
    return {"sku": sku, "locations": locations, "totals": totals}


async def availability(db: store.Db, skus: Sequence[str]) -> dict[str, Any]:
    """Sellable units per SKU over all locations; a bundle's from its components; None for an
    untracked SKU (always sellable); 0 for a SKU that is not sold (draft or discontinued in the
    catalog, or never announced by it: its units are held)."""
    catalog = await store.load_catalog_skus(db, skus)
    wanted = set(skus) | {c.sku for s in catalog.values() for c in s.components}
    by_key = await store.available_by_level(db, wanted)
    locations = {loc for _, loc in by_key}
    result: dict[str, int | None] = {}
    for sku in skus:
        info = catalog.get(sku)
        if info is None or not info.sellable:
            result[sku] = 0
        elif info.components:
            result[sku] = sum(
                min(by_key.get((c.sku, loc), 0) // c.quantity for c in info.components)
                for loc in locations
            )
        elif not info.tracked:
            result[sku] = None
        else:
            result[sku] = sum(v for (s, _), v in by_key.items() if s == sku)
    return {"availability": result, "known": sorted(catalog)}


async def movements(db: store.Db, where: store.MovementFilter) -> dict[str, Any]:
    """A page of the ledger, oldest first; `next_after` continues it."""
    items = await store.list_movements(db, where)
    return {"items": items, "next_after": items[-1]["id"] if len(items) == where.limit else None}


async def reservation(db: store.Db, order_id: str) -> dict[str, Any]:
    """An order's reservation: status, what is held where, and its backorders with dates."""
    header = await store.reservation_header(db, order_id)
    if header is None:
        raise NotFound(f"no reservation for order {order_id}")
    lines = await store.reservation_lines(db, order_id)
    backorders = await store.backorders_of_order(db, order_id)
    arrivals = await Arrivals.load(db, {b["sku"] for b in backorders if b["open"]})
    expected = {
        (b.line_id, b.sku): date
        for sku in arrivals.incoming
        for b, date in arrivals.dates(sku).items()
        if b.order_id == order_id
    }
    return {
        "order_id": order_id,
        "status": header["status"],
        "reply": header["reply"],
        "lines": lines,
        "backorders": [
            b | {"expected_at": expected.get((b["line_id"], b["sku"]))} for b in backorders
        ],
    }


async def transfers(db: store.Db, where: store.TransferFilter) -> dict[str, Any]:
    """Transfers, newest first."""
    return {"items": [transfer_json(row) for row in await store.list_transfers(db, where)]}


async def incoming(db: store.Db, sku: str | None) -> dict[str, Any]:
    """Stock still due: announced receipts and transfers in transit, soonest first."""
    return {"items": await store.list_incoming(db, sku)}


async def locations(db: store.Db) -> dict[str, Any]:
    """Every location in shipping order (priority, then code)."""
    return {"items": await store.list_locations(db)}
