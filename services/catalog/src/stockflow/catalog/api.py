"""HTTP API of the catalog: admin writes (bearer role admin, `Idempotency-Key`), open reads.

Errors: 422 names the field the way FastAPI does (`{"detail": [{"loc": ["body", "variants", 0,
"barcode"], "msg": ..., "type": ...}]}`) for the domain's rules as well as for malformed JSON;
409 for a taken SKU, handle or id (same shape), a stale version or a lifecycle move that is
not allowed; 428 for a PATCH that says no version.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.parser
import email.policy
import io
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Header, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError

from stockflow.catalog import store, usecases
from stockflow.catalog.csv_io import (
    ImportedProduct,
    ImportFormatError,
    read_jsonl,
    read_shopify_csv,
    write_shopify_csv,
)
from stockflow.catalog.domain import (
    InvalidTransition,
    Product,
    StaleVersion,
    variant_state,
)
from stockflow.contracts.currencies import MINOR_UNITS
from stockflow.runtime.http import idempotent_write, require_role
from stockflow.runtime.outbox import UnitOfWork

router = APIRouter(tags=["catalog"])
ADMIN = [Depends(require_role("admin"))]
ImportFormat = Literal["csv", "jsonl"]
JSONL_TYPES = {"application/x-ndjson", "application/jsonl", "application/x-jsonlines"}


# --- errors --------------------------------------------------------------------------------


def _body_errors(invalid: ValidationError) -> list[dict[str, Any]]:
    errors = json.loads(invalid.json(include_url=False, include_context=False))
    return [{**error, "loc": ["body", *error["loc"]]} for error in errors]


@contextlib.contextmanager
def _as_http() -> Iterator[None]:
    """The domain's and the store's refusals as HTTP answers (inside the write's transaction)."""
    try:
        yield
    except ValidationError as invalid:
        raise RequestValidationError(_body_errors(invalid)) from invalid
    except store.ProductNotFound as missing:
        raise HTTPException(404, str(missing)) from missing
    except store.Conflict as taken:
        located = [{"type": "conflict", "loc": ["body", *taken.loc], "msg": str(taken)}]
        raise HTTPException(409, located) from taken
    except StaleVersion as stale:
        versions = {"msg": str(stale), "expected": stale.expected, "actual": stale.actual}
        raise HTTPException(409, versions) from stale
    except InvalidTransition as refused:
        raise HTTPException(409, str(refused)) from refused


async def _write(request: Request, action) -> JSONResponse:
    """`idempotent_write`, plus the ETag (the version) and Location of the product answered."""
    response = await idempotent_write(request, action)
    if response.status_code in (200, 201):
        body = json.loads(bytes(response.body))
        if isinstance(body, dict) and isinstance(body.get("version"), int):
            response.headers["ETag"] = f'"{body["version"]}"'
        if response.status_code == 201 and isinstance(body, dict) and "id" in body:
            response.headers["Location"] = f"/products/{body['id']}"
    return response


def _version(value: object, where: list[str]) -> int:
    text = value.strip().removeprefix("W/").strip('"') if isinstance(value, str) else value
    if isinstance(text, str) and text.isdigit():
        text = int(text)
    if not isinstance(text, int) or isinstance(text, bool) or text < 1:
        raise RequestValidationError(
            [{"type": "version", "loc": where, "msg": "a product version (1, 2, ...)"}]
        )
    return text


# --- products ------------------------------------------------------------------------------


@router.post("/products", status_code=201, dependencies=ADMIN, response_model=Product)
async def create_product(product: Product, request: Request) -> JSONResponse:
    """Create a product (and its variants) at version 1; 409 if the handle or a SKU is taken."""
    stamped = sorted({"version", "updated_at"} & product.model_fields_set)
    if stamped:
        raise RequestValidationError(
            [
                {"type": "catalog_rule", "loc": ["body", name], "msg": "set by the catalog"}
                for name in stamped
            ]
        )
    key = request.headers.get("idempotency-key")

    async def action(uow: UnitOfWork) -> tuple[int, Any]:
        with _as_http():
            created = await usecases.create_product(uow, product, request_key=key)
        return 201, created.model_dump(mode="json")

    return await _write(request, action)


@router.get("/products/{product_id}", response_model=Product)
async def get_product(product_id: str, request: Request) -> JSONResponse:
    """One product as stored, with its version as ETag."""
    async with request.app.state.pool.acquire() as conn:
        with _as_http():
            current = await store.get(conn, product_id)
    return JSONResponse(current.document, headers={"ETag": f'"{current.version}"'})


def _product_filter(
    status: Literal["draft", "active", "discontinued"] | None = None,
    vendor: str | None = None,
    product_type: str | None = None,
    tag: str | None = None,
    q: Annotated[
        str | None,
        Query(max_length=200, description="words of title/description, a SKU prefix or a barcode"),
    ] = None,
) -> store.ProductFilter:
    return store.ProductFilter(status, vendor, product_type, tag, (q or "").strip() or None)


@router.get("/products")
async def list_products(
    request: Request,
    where: Annotated[store.ProductFilter, Depends(_product_filter)],
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> dict[str, Any]:
    """Products in id order with filters and text search; page with `cursor`."""
    try:
        after = store.decode_cursor(cursor) if cursor else None
    except ValueError as bad:
        raise RequestValidationError(
            [{"type": "cursor", "loc": ["query", "cursor"], "msg": "not a cursor"}]
        ) from bad
    async with request.app.state.pool.acquire() as conn:
        products = await store.search(conn, where, limit=limit, after=after)
    full = len(products) == limit
    return {
        "products": products,
        "next_cursor": store.encode_cursor(products[-1]["id"]) if full else None,
    }


@router.get("/products/{product_id}/history")
async def product_history(product_id: str, request: Request) -> dict[str, Any]:
    """Every version of a product, oldest first: what it was, when and why it changed."""
    async with request.app.state.pool.acquire() as conn:
        with _as_http():
            await store.get(conn, product_id)
        versions = await store.history(conn, product_id)
    return {"product_id": product_id, "versions": versions}


@router.get("/variants/{sku}")
async def get_variant(sku: str, request: Request) -> dict[str, Any]:
    """A variant's full state: exactly what `catalog.products.v1` carries for it."""
    async with request.app.state.pool.acquire() as conn:
        current = await store.product_of_sku(conn, sku)
    if current is None:
        raise HTTPException(404, f"no variant {sku}")
    product = current.product()
    return variant_state(product, product.variant(sku))


@router.patch("/products/{product_id}", dependencies=ADMIN, response_model=Product)
async def patch_product(
    product_id: str,
    request: Request,
    patch: Annotated[dict[str, Any], Body(media_type="application/merge-patch+json")],
    if_match: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    """A JSON merge patch (RFC 7386) of the version named by `If-Match` or a `version` field.

    Lists are replaced whole (send all `variants` to change one); `null` removes a field. A
    stale version is 409; a patch that changes nothing keeps the version and publishes nothing.
    """
    patch = dict(patch)
    in_body = patch.pop("version", None)
    if if_match is not None:
        expected = _version(if_match, ["header", "if-match"])
    elif in_body is not None:
        expected = _version(in_body, ["body", "version"])
    else:
        raise HTTPException(428, "say which version you changed: If-Match or a version field")
    key = request.headers.get("idempotency-key")

    async def action(uow: UnitOfWork) -> tuple[int, Any]:
        with _as_http():
            product, _ = await usecases.patch_product(
                uow, product_id, patch, expected, request_key=key
            )
        return 200, product.model_dump(mode="json")

    return await _write(request, action)


async def _change_status(request: Request, product_id: str, action_name, if_match) -> JSONResponse:
    expected = None if if_match is None else _version(if_match, ["header", "if-match"])
    key = request.headers.get("idempotency-key")

    async def action(uow: UnitOfWork) -> tuple[int, Any]:
        with _as_http():
            product = await usecases.change_status(
                uow, product_id, action_name, expected, request_key=key
            )
        return 200, product.model_dump(mode="json")

    return await _write(request, action)


@router.post("/products/{product_id}/discontinue", dependencies=ADMIN, response_model=Product)
async def discontinue_product(
    product_id: str, request: Request, if_match: Annotated[str | None, Header()] = None
) -> JSONResponse:
    """Stop selling: every variant is published with status discontinued (409 if it is)."""
    return await _change_status(request, product_id, "discontinue", if_match)


@router.post("/products/{product_id}/reactivate", dependencies=ADMIN, response_model=Product)
async def reactivate_product(
    product_id: str, request: Request, if_match: Annotated[str | None, Header()] = None
) -> JSONResponse:
    """Bring a discontinued product back, as a draft to review before it sells again."""
    return await _change_status(request, product_id, "reactivate", if_match)


# --- bulk import and export ----------------------------------------------------------------


def _file_of(content_type: str, body: bytes) -> tuple[bytes, str]:
    """(the file's bytes, its content type) from a raw body or a multipart form's file part."""
    if not content_type.startswith("multipart/form-data"):
        return body, content_type
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    parts = [
        part
        for part in message.iter_parts()
        if part.get_param("name", header="content-disposition") != "format"
    ]
    chosen = next((p for p in parts if p.get_filename()), parts[0] if parts else None)
    if chosen is None:
        raise RequestValidationError(
            [{"type": "missing", "loc": ["body", "file"], "msg": "no file part in the form"}]
        )
    payload = chosen.get_payload(decode=True)
    data = payload if isinstance(payload, bytes) else b""
    kind = chosen.get_content_type()
    name = (chosen.get_filename() or "").lower()
    if name.endswith((".jsonl", ".ndjson")):
        kind = "application/jsonl"
    elif name.endswith(".csv"):
        kind = "text/csv"
    return data, kind


def _read_import(
    body: bytes, content_type: str, fmt: ImportFormat | None, currency: str, first_row: int | None
) -> list[ImportedProduct]:
    data, kind = _file_of(content_type, body)
    kind = kind.split(";")[0].strip().lower()
    fmt = fmt or ("jsonl" if kind in JSONL_TYPES else "csv")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as bad:
        raise RequestValidationError(
            [{"type": "encoding", "loc": ["body"], "msg": f"the file is not UTF-8: {bad}"}]
        ) from bad
    lines = io.StringIO(text, newline="")
    try:
        if fmt == "csv":
            items = list(read_shopify_csv(lines, shop_currency=currency))
        else:
            items = list(read_jsonl(lines))
    except ImportFormatError as bad:
        raise RequestValidationError(
            [{"type": "format", "loc": ["body"], "msg": str(bad)}]
        ) from bad
    shift = 0 if first_row is None else first_row - (2 if fmt == "csv" else 1)
    return [_shifted(item, shift) for item in items] if shift else items


def _shifted(item: ImportedProduct, shift: int) -> ImportedProduct:
    return replace(
        item,
        first_row=item.first_row + shift,
        last_row=item.last_row + shift,
        errors=tuple(replace(error, row=error.row + shift) for error in item.errors),
    )


@router.post("/imports", dependencies=ADMIN)
async def import_products(
    request: Request,
    format: Annotated[ImportFormat | None, Query(description="default: from Content-Type")] = None,
    currency: Annotated[str, Query(description="ISO 4217 currency of the CSV's prices")] = "USD",
    first_row: Annotated[
        int | None, Query(ge=1, description="file row of the body's first record (chunked files)")
    ] = None,
) -> JSONResponse:
    """Bulk import a Shopify product CSV or JSON lines (raw body or a multipart `file` part).

    Products are matched by handle. One transaction; each product is applied whole or not at
    all; an unchanged product changes nothing. The answer lists every bad row.
    """
    if currency not in MINOR_UNITS:
        raise RequestValidationError(
            [{"type": "currency", "loc": ["query", "currency"], "msg": "not an ISO 4217 code"}]
        )
    body = await request.body()
    content_type = request.headers.get("content-type", "text/csv")
    # Parsing and validating is CPU work: off the event loop, before the transaction opens.
    items = await asyncio.to_thread(_read_import, body, content_type, format, currency, first_row)
    key = request.headers.get("idempotency-key")

    async def action(uow: UnitOfWork) -> tuple[int, Any]:
        report = await usecases.import_products(uow, items, request_key=key)
        return 200, report.as_json()

    return await idempotent_write(request, action)


@router.get("/exports", dependencies=[Depends(require_role("read", "warehouse"))])
async def export_products(
    request: Request,
    format: ImportFormat = "csv",
    currency: Annotated[
        str, Query(description="the shop currency of the CSV's price columns")
    ] = "USD",
) -> StreamingResponse:
    """The whole catalog in the import formats, streamed from one consistent snapshot."""
    if currency not in MINOR_UNITS:
        raise RequestValidationError(
            [{"type": "currency", "loc": ["query", "currency"], "msg": "not an ISO 4217 code"}]
        )
    pool = request.app.state.pool

    async def chunks() -> AsyncIterator[str]:
        async with (
            pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            header = True
            async for documents in _batches(store.all_products(conn), 200):
                if format == "jsonl":
                    yield "".join(
                        json.dumps(doc, separators=(",", ":")) + "\n" for doc in documents
                    )
                    continue
                sink = io.StringIO()
                write_shopify_csv(
                    (Product.model_validate(doc) for doc in documents), sink, shop_currency=currency
                )
                text = sink.getvalue()
                # Each batch is written with the header; the file has it once.
                yield text if header else text.split("\n", 1)[1]
                header = False
            if header and format == "csv":
                sink = io.StringIO()
                write_shopify_csv([], sink, shop_currency=currency)
                yield sink.getvalue()

    media = "text/csv" if format == "csv" else "application/jsonl"
    return StreamingResponse(
        chunks(),
        media_type=f"{media}; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="catalog.{format}"'},
    )


async def _batches(items: AsyncIterator[Any], size: int) -> AsyncIterator[list[Any]]:
    batch: list[Any] = []
    async for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
