"""The 4x6-inch label PDF: page size, text, barcode, one page per package."""

from __future__ import annotations

from io import BytesIO

import pytest
from pypdf import PdfReader

from stockflow.fulfillment.domain import (
    Address,
    Dimensions,
    LabelContent,
    LabelRequest,
    Package,
    ServiceLevel,
    StockflowPost,
    is_valid_s10,
)
from stockflow.fulfillment.labels import render_label

WAREHOUSE = Address("Stockflow Warehouse", "Unit 4, Dock Road", "Leeds", "LS1 4AB", "GB")
CUSTOMER = Address(
    "Ada Lovelace", "12 St James's Square", "London", "SW1Y 4JH", "GB", line2="Flat 3"
)
TRACKING = "EE473124829GB"


def content(*packages: Package, ship_to: Address = CUSTOMER) -> LabelContent:
    request = LabelRequest(
        "ORD-7",
        "ORD-7-S1",
        WAREHOUSE,
        ship_to,
        packages or (Package(1_250, Dimensions(300, 200, 100)),),
        ServiceLevel.EXPRESS,
    )
    return LabelContent(request, "stockflow-post", TRACKING)


def read(pdf: bytes) -> PdfReader:
    assert pdf.startswith(b"%PDF-")
    return PdfReader(BytesIO(pdf))


def test_label_is_a_4_by_6_inch_page() -> None:
    reader = read(render_label(content()))

    assert len(reader.pages) == 1
    box = reader.pages[0].mediabox
    assert (float(box.width), float(box.height)) == (288.0, 432.0)


def test_label_shows_addresses_tracking_service_weight_and_references() -> None:
    text = read(render_label(content())).pages[0].extract_text()

    for expected in [
        "stockflow-post",
        "EXPRESS",
        TRACKING,
        "Ada Lovelace",
        "12 St James's Square",
        "Flat 3",
        "SW1Y 4JH London",
        "Stockflow Warehouse",
        "LS1 4AB Leeds",
        "Weight: 1.25 kg",
        "Order: ORD-7",
        "Shipment: ORD-7-S1",
    ]:
        assert expected in text


def test_label_draws_the_barcode_bars() -> None:
    page = read(render_label(content())).pages[0]
    drawing = page.get_contents()
    assert drawing is not None

    # Code 128 bars are filled rectangles ("re" ... "f"); 13 characters need dozens of them.
    assert drawing.get_data().count(b" re") > 30


def test_one_page_per_package() -> None:
    reader = read(
        render_label(
            content(
                Package(1_000, Dimensions(100, 100, 100)), Package(2_500, Dimensions(400, 300, 200))
            )
        )
    )

    pages = [page.extract_text() for page in reader.pages]
    assert len(pages) == 2
    assert "Package 1 of 2" in pages[0] and "Weight: 1.00 kg" in pages[0]
    assert "Package 2 of 2" in pages[1] and "Weight: 2.50 kg" in pages[1]
    assert all(TRACKING in page for page in pages)


def test_long_address_lines_wrap_instead_of_running_off_the_label() -> None:
    street = "The Old Rectory, Long Lane Industrial Estate, Upper Little Snoring"
    far_away = Address("Ada Lovelace", street, "Fakenham", "NR21 0AA", "GB")

    lines = read(render_label(content(ship_to=far_away))).pages[0].extract_text().splitlines()

    assert street not in lines
    assert " ".join(lines).count("Upper Little Snoring") == 1


def test_same_content_renders_the_same_bytes() -> None:
    assert render_label(content()) == render_label(content())


def test_stockflow_post_labels_render_through_this_module() -> None:
    post = StockflowPost(next_serial=lambda: 47312482, render_label=render_label)

    label = post.create_label(content().request)

    assert is_valid_s10(label.tracking_number)
    assert label.tracking_number in read(label.document).pages[0].extract_text()


@pytest.mark.parametrize("level", list(ServiceLevel))
def test_service_level_is_printed(level: ServiceLevel) -> None:
    request = LabelRequest(
        "ORD-7", "ORD-7-S1", WAREHOUSE, CUSTOMER, content().request.packages, level
    )

    text = (
        read(render_label(LabelContent(request, "stockflow-post", TRACKING)))
        .pages[0]
        .extract_text()
    )

    assert level.upper() in text
