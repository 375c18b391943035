"""Bulk import and export: the Shopify product CSV layout and JSON lines.

Shopify's semantics: consecutive rows sharing a Handle are one product; its first row carries
the product fields, later rows only variant and/or image columns. "Variant Inventory Tracker"
blank means not tracked; "Variant Inventory Policy" `continue` means backorderable; "Variant
Grams" are grams (a file with "Variant Weight" instead is converted with its unit); Status
`archived` is our `discontinued`; "Variant Price" is in the shop's currency. "Variant Inventory
Qty" is ignored: stock owns quantities. A product without options is written Shopify's way,
as option "Title" with value "Default Title".

What Shopify has no column for travels in `stockflow:` columns, which Shopify ignores:
attributes (JSON), prices in other currencies ("EUR 11.00; GBP 9.50"), dimensions
("300x200x40" mm), preorder date (RFC 3339) and bundle components ("SKU*2; SKU*1").

Both readers stream: they yield one `ImportedProduct` per product as soon as its rows are read.
A product with any bad row is rejected whole (`product` is None, `errors` say why, row by row);
the others proceed. Rows are numbered as a spreadsheet shows them (the header is row 1).
Across the file, a SKU may belong to one accepted product only, and bundles may not nest.
Rows of one product must be consecutive; a handle that comes back later is rejected.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import IO, Any

from pydantic import ValidationError

from stockflow.catalog.domain import KNOWN_BUNDLES, KnownBundles, Product, Variant
from stockflow.contracts.currencies import MINOR_UNITS

ATTRIBUTES = "stockflow:attributes"
EXTRA_PRICES = "stockflow:variant_prices"
EXTRA_COMPARE_AT_PRICES = "stockflow:variant_compare_at_prices"
DIMENSIONS = "stockflow:variant_dimensions_mm"
PREORDER = "stockflow:variant_preorder_available_at"
BUNDLE = "stockflow:variant_bundle_components"

SHOPIFY_COLUMNS = (
    "Handle",
    "Title",
    "Body (HTML)",
    "Vendor",
    "Product Category",
    "Type",
    "Tags",
    "Published",
    "Option1 Name",
    "Option1 Value",
    "Option2 Name",
    "Option2 Value",
    "Option3 Name",
    "Option3 Value",
    "Variant SKU",
    "Variant Grams",
    "Variant Inventory Tracker",
    "Variant Inventory Qty",
    "Variant Inventory Policy",
    "Variant Fulfillment Service",
    "Variant Price",
    "Variant Compare At Price",
    "Variant Requires Shipping",
    "Variant Taxable",
    "Variant Barcode",
    "Image Src",
    "Image Position",
    "Image Alt Text",
    "Variant Weight Unit",
    "Status",
)
COLUMNS = (
    *SHOPIFY_COLUMNS,
    ATTRIBUTES,
    EXTRA_PRICES,
    EXTRA_COMPARE_AT_PRICES,
    DIMENSIONS,
    PREORDER,
    BUNDLE,
)
"""The export's header, in order."""

GRAMS_PER_UNIT = {
    "g": Decimal(1),
    "kg": Decimal(1000),
    "lb": Decimal("453.59237"),
    "oz": Decimal("28.349523125"),
}
DEFAULT_OPTION = ("Title", "Default Title")
TRUE, FALSE = "TRUE", "FALSE"
STATUS_FROM_SHOPIFY = {"active": "active", "draft": "draft", "archived": "discontinued"}
STATUS_TO_SHOPIFY = {ours: theirs for theirs, ours in STATUS_FROM_SHOPIFY.items()}

