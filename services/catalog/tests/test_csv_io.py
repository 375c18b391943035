"""Bulk import and export: Shopify CSV semantics, error reports, round trips, the generator."""

from __future__ import annotations

import csv
import io
import time
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from stockflow.catalog.csv_io import (
    BUNDLE,
    DIMENSIONS,
    EXTRA_PRICES,
    ImportedProduct,
    ImportFormatError,
    RowError,
    read_jsonl,
    read_shopify_csv,
    write_jsonl,
    write_shopify_csv,
)
from stockflow.catalog.domain import Product, content_digest
from stockflow.catalog.sample_data import Fault, SampleCatalog, sample_shopify_csv

HEADER = (
    "Handle",
    "Title",
    "Status",
    "Option1 Name",
    "Option1 Value",
    "Variant SKU",
    "Variant Price",
    "Variant Inventory Tracker",
    "Variant Inventory Policy",
    "Variant Requires Shipping",
    "Variant Barcode",
    "Image Src",
    "Image Position",
)


def csv_text(rows: list[dict[str, str]], header: tuple[str, ...] = HEADER) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=header)
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def read(text: str, currency: str = "USD") -> list[ImportedProduct]:
    return list(read_shopify_csv(io.StringIO(text, newline=""), shop_currency=currency))


def only_product(text: str, currency: str = "USD") -> Product:
    [imported] = read(text, currency)
    assert imported.errors == ()
    assert imported.product is not None
    return imported.product


def first_row(**cells: str) -> dict[str, str]:
    base = {
        "Handle": "tee",
        "Title": "Tee",
        "Status": "active",
        "Option1 Name": "Size",
        "Option1 Value": "S",
        "Variant SKU": "TEE-S",
        "Variant Price": "19.00",
        "Variant Inventory Tracker": "shopify",
        "Variant Inventory Policy": "deny",
    }
    return {**base, **cells}


def export(products: list[Product], currency: str = "USD") -> str:
    out = io.StringIO()
    rows = write_shopify_csv(products, out, shop_currency=currency)
    assert rows == len(list(csv.DictReader(io.StringIO(out.getvalue()))))
    return out.getvalue()


# --- Shopify semantics ---------------------------------------------------------------------


def test_rows_sharing_a_handle_form_one_product_with_variant_and_image_rows() -> None:
    text = csv_text(
        [
            first_row(**{"Image Src": "https://cdn.example.com/1.jpg", "Image Position": "1"}),
            {"Handle": "tee", "Option1 Value": "M", "Variant SKU": "TEE-M", "Variant Price": "19"},
            {"Handle": "tee", "Image Src": "https://cdn.example.com/2.jpg"},
            first_row(Handle="cap", Title="Cap", **{"Variant SKU": "CAP-S"}),
        ]
    )
    tee, cap = [imported.product for imported in read(text)]
    assert tee is not None and cap is not None
    assert [v.sku for v in tee.variants] == ["TEE-S", "TEE-M"]
    assert [(i.url[-5:], i.position) for i in tee.images] == [("1.jpg", 1), ("2.jpg", 2)]
    assert (cap.title, cap.variants[0].sku) == ("Cap", "CAP-S")


def test_inventory_tracker_blank_means_not_tracked_and_continue_means_backorderable() -> None:
    text = csv_text(
        [
            first_row(),
            {
                "Handle": "tee",
                "Option1 Value": "M",
                "Variant SKU": "TEE-M",
                "Variant Price": "19.00",
                "Variant Inventory Tracker": "",
                "Variant Inventory Policy": "continue",
            },
        ]
    )
    small, medium = only_product(text).variants
    assert (small.tracked, small.backorderable) == (True, False)
    assert (medium.tracked, medium.backorderable) == (False, True)


