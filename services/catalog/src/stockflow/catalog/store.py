"""SQL of the catalog: products as JSON documents, one row per SKU, and every version kept.

The `variants` table is what makes a SKU unique across the catalog (its primary key) and what
answers the rules that span products (bundles) without loading other products.
"""

from __future__ import annotations

import base64
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

import asyncpg

from stockflow.catalog.domain import CatalogError, KnownBundles, Product, content_digest

PRODUCT_COLUMNS = "id, handle, version, document, content_digest"


class ProductNotFound(CatalogError):
    """No product with that id (HTTP 404)."""


class Conflict(CatalogError):
    """The change collides with another product (HTTP 409): a SKU or handle already taken."""

    def __init__(self, message: str, loc: tuple[str | int, ...]) -> None:
        super().__init__(message)
        self.loc = loc


@dataclass(frozen=True)
class StoredProduct:
    """A product row: its digest answers "did the content change?" without parsing the JSON."""

    id: str
    handle: str
    version: int
    digest: str
    document: dict[str, Any]

    def product(self) -> Product:
        return Product.model_validate(self.document)


def _stored(row: asyncpg.Record) -> StoredProduct:
    return StoredProduct(
        row["id"], row["handle"], row["version"], row["content_digest"], row["document"]
    )


async def get(conn: asyncpg.Connection, product_id: str, *, lock: bool = False) -> StoredProduct:
    row = await conn.fetchrow(
        f"SELECT {PRODUCT_COLUMNS} FROM products WHERE id = $1" + (" FOR UPDATE" if lock else ""),
        product_id,
    )
    if row is None:
        raise ProductNotFound(f"no product {product_id}")
    return _stored(row)


async def by_handles(
    conn: asyncpg.Connection, handles: Collection[str]
) -> dict[str, StoredProduct]:
    """Lock and return the products with these handles (in handle order, against deadlocks)."""
    rows = await conn.fetch(
        f"SELECT {PRODUCT_COLUMNS} FROM products WHERE handle = ANY($1::text[]) "
        "ORDER BY handle FOR UPDATE",
        list(handles),
    )
    return {row["handle"]: _stored(row) for row in rows}


async def sku_owners(conn: asyncpg.Connection, skus: Collection[str]) -> dict[str, str]:
    """sku -> product id, for those of `skus` the catalog has."""
    rows = await conn.fetch(
        "SELECT sku, product_id FROM variants WHERE sku = ANY($1::text[])", list(skus)
    )
    return {row["sku"]: row["product_id"] for row in rows}


async def known_bundles(conn: asyncpg.Connection, product: Product) -> KnownBundles:
    """What other products say about bundles, limited to the SKUs this product's rules ask about.

    The rules only ask whether one of its components is a bundle elsewhere, and whether one of
    its bundles is a component elsewhere; a product without bundles asks nothing.
    """
    components = {c.sku for v in product.variants for c in v.bundle_components}
    bundles = [v.sku for v in product.variants if v.is_bundle]
    if not bundles:
        return KnownBundles()
    bundle_rows = await conn.fetch(
        "SELECT sku FROM variants WHERE is_bundle AND sku = ANY($1::text[]) AND product_id <> $2",
        list(components),
        product.id,
    )
    component_rows = await conn.fetch(
        "SELECT DISTINCT c FROM variants, unnest(component_skus) AS c "
        "WHERE component_skus && $1::text[] AND product_id <> $2 AND c = ANY($1::text[])",
        bundles,
        product.id,
    )
    return KnownBundles(
        frozenset(row["sku"] for row in bundle_rows), frozenset(row["c"] for row in component_rows)
    )


async def bundles_containing(
    conn: asyncpg.Connection, skus: Collection[str], *, other_than: str
) -> dict[str, str]:
    """component sku -> a bundle sku of another product that contains it."""
    rows = await conn.fetch(
        "SELECT c, min(sku) AS bundle FROM variants, unnest(component_skus) AS c "
        "WHERE component_skus && $1::text[] AND product_id <> $2 AND c = ANY($1::text[]) "
        "GROUP BY c",
        list(skus),
        other_than,
    )
    return {row["c"]: row["bundle"] for row in rows}


UPSERT_VARIANTS_SQL = """
INSERT INTO variants (sku, product_id, position, barcode, is_bundle, component_skus)
SELECT s, $1, p, b, i, CASE WHEN c = '' THEN '{}'::text[] ELSE string_to_array(c, ',') END
FROM unnest($2::text[], $3::int[], $4::text[], $5::bool[], $6::text[]) AS u(s, p, b, i, c)
ON CONFLICT (sku) DO UPDATE
    SET position = excluded.position, barcode = excluded.barcode,
        is_bundle = excluded.is_bundle, component_skus = excluded.component_skus
    WHERE variants.product_id = excluded.product_id
RETURNING sku
"""


def _variant_rows(product: Product) -> tuple[list[Any], ...]:
    return (
        [v.sku for v in product.variants],
        list(range(len(product.variants))),
        [v.barcode for v in product.variants],
        [v.is_bundle for v in product.variants],
        # text[][] must be rectangular, so components travel as one comma-joined string each.
        [",".join(c.sku for c in v.bundle_components) for v in product.variants],
    )


async def _write_variants(conn: asyncpg.Connection, product: Product) -> None:
    # A SKU another product holds is left alone by the upsert, so fewer rows come back.
    written = await conn.fetch(
        UPSERT_VARIANTS_SQL,
        product.id,
        *_variant_rows(product),
    )
    if len(written) == len(product.variants):
        return
    mine = {row["sku"] for row in written}
    owners = await sku_owners(conn, [v.sku for v in product.variants if v.sku not in mine])
    i, variant = next((i, v) for i, v in enumerate(product.variants) if v.sku not in mine)
    raise Conflict(
        f"SKU {variant.sku} already belongs to product {owners.get(variant.sku)}",
        ("variants", i, "sku"),
    )