_PRODUCT_COLUMNS = {
    "handle": "Handle",
    "title": "Title",
    "description": "Body (HTML)",
    "vendor": "Vendor",
    "categories": "Product Category",
    "product_type": "Type",
    "tags": "Tags",
    "status": "Status",
    "attributes": ATTRIBUTES,
    "options": "Option1 Name",
    "variants": "Variant SKU",
    "images": "Image Src",
}
_VARIANT_COLUMNS = {
    "sku": "Variant SKU",
    "barcode": "Variant Barcode",
    "weight_grams": "Variant Grams",
    "dimensions_mm": DIMENSIONS,
    "requires_shipping": "Variant Requires Shipping",
    "taxable": "Variant Taxable",
    "tracked": "Variant Inventory Tracker",
    "backorderable": "Variant Inventory Policy",
    "preorder_available_at": PREORDER,
    "bundle_components": BUNDLE,
}
_IMAGE_COLUMNS = {"url": "Image Src", "alt": "Image Alt Text", "position": "Image Position"}
_VARIANT_MARKERS = ("Variant SKU", "Option1 Value", "Variant Price", "Variant Barcode")


class ImportFormatError(ValueError):
    """The file as a whole cannot be read (no header, no Handle column)."""


@dataclass(frozen=True)
class RowError:
    row: int
    column: str
    message: str

    def __str__(self) -> str:
        return f"row {self.row}, {self.column or 'line'}: {self.message}"


@dataclass(frozen=True)
class ImportedProduct:
    """One product of the file: `product` when every row of it is good, else its errors."""

    handle: str
    first_row: int
    last_row: int
    product: Product | None
    errors: tuple[RowError, ...] = ()

    @property
    def ok(self) -> bool:
        return self.product is not None


class _FileChecks:
    """Rules across products, from the accepted products seen so far (the reader streams)."""

    def __init__(self) -> None:
        self.first_row_of_handle: dict[str, int] = {}
        self.row_of_sku: dict[str, int] = {}
        self.bundle_skus: set[str] = set()
        self.component_skus: set[str] = set()
        self.bundles = KnownBundles(self.bundle_skus, self.component_skus)

    def repeated_handle(self, handle: str, row: int) -> str | None:
        first = self.first_row_of_handle.setdefault(handle, row)
        return None if first == row else f"handle {handle} already used at row {first}"

    def duplicate_skus(self, product: Product) -> list[tuple[int, str]]:
        """(variant index, message) for each SKU an earlier accepted product already has."""
        return [
            (i, f"SKU {v.sku} already used at row {self.row_of_sku[v.sku]}")
            for i, v in enumerate(product.variants)
            if v.sku in self.row_of_sku
        ]

    def accept(self, product: Product, variant_rows: list[int]) -> None:
        for variant, row in zip(product.variants, variant_rows, strict=True):
            self.row_of_sku[variant.sku] = row
            if variant.is_bundle:
                self.bundle_skus.add(variant.sku)
                self.component_skus.update(c.sku for c in variant.bundle_components)


# --- Shopify CSV: reading ------------------------------------------------------------------


def read_shopify_csv(source: Iterable[str], *, shop_currency: str) -> Iterator[ImportedProduct]:
    """Stream the products of a Shopify product CSV.

    Args:
        source: the file's lines (open it with newline="" so quoted line breaks survive).
        shop_currency: ISO 4217 currency of "Variant Price" and "Variant Compare At Price".

    Raises:
        ImportFormatError: the header is missing or has no Handle column.
    """
    if shop_currency not in MINOR_UNITS:
        raise ValueError(f"unknown ISO 4217 currency {shop_currency!r}")
    reader = csv.reader(source)
    # Excel writes a byte-order mark before the first header, which would hide "Handle".
    header = [name.strip().lstrip("\ufeff") for name in next(reader, [])]
    if "Handle" not in header:
        raise ImportFormatError("the first row must be a header with a Handle column")
    checks = _FileChecks()
    group: list[tuple[int, dict[str, str]]] = []
    for row_number, values in enumerate(reader, start=2):
        if not any(value.strip() for value in values):
            continue
        row = dict(zip(header, values, strict=False))
        handle = row.get("Handle", "").strip()
        # A row without a handle joins the product above: rejecting that product whole is
        # safer than guessing, and never half-applies it.
        if group and handle and handle != group[0][1]["Handle"].strip():
            yield _shopify_product(group, shop_currency, checks)
            group = []
        group.append((row_number, row))
    if group:
        yield _shopify_product(group, shop_currency, checks)