def test_requires_shipping_false_is_a_digital_good_and_cannot_be_tracked() -> None:
    digital = first_row(**{"Variant Requires Shipping": "FALSE", "Variant Inventory Tracker": ""})
    assert only_product(csv_text([digital])).variants[0].requires_shipping is False
    [imported] = read(csv_text([{**digital, "Variant Inventory Tracker": "shopify"}]))
    assert imported.errors[0].column == "Variant Inventory Tracker"


@pytest.mark.parametrize(
    ("weight", "unit", "grams"),
    [("250", "g", 250), ("1.2", "kg", 1200), ("1", "lb", 454), ("3", "oz", 85), ("2", "", 2000)],
)
def test_variant_weight_with_a_unit_becomes_grams(weight: str, unit: str, grams: int) -> None:
    header = (*HEADER, "Variant Weight", "Variant Weight Unit")
    text = csv_text([first_row(**{"Variant Weight": weight, "Variant Weight Unit": unit})], header)
    assert only_product(text).variants[0].weight_grams == grams


def test_variant_grams_are_grams_whatever_the_display_unit() -> None:
    header = (*HEADER, "Variant Grams", "Variant Weight Unit")
    text = csv_text([first_row(**{"Variant Grams": "500.0", "Variant Weight Unit": "kg"})], header)
    assert only_product(text).variants[0].weight_grams == 500


@pytest.mark.parametrize(
    ("status", "published", "expected"),
    [
        ("active", "", "active"),
        ("draft", "TRUE", "draft"),
        ("archived", "", "discontinued"),
        ("", "TRUE", "active"),
        ("", "FALSE", "draft"),
    ],
)
def test_status_archived_is_discontinued_and_published_stands_in_when_blank(
    status: str, published: str, expected: str
) -> None:
    text = csv_text([first_row(Status=status, Published=published)], (*HEADER, "Published"))
    assert only_product(text).status == expected


def test_default_title_means_a_product_without_options() -> None:
    text = csv_text([first_row(**{"Option1 Name": "Title", "Option1 Value": "Default Title"})])
    product = only_product(text)
    assert (product.options, product.variants[0].option_values) == ([], {})


def test_variant_price_is_in_the_shop_currency() -> None:
    text = csv_text([first_row(**{"Variant Price": "2500"})])
    [price] = only_product(text, currency="JPY").variants[0].prices
    assert (price.amount, price.currency) == (Decimal(2500), "JPY")


def test_a_barcode_behind_a_spreadsheet_apostrophe_keeps_its_leading_zero() -> None:
    text = csv_text([first_row(**{"Variant Barcode": "'036000291452"})])
    assert only_product(text).variants[0].barcode == "036000291452"


def test_a_byte_order_mark_before_the_header_is_ignored() -> None:
    assert only_product("\ufeff" + csv_text([first_row()])).handle == "tee"


def test_unknown_shop_currency_and_missing_handle_column_are_refused_up_front() -> None:
    with pytest.raises(ValueError):
        read(csv_text([first_row()]), currency="XXY")
    with pytest.raises(ImportFormatError):
        read("Title,Variant SKU\nTee,TEE-S\n")


# --- error report: a bad row rejects its whole product, the others proceed -------------------


def test_a_bad_row_rejects_its_whole_product_and_others_proceed() -> None:
    text = csv_text(
        [
            first_row(),
            {"Handle": "tee", "Option1 Value": "M", "Variant SKU": "TEE-M", "Variant Price": "x"},
            first_row(Handle="cap", **{"Variant SKU": "CAP-S"}),
        ]
    )
    tee, cap = read(text)
    assert tee.product is None and (tee.first_row, tee.last_row) == (2, 3)
    [error] = tee.errors
    assert (error.row, error.column) == (3, "Variant Price")
    assert "variants.1.prices.0.amount" in error.message
    assert str(error).startswith("row 3, Variant Price: variants.1.prices.0.amount: ")
    assert cap.ok