def _history_args(product: Product, document: dict[str, Any], cause: str, key: str | None):
    return product.id, product.version, document, cause, key, product.updated_at


HISTORY_SQL = (
    "INSERT INTO product_history (product_id, version, document, cause, request_key, changed_at) "
    "VALUES ($1, $2, $3, $4, $5, $6)"
)


async def insert(
    conn: asyncpg.Connection, product: Product, *, cause: str, request_key: str | None = None
) -> None:
    """Store a new product (stamped: version and updated_at set). `Conflict` if taken."""
    document = product.model_dump(mode="json")
    inserted = await conn.fetchval(
        "INSERT INTO products (id, handle, status, version, vendor, product_type, tags, document,"
        " content_digest, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) "
        "ON CONFLICT DO NOTHING RETURNING true",
        product.id,
        product.handle,
        product.status,
        product.version,
        product.vendor,
        product.product_type,
        list(product.tags),
        document,
        content_digest(product),
        product.updated_at,
    )
    if not inserted:
        taken = await conn.fetchrow(
            "SELECT id, handle FROM products WHERE id = $1 OR handle = $2",
            product.id,
            product.handle,
        )
        field = "handle" if taken and taken["handle"] == product.handle else "id"
        raise Conflict(f"a product with {field} {getattr(product, field)} exists", (field,))
    await _write_variants(conn, product)
    await conn.execute(HISTORY_SQL, *_history_args(product, document, cause, request_key))


async def update(
    conn: asyncpg.Connection,
    product: Product,
    *,
    removed_skus: Iterable[str],
    cause: str,
    request_key: str | None = None,
) -> None:
    """Store a new version of a locked product; `removed_skus` leave the catalog."""
    document = product.model_dump(mode="json")
    updated = await conn.execute(
        "UPDATE products SET handle = $2, status = $3, version = $4, vendor = $5,"
        " product_type = $6, tags = $7, document = $8, content_digest = $9, updated_at = $10 "
        "WHERE id = $1 AND version = $4 - 1",
        product.id,
        product.handle,
        product.status,
        product.version,
        product.vendor,
        product.product_type,
        list(product.tags),
        document,
        content_digest(product),
        product.updated_at,
    )
    if updated != "UPDATE 1":
        raise CatalogError(f"{product.handle}: version {product.version - 1} was not locked")
    removed = list(removed_skus)
    if removed:
        await conn.execute(
            "DELETE FROM variants WHERE product_id = $1 AND sku = ANY($2::text[])",
            product.id,
            removed,
        )
    await _write_variants(conn, product)
    await conn.execute(HISTORY_SQL, *_history_args(product, document, cause, request_key))


async def history(conn: asyncpg.Connection, product_id: str) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT version, cause, request_key, changed_at, document FROM product_history "
        "WHERE product_id = $1 ORDER BY version",
        product_id,
    )
    return [dict(row) for row in rows]


async def product_of_sku(conn: asyncpg.Connection, sku: str) -> StoredProduct | None:
    row = await conn.fetchrow(
        "SELECT p.id, p.handle, p.version, p.document, p.content_digest "
        "FROM variants v JOIN products p ON p.id = v.product_id WHERE v.sku = $1",
        sku,
    )
    return None if row is None else _stored(row)


@dataclass(frozen=True)
class ProductFilter:
    status: str | None = None
    vendor: str | None = None
    product_type: str | None = None
    tag: str | None = None
    q: str | None = None


def encode_cursor(product_id: str) -> str:
    return base64.urlsafe_b64encode(product_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    padded = cursor + "=" * (-len(cursor) % 4)
    return base64.b64decode(padded.encode(), altchars=b"-_", validate=True).decode()


async def search(
    conn: asyncpg.Connection, where: ProductFilter, *, limit: int, after: str | None
) -> list[dict[str, Any]]:
    """Products in id order (keyset paging: `after` is the last id of the previous page).

    `q` matches words of the title, vendor, type and description (English stemming), a SKU
    prefix, or a barcode exactly.
    """
    rows = await conn.fetch(
        "SELECT document FROM products p WHERE ($1::text IS NULL OR p.id > $1)"
        " AND ($2::text IS NULL OR p.status = $2) AND ($3::text IS NULL OR p.vendor = $3)"
        " AND ($4::text IS NULL OR p.product_type = $4)"
        " AND ($5::text IS NULL OR p.tags @> ARRAY[$5::text])"
        " AND ($6::text IS NULL OR p.search @@ websearch_to_tsquery('english', $6)"
        "      OR p.id IN (SELECT product_id FROM variants"
        "                  WHERE sku LIKE $7 OR barcode = $6))"
        " ORDER BY p.id LIMIT $8",
        after,
        where.status,
        where.vendor,
        where.product_type,
        where.tag,
        where.q,
        None if where.q is None else _like_prefix(where.q) + "%",
        limit,
    )
    return [row["document"] for row in rows]


def _like_prefix(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def all_products(conn: asyncpg.Connection, *, batch: int = 500):
    """Every product in id order, streamed in batches (for exports)."""
    after = ""
    while True:
        rows = await conn.fetch(
            "SELECT id, document FROM products WHERE id > $1 ORDER BY id LIMIT $2", after, batch
        )
        for row in rows:
            yield row["document"]
        if len(rows) < batch:
            return
        after = rows[-1]["id"]