class _Cells:
    """One row's cells, collecting the errors of those that do not parse."""

    def __init__(self, row_number: int, row: Mapping[str, str], errors: list[RowError]) -> None:
        self.row_number = row_number
        self.row = row
        self.errors = errors

    def text(self, column: str) -> str:
        return (self.row.get(column) or "").strip()

    def fail(self, column: str, message: str) -> None:
        self.errors.append(RowError(self.row_number, column, message))

    def flag(self, column: str, *, default: bool) -> bool:
        value = self.text(column).upper()
        if value in (TRUE, FALSE):
            return value == TRUE
        if value:
            self.fail(column, f"expected TRUE or FALSE, not {value!r}")
        return default

    def decimal(self, column: str) -> Decimal | None:
        value = self.text(column)
        if not value:
            return None
        try:
            return Decimal(value)
        except InvalidOperation:
            self.fail(column, f"not a number: {value!r}")
            return None


def _shopify_product(
    group: list[tuple[int, dict[str, str]]], shop_currency: str, checks: _FileChecks
) -> ImportedProduct:
    errors: list[RowError] = []
    first_row, head = group[0]
    handle = head.get("Handle", "").strip()
    first = _Cells(first_row, head, errors)
    if handle and (repeated := checks.repeated_handle(handle, first_row)):
        errors.append(RowError(first_row, "Handle", f"{repeated}; keep a product's rows together"))
    options = [first.text(f"Option{i} Name") for i in (1, 2, 3) if first.text(f"Option{i} Name")]
    if options == [DEFAULT_OPTION[0]]:
        options = []
    variants: list[dict[str, Any]] = []
    variant_rows: list[int] = []
    images: list[dict[str, Any]] = []
    image_rows: list[int] = []
    for row_number, row in group:
        cells = _Cells(row_number, row, errors)
        if not cells.text("Handle"):
            cells.fail("Handle", "every row needs the handle of its product")
        if any(cells.text(column) for column in _VARIANT_MARKERS):
            variants.append(_variant_fields(cells, options, shop_currency))
            variant_rows.append(row_number)
        if cells.text("Image Src"):
            images.append(_image_fields(cells, images))
            image_rows.append(row_number)
    fields = {
        "handle": handle,
        "title": first.text("Title"),
        "description": head.get("Body (HTML)") or "",
        "vendor": first.text("Vendor"),
        "product_type": first.text("Type"),
        "categories": _split(first.text("Product Category"), ";"),
        "tags": _split(first.text("Tags"), ","),
        "status": _status(first),
        "images": images,
        "attributes": _json_cell(first, ATTRIBUTES),
        "options": options,
        "variants": variants,
    }
    last_row = group[-1][0]
    # Validate even after a cell failed to parse, so that one pass reports every bad cell.
    try:
        product = Product.model_validate(fields, context={KNOWN_BUNDLES: checks.bundles})
    except ValidationError as invalid:
        located = _Locator(first_row, variant_rows, image_rows, fields, shop_currency)
        # The CSV has no id column: the id is the handle, so an id error repeats a Handle one.
        errors += [
            located.row_error(error) for error in invalid.errors() if error["loc"] != ("id",)
        ]
    if errors:
        report = tuple(sorted(errors, key=lambda error: error.row))
        return ImportedProduct(handle, first_row, last_row, None, report)
    if duplicates := checks.duplicate_skus(product):
        report = tuple(RowError(variant_rows[i], "Variant SKU", why) for i, why in duplicates)
        return ImportedProduct(handle, first_row, last_row, None, report)
    checks.accept(product, variant_rows)
    return ImportedProduct(handle, first_row, last_row, product)