@pytest.mark.parametrize(
    ("cells", "column"),
    [
        ({"Variant Barcode": "4006381333932"}, "Variant Barcode"),
        ({"Variant SKU": "TEE S"}, "Variant SKU"),
        ({"Option1 Value": ""}, "Option1 Value"),
        ({"Variant Inventory Policy": "sometimes"}, "Variant Inventory Policy"),
        ({"Variant Requires Shipping": "maybe"}, "Variant Requires Shipping"),
        ({"Status": "deleted"}, "Status"),
        ({"Handle": "Tee Shirt"}, "Handle"),
        ({"Title": ""}, "Title"),
        (
            {"Image Src": "https://cdn.example.com/1.jpg", "Image Position": "first"},
            "Image Position",
        ),
        ({"Image Src": "cdn.example.com/1.jpg"}, "Image Src"),
    ],
)
def test_errors_name_the_row_and_the_column(cells: dict[str, str], column: str) -> None:
    [imported] = read(csv_text([first_row(**cells)]))
    assert imported.product is None
    assert [(e.row, e.column) for e in imported.errors] == [(2, column)]


def test_every_bad_cell_of_a_product_is_reported_in_row_order() -> None:
    rows = [
        first_row(**{"Variant Barcode": "4006381333932"}),
        {"Handle": "tee", "Option1 Value": "M", "Variant SKU": "TEE-M", "Variant Price": "1",
         "Variant Inventory Policy": "sometimes", "Variant Requires Shipping": "maybe"},
    ]  # fmt: skip
    [imported] = read(csv_text(rows))
    assert [(e.row, e.column) for e in imported.errors] == [
        (2, "Variant Barcode"),
        (3, "Variant Inventory Policy"),
        (3, "Variant Requires Shipping"),
    ]


def test_errors_in_stockflow_columns_name_them() -> None:
    header = (*HEADER, EXTRA_PRICES, DIMENSIONS, BUNDLE)
    for column, value in [(EXTRA_PRICES, "EUR"), (DIMENSIONS, "10x20"), (BUNDLE, "MUG*two")]:
        [imported] = read(csv_text([first_row(**{column: value})], header))
        assert [e.column for e in imported.errors] == [column]
    [imported] = read(csv_text([first_row(**{EXTRA_PRICES: "EUR 1.234"})], header))
    assert [e.column for e in imported.errors] == [EXTRA_PRICES]


def test_a_row_without_handle_rejects_the_product_above() -> None:
    rows = [first_row(), {"Option1 Value": "M", "Variant SKU": "TEE-M", "Variant Price": "1"}]
    [imported] = read(csv_text(rows))
    assert imported.errors == (RowError(3, "Handle", "every row needs the handle of its product"),)


def test_a_handle_that_comes_back_later_is_rejected() -> None:
    rows = [first_row(), first_row(Handle="cap", **{"Variant SKU": "CAP"}), first_row()]
    tee, cap, again = read(csv_text(rows))
    assert tee.ok and cap.ok and not again.ok
    assert again.errors[0].column == "Handle" and "row 2" in again.errors[0].message


def test_a_sku_already_imported_rejects_the_later_product() -> None:
    rows = [first_row(), first_row(Handle="tee-2")]
    first, second = read(csv_text(rows))
    assert first.ok
    assert [(e.row, e.column) for e in second.errors] == [(3, "Variant SKU")]


def test_bundles_do_not_nest_across_the_file() -> None:
    header = (*HEADER, BUNDLE)
    kit = {"Variant Inventory Tracker": "", "Option1 Name": "Title", "Option1 Value": "x"}
    rows = [
        first_row(Handle="kit-a", **{**kit, "Variant SKU": "KIT-A", BUNDLE: "TEE-S*2"}),
        first_row(Handle="kit-b", **{**kit, "Variant SKU": "KIT-B", BUNDLE: "KIT-A*1"}),
    ]
    kit_a, kit_b = read(csv_text(rows, header))
    assert kit_a.ok
    assert [(e.row, e.column) for e in kit_b.errors] == [(3, BUNDLE)]


# --- round trips and idempotency -----------------------------------------------------------


