"""The catalog's use cases: one function per command, each inside the caller's unit of work.

Every change stores the new version, records it in the history and stages, in the same
transaction, the full state of each variant whose published state changed (and a removal for
each SKU that left the product). An unchanged product (equal content digest) is no change at
all: no version, no history row, no event — which is what makes a re-import a no-op.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from stockflow.catalog import store
from stockflow.catalog.csv_io import ImportedProduct, RowError
from stockflow.catalog.domain import (
    KNOWN_BUNDLES,
    CatalogError,
    Product,
    apply_patch,
    content_digest,
    discontinue,
    reactivate,
    replace_content,
    variant_state,
)
from stockflow.contracts.events.catalog import CatalogVariantRemoved, CatalogVariantUpserted
from stockflow.runtime.outbox import UnitOfWork

_STAMPS = ("version", "updated_at")


def _now() -> datetime:
    return datetime.now(UTC)


def _rule_broken(title: str, problems: list[tuple[tuple[str | int, ...], str, object]]) -> None:
    if problems:
        raise ValidationError.from_exception_data(
            title,
            [
                InitErrorDetails(
                    type=PydanticCustomError("catalog_rule", "{reason}", {"reason": why}),
                    loc=loc,
                    input=value,
                )
                for loc, why, value in problems
            ],
        )


# --- events --------------------------------------------------------------------------------


def _comparable(state: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in state.items() if key not in _STAMPS}


def publish_changes(uow: UnitOfWork, before: Product | None, after: Product) -> int:
    """Stage the full state of each variant whose state changed, and removals; returns how many."""
    previous = {}
    if before is not None:
        previous = {v.sku: _comparable(variant_state(before, v)) for v in before.variants}
    staged = 0
    for variant in after.variants:
        state = variant_state(after, variant)
        if previous.get(variant.sku) != _comparable(state):
            uow.publish(CatalogVariantUpserted.model_validate(state))
            staged += 1
    for sku in removed_skus(before, after):
        uow.publish(CatalogVariantRemoved(sku=sku, version=after.version))
        staged += 1
    return staged


def removed_skus(before: Product | None, after: Product) -> list[str]:
    if before is None:
        return []
    kept = {v.sku for v in after.variants}
    return [v.sku for v in before.variants if v.sku not in kept]


# --- rules that need the database ---------------------------------------------------------


async def _check_against_catalog(
    uow: UnitOfWork, product: Product, removed: list[str], owners: Mapping[str, str] | None = None
) -> None:
    """SKUs unique (409), bundles not nested across products and made of known SKUs (422),
    and no SKU that another product's bundle contains removed (409)."""
    conn = uow.conn
    skus = [v.sku for v in product.variants]
    if owners is None:
        owners = await store.sku_owners(conn, skus)
    for i, variant in enumerate(product.variants):
        owner = owners.get(variant.sku)
        if owner is not None and owner != product.id:
            raise store.Conflict(
                f"SKU {variant.sku} already belongs to product {owner}", ("variants", i, "sku")
            )
    if any(v.is_bundle for v in product.variants):
        bundles = await store.known_bundles(conn, product)
        if bundles.bundle_skus or bundles.component_skus:
            Product.model_validate(product.model_dump(), context={KNOWN_BUNDLES: bundles})
        components = {c.sku for v in product.variants for c in v.bundle_components}
        known = set(skus) | set(await store.sku_owners(conn, components - set(skus)))
        _rule_broken(
            "Product",
            [
                (
                    ("variants", i, "bundle_components", j, "sku"),
                    "no such SKU in the catalog",
                    c.sku,
                )
                for i, v in enumerate(product.variants)
                for j, c in enumerate(v.bundle_components)
                if c.sku not in known
            ],
        )
    if removed:
        used = await store.bundles_containing(conn, removed, other_than=product.id)
        if used:
            sku, bundle = next(iter(sorted(used.items())))
            raise store.Conflict(
                f"SKU {sku} is a component of bundle {bundle}; change that bundle first",
                ("variants",),
            )


# --- commands ------------------------------------------------------------------------------


async def create_product(
    uow: UnitOfWork, product: Product, *, request_key: str | None = None
) -> Product:
    """Store a new product at version 1 and publish its variants.

    Raises:
        store.Conflict: the handle, id or a SKU is taken (409).
        ValidationError: a rule across products is broken (422).
    """
    await _check_against_catalog(uow, product, [])
    stored = product.model_copy(update={"version": 1, "updated_at": _now()})
    await store.insert(uow.conn, stored, cause="created", request_key=request_key)
    publish_changes(uow, None, stored)
    return stored


async def patch_product(
    uow: UnitOfWork,
    product_id: str,
    patch: Mapping[str, Any],
    expected_version: int,
    *,
    request_key: str | None = None,
) -> tuple[Product, bool]:
    """Apply a JSON merge patch to the version the caller read; (product, changed).

    Raises:
        store.ProductNotFound, StaleVersion, InvalidTransition, store.Conflict, ValidationError.
    """
    current = await store.get(uow.conn, product_id, lock=True)
    before = current.product()
    after = apply_patch(before, patch, expected_version, now=_now())
    if content_digest(after) == current.digest:
        return before, False
    return await _save(uow, before, after, "patched", request_key), True


