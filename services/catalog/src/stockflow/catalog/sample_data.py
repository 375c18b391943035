"""A deterministic, realistic Shopify product CSV for tests and the demo.

Apparel with Size and Colour, digital downloads and services (not shipped, not tracked), and a
couple of bundles of apparel SKUs at the end. Faults can be injected, one per product, each
into a different product, so a test knows exactly which products the import must reject.
"""

from __future__ import annotations

import csv
import io
import random
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from stockflow.catalog.csv_io import BUNDLE, EXTRA_PRICES, SHOPIFY_COLUMNS
from stockflow.catalog.domain import gtin_check_digit

Row = dict[str, str]

SIZES = ("XS", "S", "M", "L", "XL", "XXL")
COLOURS = ("Black", "White", "Navy", "Olive", "Sand", "Red", "Grey", "Teal")
GARMENTS = {
    # name: (category, grams, base price)
    "T-Shirt": ("Apparel & Accessories > Clothing > Shirts & Tops", 180, 19),
    "Hoodie": ("Apparel & Accessories > Clothing > Activewear", 620, 49),
    "Socks": ("Apparel & Accessories > Clothing > Underwear & Socks", 60, 9),
    "Cap": ("Apparel & Accessories > Clothing Accessories > Hats", 110, 24),
    "Jacket": ("Apparel & Accessories > Clothing > Outerwear", 950, 129),
}
STYLES = ("Classic", "Organic", "Heavyweight", "Relaxed", "Trail", "Urban", "Vintage", "Essential")
DOWNLOADS = ("Field Guide eBook", "Lightroom Presets", "Sewing Pattern", "Display Font")
SERVICES = ("Gift Wrapping", "Embroidery", "Style Consultation", "Alterations")
VENDORS = ("Northwind Apparel", "Fjord & Fell", "Tidewater Co.")


class Fault(StrEnum):
    """A defect injected into one row of one product."""

    BAD_BARCODE = "bad_barcode"
    BAD_PRICE = "bad_price"
    DUPLICATE_SKU = "duplicate_sku"
    MISSING_HANDLE = "missing_handle"
    NESTED_BUNDLE = "nested_bundle"


@dataclass(frozen=True)
class SampleCatalog:
    text: str
    handles: tuple[str, ...]
    """Every product, in file order."""
    faulty: dict[str, Fault]
    """The products with an injected fault, which an import must reject."""
    variant_count: int


def sample_shopify_csv(
    variants: int, *, seed: int = 1, faults: Sequence[Fault] = ()
) -> SampleCatalog:
    """A Shopify CSV with exactly `variants` variants (prices in USD, some also in EUR).

    Args:
        variants: how many variant rows; at least 20 so that the bundles have components.
        seed: the same seed gives the same file, byte for byte.
        faults: one fault per entry, each in a different product (repeat a fault for more).
    """
    if variants < 20:
        raise ValueError("ask for at least 20 variants")
    rng = random.Random(seed)
    products: list[list[Row]] = []
    remaining = variants - 2  # the two bundles come last
    while remaining > 0:
        kind = rng.choices(("apparel", "download", "service"), weights=(75, 15, 10))[0]
        number = len(products) + 1
        rows = {"apparel": _apparel, "download": _download, "service": _service}[kind](
            rng, number, remaining
        )
        remaining -= sum(1 for row in rows if row["Variant SKU"])
        products.append(rows)
    apparel_skus = [
        row["Variant SKU"] for rows in products for row in rows if row["Variant SKU"][:2] == "AP"
    ]
    for number in (len(products) + 1, len(products) + 2):
        products.append(_bundle(rng, number, apparel_skus))
    faulty = _inject(rng, products, faults)
    return SampleCatalog(
        text=_to_csv(products),
        handles=tuple(rows[0]["Handle"] for rows in products),
        faulty=faulty,
        variant_count=variants,
    )