def full_product() -> Product:
    """A product using every field the CSV carries, Shopify's or ours."""
    return Product.model_validate(
        {
            "handle": "trail-jacket",
            "title": "Trail Jacket",
            "description": '<p>Wind-proof, <em>"packable"</em>,\nwith pockets.</p>',
            "vendor": "Fjord & Fell",
            "product_type": "Jacket",
            "categories": ["Apparel > Outerwear", "Outdoor > Jackets"],
            "tags": ["outdoor", "wind"],
            "status": "discontinued",
            "attributes": {"gsm": 120, "waterproof": True, "rating": 4.5, "fill": Decimal("0.85")},
            "options": ["Size", "Colour", "Fit"],
            "images": [
                {"url": "https://cdn.example.com/j/2.jpg", "alt": "back", "position": 2},
                {"url": "https://cdn.example.com/j/1.jpg", "alt": "", "position": 1},
                {"url": "https://cdn.example.com/j/3.jpg", "alt": "detail", "position": 3},
            ],
            "variants": [
                {
                    "sku": "TJ-M-RED-R",
                    "option_values": {"Size": "M", "Colour": "Red", "Fit": "Regular"},
                    "barcode": "036000291452",
                    "prices": [
                        {"amount": "129.00", "currency": "USD"},
                        {"amount": "119.00", "currency": "EUR"},
                        {"amount": "19000", "currency": "JPY"},
                    ],
                    "compare_at_prices": [
                        {"amount": "149.00", "currency": "USD"},
                        {"amount": "139.00", "currency": "EUR"},
                    ],
                    "weight_grams": 640,
                    "dimensions_mm": {"length": 400, "width": 300, "height": 60},
                    "taxable": False,
                    "backorderable": True,
                    "preorder_available_at": datetime(2025, 9, 1, 8, tzinfo=UTC),
                },
                {
                    "sku": "TJ-KIT",
                    "option_values": {"Size": "M", "Colour": "Red", "Fit": "Kit"},
                    "prices": [{"amount": "159.00", "currency": "EUR"}],
                    "tracked": False,
                    "bundle_components": [
                        {"sku": "TJ-M-RED-R", "quantity": 1},
                        {"sku": "HOOD", "quantity": 2},
                    ],
                },
            ],
        }
    )


def test_a_product_using_every_field_survives_csv_and_json_lines() -> None:
    product = full_product()
    assert only_product(export([product])) == product
    lines = io.StringIO()
    write_jsonl([product], lines)
    [imported] = read_jsonl(io.StringIO(lines.getvalue()))
    assert imported.product == product


def test_export_uses_one_row_per_variant_or_image_and_shopify_spellings() -> None:
    rows = list(csv.DictReader(io.StringIO(export([full_product()]))))
    assert len(rows) == 3 and {row["Handle"] for row in rows} == {"trail-jacket"}
    first, kit, image_only = rows
    assert (first["Status"], first["Published"], first["Title"]) == (
        "archived",
        "FALSE",
        "Trail Jacket",
    )
    assert (first["Variant Inventory Tracker"], first["Variant Inventory Policy"]) == (
        "shopify",
        "continue",
    )
    assert (first["Variant Price"], first[EXTRA_PRICES]) == ("129.00", "EUR 119.00; JPY 19000")
    assert (kit["Title"], kit["Variant Price"], kit[BUNDLE]) == ("", "", "TJ-M-RED-R*1; HOOD*2")
    assert (image_only["Variant SKU"], image_only["Image Position"]) == ("", "3")  # fmt: skip


@pytest.fixture(scope="module")
def sample() -> SampleCatalog:
    return sample_shopify_csv(4000, seed=11, faults=[*Fault, Fault.BAD_BARCODE, Fault.BAD_PRICE])