async def change_status(
    uow: UnitOfWork,
    product_id: str,
    action: Literal["discontinue", "reactivate"],
    expected_version: int | None,
    *,
    request_key: str | None = None,
) -> Product:
    """Discontinue (every variant goes out as discontinued) or reactivate (back to draft)."""
    current = await store.get(uow.conn, product_id, lock=True)
    before = current.product()
    expected = before.version if expected_version is None else expected_version
    move = discontinue if action == "discontinue" else reactivate
    after = move(before, expected, now=_now())
    return await _save(uow, before, after, f"{action}d", request_key)


async def _save(
    uow: UnitOfWork, before: Product, after: Product, cause: str, request_key: str | None
) -> Product:
    removed = removed_skus(before, after)
    await _check_against_catalog(uow, after, removed)
    await store.update(uow.conn, after, removed_skus=removed, cause=cause, request_key=request_key)
    publish_changes(uow, before, after)
    return after


# --- bulk import ---------------------------------------------------------------------------

Outcome = Literal["created", "updated", "unchanged", "rejected"]


@dataclass
class ImportReport:
    """What one import request did, product by product, with every bad row."""

    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(("created", "updated", "unchanged", "rejected"), 0)
    )
    variants: int = 0
    events: int = 0
    results: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)

    def add(
        self,
        item: ImportedProduct,
        outcome: Outcome,
        stored: tuple[str, int] | None = None,
        errors: Iterable[RowError] = (),
    ) -> None:
        """Record one product's outcome; `stored` is its (id, version) when it is in the catalog."""
        self.counts[outcome] += 1
        self.results.append(
            {
                "handle": item.handle,
                "first_row": item.first_row,
                "last_row": item.last_row,
                "outcome": outcome,
                "product_id": stored[0] if stored else None,
                "version": stored[1] if stored else None,
            }
        )
        if stored is not None and item.product is not None:
            self.variants += len(item.product.variants)
        self.errors += [
            {"row": e.row, "column": e.column, "message": e.message, "handle": item.handle}
            for e in errors
        ]

    def as_json(self) -> dict[str, Any]:
        return {
            "products": sum(self.counts.values()),
            **self.counts,
            "variants": self.variants,
            "events": self.events,
            "errors": sorted(self.errors, key=lambda e: e["row"]),
            "results": self.results,
        }


async def import_products(
    uow: UnitOfWork, items: Iterable[ImportedProduct], *, request_key: str | None = None
) -> ImportReport:
    """Create or update products by handle, each whole or not at all (a savepoint each).

    A product whose content equals the stored one is unchanged. A product the reader rejected,
    or that breaks a rule against the catalog, is reported with its rows and skipped; the
    others are kept when the caller's unit of work commits.
    """
    items = list(items)
    report = ImportReport()
    good = [item.product for item in items if item.product is not None]
    existing = await store.by_handles(uow.conn, [p.handle for p in good])
    owners = await store.sku_owners(uow.conn, [v.sku for p in good for v in p.variants])
    for item in items:
        if item.product is None:
            report.add(item, "rejected", errors=item.errors)
            continue
        try:
            async with uow.conn.transaction():
                outcome, stored, before, after = await _import_one(
                    uow, item.product, existing.get(item.handle), owners, request_key
                )
        except ValidationError as invalid:
            report.add(item, "rejected", errors=_row_errors(item, invalid))
            continue
        except CatalogError as refused:
            column = ".".join(map(str, getattr(refused, "loc", ()))) or "Status"
            report.add(item, "rejected", errors=[RowError(item.first_row, column, str(refused))])
            continue
        if after is not None:
            report.events += publish_changes(uow, before, after)
            for sku in removed_skus(before, after):
                owners.pop(sku, None)
            owners.update((v.sku, after.id) for v in after.variants)
        report.add(item, outcome, stored)
    return report


async def _import_one(
    uow: UnitOfWork,
    incoming: Product,
    current: store.StoredProduct | None,
    owners: dict[str, str],
    request_key: str | None,
) -> tuple[Outcome, tuple[str, int], Product | None, Product | None]:
    """(outcome, (id, version) stored, before, after); after is None when nothing changed."""
    if current is None:
        await _check_against_catalog(uow, incoming, [], owners)
        created = incoming.model_copy(update={"version": 1, "updated_at": _now()})
        await store.insert(uow.conn, created, cause="imported", request_key=request_key)
        return "created", (created.id, 1), None, created
    if content_digest(incoming) == current.digest:
        return "unchanged", (current.id, current.version), None, None
    before = current.product()
    after = replace_content(before, incoming, before.version, now=_now())
    removed = removed_skus(before, after)
    await _check_against_catalog(uow, after, removed, owners)
    await store.update(
        uow.conn, after, removed_skus=removed, cause="imported", request_key=request_key
    )
    return "updated", (after.id, after.version), before, after


def _row_errors(item: ImportedProduct, invalid: ValidationError) -> list[RowError]:
    return [
        RowError(item.first_row, ".".join(map(str, error["loc"])), str(error["msg"]))
        for error in invalid.errors()
    ]