def _variant_fields(cells: _Cells, options: list[str], shop_currency: str) -> dict[str, Any]:
    values = [cells.text(f"Option{i} Value") for i in range(1, len(options) + 1)]
    prices = _prices(cells, "Variant Price", EXTRA_PRICES, shop_currency)
    compare_at = _prices(cells, "Variant Compare At Price", EXTRA_COMPARE_AT_PRICES, shop_currency)
    policy = cells.text("Variant Inventory Policy").lower()
    if policy not in ("", "deny", "continue"):
        cells.fail("Variant Inventory Policy", f"expected deny or continue, not {policy!r}")
    return {
        "sku": cells.text("Variant SKU"),
        "option_values": {
            name: value for name, value in zip(options, values, strict=True) if value
        },
        # Spreadsheets keep a barcode's leading zeros only behind an apostrophe.
        "barcode": cells.text("Variant Barcode").removeprefix("'") or None,
        "prices": prices,
        "compare_at_prices": compare_at,
        "weight_grams": _grams(cells),
        "dimensions_mm": _dimensions(cells),
        "requires_shipping": cells.flag("Variant Requires Shipping", default=True),
        "taxable": cells.flag("Variant Taxable", default=True),
        "tracked": bool(cells.text("Variant Inventory Tracker")),
        "backorderable": policy == "continue",
        "preorder_available_at": cells.text(PREORDER) or None,
        "bundle_components": _bundle(cells),
    }


def _prices(
    cells: _Cells, shop_column: str, extra_column: str, shop_currency: str
) -> list[dict[str, str]]:
    prices = []
    if amount := cells.text(shop_column):
        prices.append({"amount": amount, "currency": shop_currency})
    for entry in _split(cells.text(extra_column), ";"):
        currency, _, amount = entry.partition(" ")
        if not amount.strip():
            cells.fail(extra_column, f"expected 'CUR 12.00', not {entry!r}")
            continue
        prices.append({"amount": amount.strip(), "currency": currency})
    return prices


def _grams(cells: _Cells) -> int | None:
    if "Variant Grams" in cells.row or "Variant Weight" not in cells.row:
        grams = cells.decimal("Variant Grams")
    else:
        weight = cells.decimal("Variant Weight")
        unit = cells.text("Variant Weight Unit").lower() or "kg"
        factor = GRAMS_PER_UNIT.get(unit)
        if factor is None:
            cells.fail("Variant Weight Unit", f"expected one of {', '.join(GRAMS_PER_UNIT)}")
            return None
        grams = None if weight is None else weight * factor
    if grams is None:
        return None
    if grams < 0:
        cells.fail("Variant Grams", "a weight cannot be negative")
        return None
    return int(grams.to_integral_value(ROUND_HALF_UP))


def _dimensions(cells: _Cells) -> dict[str, int] | None:
    value = cells.text(DIMENSIONS)
    if not value:
        return None
    sides = value.lower().split("x")
    if len(sides) != 3 or not all(side.strip().isdigit() for side in sides):
        cells.fail(DIMENSIONS, f"expected length x width x height in mm, not {value!r}")
        return None
    return dict(zip(("length", "width", "height"), map(int, sides), strict=True))


def _bundle(cells: _Cells) -> list[dict[str, Any]]:
    components = []
    for entry in _split(cells.text(BUNDLE), ";"):
        sku, _, quantity = entry.partition("*")
        if not quantity.strip().isdigit():
            cells.fail(BUNDLE, f"expected SKU*quantity, not {entry!r}")
            continue
        components.append({"sku": sku.strip(), "quantity": int(quantity)})
    return components


def _image_fields(cells: _Cells, earlier: list[dict[str, Any]]) -> dict[str, Any]:
    position = cells.text("Image Position")
    if position and not position.isdigit():
        cells.fail("Image Position", f"not a whole number: {position!r}")
    return {
        "url": cells.text("Image Src"),
        "alt": cells.text("Image Alt Text"),
        "position": int(position) if position.isdigit() else len(earlier) + 1,
    }


def _status(first: _Cells) -> str:
    status = first.text("Status").lower()
    if not status:
        # Older exports have no Status column; Published is all they say.
        return "active" if first.flag("Published", default=False) else "draft"
    if status not in STATUS_FROM_SHOPIFY:
        first.fail("Status", f"expected one of {', '.join(STATUS_FROM_SHOPIFY)}, not {status!r}")
        return "draft"
    return STATUS_FROM_SHOPIFY[status]


