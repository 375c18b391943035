"""The catalog projection: what stock knows of each SKU (tracked, backorderable, status, bundle)."""

from __future__ import annotations

from stockflow.contracts.events import catalog as catalog_events
from stockflow.runtime.outbox import UnitOfWork
from stockflow.stock import store
from stockflow.stock.domain import BundleComponent

CatalogEvent = catalog_events.CatalogVariantUpserted | catalog_events.CatalogVariantRemoved
"""The events the catalog consumer receives, as its event types guarantee."""


async def project_catalog_event(uow: UnitOfWork, event: CatalogEvent) -> None:
    """Last version per sku wins; a removed variant is kept as discontinued."""
    if isinstance(event, catalog_events.CatalogVariantRemoved):
        await store.discontinue_catalog_sku(uow.conn, event.sku, event.version)
        return
    sku = store.CatalogSku(
        event.sku,
        # A bundle's stock is its components': the bundle itself is never counted.
        tracked=event.tracked and not event.bundle_components,
        backorderable=event.backorderable,
        status=event.status,
        components=tuple(BundleComponent(c.sku, c.quantity) for c in event.bundle_components),
        preorder_available_at=event.preorder_available_at,
    )
    await store.upsert_catalog_sku(uow.conn, sku, event.version)