def _ean13(rng: random.Random) -> str:
    # Prefix 20-29 is GS1's range for in-store numbers, so no real product's code is taken.
    body = f"2{rng.randrange(10**11):011d}"
    return body + str(gtin_check_digit(body))


def _status(rng: random.Random) -> str:
    return rng.choices(("active", "draft", "archived"), weights=(85, 10, 5))[0]


def _product_row(handle: str, title: str, rng: random.Random, **cells: str) -> Row:
    status = _status(rng)
    return {
        "Handle": handle,
        "Title": title,
        "Vendor": rng.choice(VENDORS),
        "Published": "TRUE" if status == "active" else "FALSE",
        "Status": status,
        **cells,
    }


def _apparel(rng: random.Random, number: int, limit: int) -> list[Row]:
    garment = rng.choice(list(GARMENTS))
    category, grams, base_price = GARMENTS[garment]
    style = rng.choice(STYLES)
    handle = f"{style}-{garment}-{number}".lower()
    sizes = SIZES[rng.randrange(0, 2) : rng.randrange(4, 7)]
    colours = rng.sample(COLOURS, rng.randint(1, 3))
    combinations = [(size, colour) for colour in colours for size in sizes][:limit]
    price = Decimal(base_price) + Decimal(rng.choice(("0.00", "0.50", "0.99")))
    on_sale = rng.random() < 0.2
    rows = []
    for index, (size, colour) in enumerate(combinations):
        row = (
            _product_row(
                handle,
                f"{style} {garment}",
                rng,
                **{
                    "Body (HTML)": f"<p>Our {style.lower()} {garment.lower()}.</p>",
                    "Product Category": category,
                    "Type": garment,
                    "Tags": ", ".join(sorted({style.lower(), garment.lower(), "apparel"})),
                    "Option1 Name": "Size",
                    "Option2 Name": "Colour",
                },
            )
            if index == 0
            else {"Handle": handle}
        )
        row.update(
            {
                "Option1 Value": size,
                "Option2 Value": colour,
                "Variant SKU": f"AP{number:05d}-{size}-{colour[:3].upper()}",
                "Variant Grams": str(grams + 10 * SIZES.index(size)),
                "Variant Weight Unit": "g",
                "Variant Inventory Tracker": "shopify",
                "Variant Inventory Qty": str(rng.randint(0, 200)),
                "Variant Inventory Policy": "continue" if rng.random() < 0.1 else "deny",
                "Variant Fulfillment Service": "manual",
                "Variant Price": f"{price:.2f}",
                "Variant Compare At Price": f"{price * Decimal('1.25'):.2f}" if on_sale else "",
                "Variant Requires Shipping": "TRUE",
                "Variant Taxable": "TRUE",
                "Variant Barcode": _ean13(rng),
                EXTRA_PRICES: f"EUR {price * Decimal('0.92'):.2f}" if number % 3 == 0 else "",
            }
        )
        rows.append(row)
    for position in range(1, rng.randint(1, 4)):
        image = {
            "Image Src": f"https://cdn.example.com/{handle}/{position}.jpg",
            "Image Position": str(position),
            "Image Alt Text": f"{style} {garment}, view {position}",
        }
        if position <= len(rows):
            rows[position - 1].update(image)
        else:
            rows.append({"Handle": handle, **image})
    return rows


def _unshipped(sku: str, price: str, taxable: str) -> Row:
    return {
        "Variant SKU": sku,
        "Variant Grams": "0",
        "Variant Inventory Tracker": "",
        "Variant Inventory Policy": "deny",
        "Variant Fulfillment Service": "manual",
        "Variant Price": price,
        "Variant Requires Shipping": "FALSE",
        "Variant Taxable": taxable,
    }