def test_importing_a_generated_file_rejects_exactly_the_faulty_products(
    sample: SampleCatalog,
) -> None:
    started = time.perf_counter()
    results = read(sample.text)
    elapsed = time.perf_counter() - started
    rows = sample.text.count("\n") - 1
    print(
        f"\n{rows} rows, {len(results)} products in {elapsed:.2f} s: {rows / elapsed:,.0f} rows/s"
    )
    assert elapsed < 10
    assert [r.handle for r in results] == list(sample.handles)
    rejected = {r.handle: r.errors for r in results if not r.ok}
    assert set(rejected) == set(sample.faulty)
    assert all(
        errors and all(e.row >= 2 and e.column for e in errors) for errors in rejected.values()
    )
    accepted = [r.product for r in results if r.product is not None]
    assert len({v.sku for p in accepted for v in p.variants}) == sum(
        len(p.variants) for p in accepted
    )
    kinds = {p.variants[0].sku[:2] for p in accepted}
    assert kinds == {"AP", "DL", "SV", "KI"}  # apparel, downloads, services, kits


def test_the_fault_decides_the_reported_column(sample: SampleCatalog) -> None:
    expected = {
        Fault.BAD_BARCODE: "Variant Barcode",
        Fault.BAD_PRICE: "Variant Price",
        Fault.DUPLICATE_SKU: "Variant SKU",
        Fault.MISSING_HANDLE: "Handle",
        Fault.NESTED_BUNDLE: BUNDLE,
    }
    for imported in read(sample.text):
        if not imported.ok:
            fault = sample.faulty[imported.handle]
            assert [e.column for e in imported.errors] == [expected[fault]], imported.errors


def test_reimporting_the_same_file_yields_identical_products(sample: SampleCatalog) -> None:
    first = [r.product for r in read(sample.text)]
    second = [r.product for r in read(sample.text)]
    assert first == second
    digests = [content_digest(p) for p in first if p is not None]
    assert digests == [content_digest(p) for p in second if p is not None]


def test_import_export_import_gives_equal_products(sample: SampleCatalog) -> None:
    products = [r.product for r in read(sample.text) if r.product is not None]
    assert [r.product for r in read(export(products))] == products
    lines = io.StringIO()
    assert write_jsonl(products, lines) == len(products)
    assert [r.product for r in read_jsonl(io.StringIO(lines.getvalue()))] == products


def test_the_generator_is_deterministic_and_exact() -> None:
    one = sample_shopify_csv(200, seed=5, faults=[Fault.BAD_PRICE])
    assert one == sample_shopify_csv(200, seed=5, faults=[Fault.BAD_PRICE])
    assert one.text != sample_shopify_csv(200, seed=6).text
    clean = sample_shopify_csv(200, seed=5)
    imported = read(clean.text)
    assert sum(len(r.product.variants) for r in imported if r.product) == clean.variant_count


def test_the_generator_refuses_more_faults_than_products() -> None:
    with pytest.raises(ValueError):
        sample_shopify_csv(20, faults=[Fault.BAD_PRICE] * 50)


# --- JSON lines ----------------------------------------------------------------------------


def test_json_lines_report_the_line_and_field_path_and_go_on() -> None:
    good = full_product().model_dump_json()
    bad_barcode = good.replace("036000291452", "036000291453").replace("trail-jacket", "other")
    lines = "\n".join([good, "{not json", "", bad_barcode, good]) + "\n"
    results = list(read_jsonl(io.StringIO(lines)))
    assert [r.ok for r in results] == [True, False, False, False]
    assert results[1].errors[0].row == 2
    assert [(e.row, e.column) for e in results[2].errors] == [(4, "variants.0.barcode")]
    assert [(e.row, e.column) for e in results[3].errors] == [(5, "handle")]


def test_json_lines_refuse_a_sku_of_an_earlier_product() -> None:
    product = full_product()
    twin = product.model_copy(update={"handle": "twin", "id": "twin"})
    results = list(
        read_jsonl(io.StringIO(f"{product.model_dump_json()}\n{twin.model_dump_json()}\n"))
    )
    assert [(e.row, e.column) for e in results[1].errors] == [
        (2, "variants.0.sku"),
        (2, "variants.1.sku"),
    ]