def _json_cell(cells: _Cells, column: str) -> Any:
    value = cells.text(column)
    if not value:
        return {}
    try:
        return json.loads(value)
    except ValueError as bad:
        cells.fail(column, f"not JSON: {bad}")
        return {}


def _split(value: str, separator: str) -> list[str]:
    return [part.strip() for part in value.split(separator) if part.strip()]


@dataclass(frozen=True)
class _Locator:
    """Turns a pydantic error's loc inside the product into the row and column it came from."""

    first_row: int
    variant_rows: list[int]
    image_rows: list[int]
    fields: dict[str, Any]
    shop_currency: str

    def row_error(self, error: Mapping[str, Any]) -> RowError:
        loc = error["loc"]
        row, column = self._cell(loc)
        path = ".".join(str(part) for part in loc)
        return RowError(row, column, f"{path}: {_message(error)}")

    def _cell(self, loc: tuple[Any, ...]) -> tuple[int, str]:
        if len(loc) >= 2 and loc[0] == "images":
            return self.image_rows[loc[1]], _IMAGE_COLUMNS.get(_at(loc, 2), "Image Src")
        if len(loc) >= 2 and loc[0] == "variants":
            return self.variant_rows[loc[1]], self._variant_column(loc[1], loc[2:])
        return self.first_row, _PRODUCT_COLUMNS.get(_at(loc, 0), "Handle")

    def _variant_column(self, index: int, loc: tuple[Any, ...]) -> str:
        name = _at(loc, 0)
        if name == "option_values":
            options = self.fields["options"]
            option = _at(loc, 1)
            return f"Option{options.index(option) + 1 if option in options else 1} Value"
        if name in ("prices", "compare_at_prices"):
            prices = self.fields["variants"][index][name]
            position = _at(loc, 1)
            # No position: the rule is about the list, and the shop's price column comes first.
            in_shop_currency = (
                not isinstance(position, int) or prices[position]["currency"] == self.shop_currency
            )
            if name == "prices":
                return "Variant Price" if in_shop_currency else EXTRA_PRICES
            return "Variant Compare At Price" if in_shop_currency else EXTRA_COMPARE_AT_PRICES
        return _VARIANT_COLUMNS.get(name, "Variant SKU")


def _message(error: Mapping[str, Any]) -> str:
    return str(error["msg"]).removeprefix("Value error, ")


def _at(loc: tuple[Any, ...], index: int) -> Any:
    return loc[index] if len(loc) > index else None


# --- Shopify CSV: writing ------------------------------------------------------------------