def _download(rng: random.Random, number: int, limit: int) -> list[Row]:
    name = rng.choice(DOWNLOADS)
    handle = f"{name}-{number}".lower().replace(" ", "-")
    formats = ("PDF", "EPUB")[: min(limit, rng.randint(1, 2))]
    rows = []
    for index, file_format in enumerate(formats):
        row = (
            _product_row(
                handle,
                name,
                rng,
                **{
                    "Type": "Digital download",
                    "Tags": "digital",
                    "Option1 Name": "Format",
                },
            )
            if index == 0
            else {"Handle": handle}
        )
        sku = f"DL{number:05d}-{file_format}"
        rows.append({**row, "Option1 Value": file_format, **_unshipped(sku, "12.00", "TRUE")})
    return rows


def _service(rng: random.Random, number: int, limit: int) -> list[Row]:
    name = rng.choice(SERVICES)
    handle = f"{name}-{number}".lower().replace(" ", "-")
    row = _product_row(
        handle,
        name,
        rng,
        **{"Type": "Service", "Option1 Name": "Title", "Option1 Value": "Default Title"},
    )
    return [{**row, **_unshipped(f"SV{number:05d}", f"{rng.randint(5, 60)}.00", "FALSE")}]


def _bundle(rng: random.Random, number: int, component_skus: list[str]) -> list[Row]:
    components = rng.sample(component_skus[:12], 3)
    row = _product_row(
        f"starter-kit-{number}",
        f"Starter Kit {number}",
        rng,
        **{"Type": "Bundle", "Tags": "bundle", "Option1 Name": "Title"},
    )
    row.update(
        {
            "Option1 Value": "Default Title",
            "Variant SKU": f"KIT{number:05d}",
            "Variant Inventory Tracker": "",  # stock derives a bundle from its components
            "Variant Inventory Policy": "deny",
            "Variant Price": "59.00",
            "Variant Requires Shipping": "TRUE",
            "Variant Taxable": "TRUE",
            BUNDLE: "; ".join(f"{sku}*{rng.randint(1, 2)}" for sku in components),
            "Status": "active",
            "Published": "TRUE",
        }
    )
    return [row]


def _inject(
    rng: random.Random, products: list[list[Row]], faults: Sequence[Fault]
) -> dict[str, Fault]:
    # Product 0 stays clean: its first SKU is the original that DUPLICATE_SKU copies. The
    # bundles stay out of the draw; NESTED_BUNDLE puts the first into the second.
    candidates = [
        index
        for index, rows in enumerate(products[1:-2], start=1)
        if len([row for row in rows if row["Variant SKU"]]) >= 2
    ]
    ordinary = [fault for fault in faults if fault is not Fault.NESTED_BUNDLE]
    if len(ordinary) > len(candidates) or faults.count(Fault.NESTED_BUNDLE) > 1:
        raise ValueError("more faults than products to put them in")
    faulty: dict[str, Fault] = {}
    for index, fault in zip(rng.sample(candidates, len(ordinary)), ordinary, strict=True):
        rows = products[index]
        victim = rng.choice([row for row in rows[1:] if row["Variant SKU"]])
        if fault is Fault.BAD_BARCODE:
            good = victim.get("Variant Barcode") or _ean13(rng)  # downloads have none
            victim["Variant Barcode"] = good[:-1] + str((int(good[-1]) + 1) % 10)
        elif fault is Fault.BAD_PRICE:
            victim["Variant Price"] = victim["Variant Price"].replace(".", ",")
        elif fault is Fault.DUPLICATE_SKU:
            victim["Variant SKU"] = products[0][0]["Variant SKU"]
        elif fault is Fault.MISSING_HANDLE:
            victim["Handle"] = ""
        faulty[rows[0]["Handle"]] = fault
    if Fault.NESTED_BUNDLE in faults:
        outer, inner = products[-1][0], products[-2][0]
        outer[BUNDLE] += f"; {inner['Variant SKU']}*1"
        faulty[outer["Handle"]] = Fault.NESTED_BUNDLE
    return faulty


def _to_csv(products: list[list[Row]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=(*SHOPIFY_COLUMNS, EXTRA_PRICES, BUNDLE))
    writer.writeheader()
    for rows in products:
        writer.writerows(rows)
    return out.getvalue()