def write_shopify_csv(products: Iterable[Product], sink: IO[str], *, shop_currency: str) -> int:
    """Write products in the Shopify layout (plus the `stockflow:` columns); returns rows written.

    A product takes max(variants, images) rows, as Shopify's own export does: variant i and
    image i share row i, and the first row carries the product fields.
    """
    writer = csv.DictWriter(sink, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    rows = 0
    for product in products:
        for index in range(max(len(product.variants), len(product.images))):
            row = {"Handle": product.handle}
            if index == 0:
                row.update(_product_cells(product))
            if index < len(product.variants):
                row.update(_variant_cells(product, product.variants[index], shop_currency))
            if index < len(product.images):
                image = product.images[index]
                row.update(
                    {
                        "Image Src": image.url,
                        "Image Position": str(image.position),
                        "Image Alt Text": image.alt,
                    }
                )
            writer.writerow(row)
            rows += 1
    return rows


def _product_cells(product: Product) -> dict[str, str]:
    names = product.options or [DEFAULT_OPTION[0]]
    attributes = product.model_dump(mode="json", include={"attributes"})["attributes"]
    return {
        "Title": product.title,
        "Body (HTML)": product.description,
        "Vendor": product.vendor or "",
        "Product Category": "; ".join(product.categories),
        "Type": product.product_type or "",
        "Tags": ", ".join(product.tags),
        "Published": TRUE if product.status == "active" else FALSE,
        "Status": STATUS_TO_SHOPIFY[product.status],
        ATTRIBUTES: json.dumps(attributes, sort_keys=True) if attributes else "",
        **{f"Option{i} Name": name for i, name in enumerate(names, start=1)},
    }


def _variant_cells(product: Product, variant: Variant, shop_currency: str) -> dict[str, str]:
    if product.options:
        values = [variant.option_values[name] for name in product.options]
    else:
        values = [DEFAULT_OPTION[1]]
    shop_price = variant.price_in(shop_currency)
    shop_compare_at = next(
        (p for p in variant.compare_at_prices if p.currency == shop_currency), None
    )
    dimensions = variant.dimensions_mm
    return {
        **{f"Option{i} Value": value for i, value in enumerate(values, start=1)},
        "Variant SKU": variant.sku,
        "Variant Grams": "" if variant.weight_grams is None else str(variant.weight_grams),
        "Variant Weight Unit": "" if variant.weight_grams is None else "g",
        "Variant Inventory Tracker": "shopify" if variant.tracked else "",
        "Variant Inventory Policy": "continue" if variant.backorderable else "deny",
        "Variant Fulfillment Service": "manual",
        "Variant Price": "" if shop_price is None else format(shop_price.amount, "f"),
        "Variant Compare At Price": (
            "" if shop_compare_at is None else format(shop_compare_at.amount, "f")
        ),
        "Variant Requires Shipping": TRUE if variant.requires_shipping else FALSE,
        "Variant Taxable": TRUE if variant.taxable else FALSE,
        "Variant Barcode": variant.barcode or "",
        EXTRA_PRICES: _other_currencies(variant.prices, shop_currency),
        EXTRA_COMPARE_AT_PRICES: _other_currencies(variant.compare_at_prices, shop_currency),
        DIMENSIONS: (
            ""
            if dimensions is None
            else f"{dimensions.length}x{dimensions.width}x{dimensions.height}"
        ),
        PREORDER: variant.model_dump(mode="json")["preorder_available_at"] or "",
        BUNDLE: "; ".join(f"{c.sku}*{c.quantity}" for c in variant.bundle_components),
    }


def _other_currencies(prices: Iterable[Any], shop_currency: str) -> str:
    return "; ".join(
        f"{p.currency} {format(p.amount, 'f')}" for p in prices if p.currency != shop_currency
    )


# --- JSON lines ------------------------------------------------------------------------------


def read_jsonl(source: Iterable[str]) -> Iterator[ImportedProduct]:
    """Stream products from JSON lines, one product's JSON per line (blank lines skipped).

    Errors name the line as `row` and the field path (e.g. `variants.0.barcode`) as `column`.
    """
    checks = _FileChecks()
    for row_number, line in enumerate(source, start=1):
        if not line.strip():
            continue
        yield _json_product(row_number, line, checks)


def _json_product(row_number: int, line: str, checks: _FileChecks) -> ImportedProduct:
    try:
        data = json.loads(line)
    except ValueError as bad:
        return ImportedProduct(
            "", row_number, row_number, None, (RowError(row_number, "", str(bad)),)
        )
    handle = str(data.get("handle", "")) if isinstance(data, dict) else ""

    def rejected(*errors: RowError) -> ImportedProduct:
        return ImportedProduct(handle, row_number, row_number, None, errors)

    if handle and (repeated := checks.repeated_handle(handle, row_number)):
        return rejected(RowError(row_number, "handle", repeated))
    try:
        product = Product.model_validate(data, context={KNOWN_BUNDLES: checks.bundles})
    except ValidationError as invalid:
        return rejected(
            *(
                RowError(row_number, ".".join(map(str, error["loc"])), _message(error))
                for error in invalid.errors()
            )
        )
    if duplicates := checks.duplicate_skus(product):
        return rejected(*(RowError(row_number, f"variants.{i}.sku", why) for i, why in duplicates))
    checks.accept(product, [row_number] * len(product.variants))
    return ImportedProduct(handle, row_number, row_number, product)


def write_jsonl(products: Iterable[Product], sink: IO[str]) -> int:
    """Write one product's JSON per line; returns the number of products written."""
    count = 0
    for product in products:
        sink.write(product.model_dump_json())
        sink.write("\n")
        count += 1
    return count
