"""The printable 4x6-inch shipping label of the built-in carrier, as PDF.

One page per package, laid out top to bottom: carrier and service level, ship-from, ship-to,
a Code 128 barcode of the tracking number with the number printed under it, then weight,
package count and the order and shipment references. Output is byte-for-byte reproducible
(reportlab's invariant mode), so the same label content always yields the same file.
"""

from __future__ import annotations

from io import BytesIO

from reportlab.graphics.barcode.code128 import Code128
from reportlab.lib.units import inch
from reportlab.lib.utils import simpleSplit
from reportlab.pdfgen.canvas import Canvas

from stockflow.fulfillment.domain import Address, LabelContent, Package

PAGE_WIDTH = 4 * inch
PAGE_HEIGHT = 6 * inch
MARGIN = 12.0
CONTENT_WIDTH = PAGE_WIDTH - 2 * MARGIN
BARCODE_HEIGHT = 80.0
MAX_BAR_WIDTH = 2.0
"""Widest narrow bar (pt); short numbers are not stretched beyond what scanners like."""
QUIET_ZONE_BARS = 10
"""Blank space each side of the barcode, in narrow-bar widths (Code 128 needs at least 10)."""

REGULAR = "Helvetica"
BOLD = "Helvetica-Bold"


def render_label(content: LabelContent) -> bytes:
    """The label as a PDF of 288x432 pt pages, one per package (`LabelRenderer` contract)."""
    buffer = BytesIO()
    canvas = Canvas(buffer, pagesize=(PAGE_WIDTH, PAGE_HEIGHT), invariant=True)
    canvas.setTitle(f"{content.carrier} label {content.tracking_number}")
    canvas.setCreator("stockflow fulfillment")
    packages = content.request.packages
    for number, package in enumerate(packages, start=1):
        _draw_page(canvas, content, package, number, len(packages))
        canvas.showPage()
    canvas.save()
    return buffer.getvalue()


def _draw_page(
    canvas: Canvas, content: LabelContent, package: Package, number: int, count: int
) -> None:
    request = content.request
    top = PAGE_HEIGHT - MARGIN
    canvas.setFont(BOLD, 16)
    canvas.drawString(MARGIN, top - 16, content.carrier)
    _draw_service_badge(canvas, request.service_level.upper(), top)
    y = _rule(canvas, top - 26)

    y = _draw_address(canvas, "FROM", request.ship_from, y, size=8, name_size=8)
    y = _rule(canvas, y - 4)
    y = _draw_address(canvas, "SHIP TO", request.ship_to, y, size=12, name_size=13)
    y = _rule(canvas, y - 6)

    y = _draw_barcode(canvas, content.tracking_number, y - 8)
    y = _rule(canvas, y - 6)

    canvas.setFont(REGULAR, 9)
    weight_kg = package.weight_grams / 1000
    canvas.drawString(MARGIN, y - 14, f"Weight: {weight_kg:.2f} kg")
    canvas.drawRightString(PAGE_WIDTH - MARGIN, y - 14, f"Package {number} of {count}")
    canvas.drawString(MARGIN, y - 28, f"Size: {package.dimensions}")
    canvas.drawString(MARGIN, y - 42, f"Order: {request.order_id}")
    canvas.drawString(MARGIN, y - 56, f"Shipment: {request.shipment_id}")


def _draw_service_badge(canvas: Canvas, text: str, top: float) -> None:
    """The service level, white on black, so express parcels stand out on the belt."""
    canvas.setFont(BOLD, 12)
    width = canvas.stringWidth(text, BOLD, 12) + 12
    canvas.rect(PAGE_WIDTH - MARGIN - width, top - 20, width, 20, stroke=0, fill=1)
    canvas.setFillColorRGB(1, 1, 1)
    canvas.drawRightString(PAGE_WIDTH - MARGIN - 6, top - 15, text)
    canvas.setFillColorRGB(0, 0, 0)


def _draw_address(
    canvas: Canvas, title: str, address: Address, top: float, *, size: float, name_size: float
) -> float:
    """Draw a titled address block below `top`, wrapping long lines; returns its bottom."""
    canvas.setFont(BOLD, 7)
    y = top - 10
    canvas.drawString(MARGIN, y, title)
    name, *rest = address.lines()
    for font, font_size, text in [(BOLD, name_size, name)] + [(REGULAR, size, t) for t in rest]:
        canvas.setFont(font, font_size)
        for piece in simpleSplit(text, font, font_size, CONTENT_WIDTH):
            y -= font_size * 1.2
            canvas.drawString(MARGIN, y, piece)
    return y


def _draw_barcode(canvas: Canvas, tracking_number: str, top: float) -> float:
    """Code 128 of the tracking number, as wide as fits, with the number under it."""
    probe = Code128(tracking_number, barWidth=1.0, quiet=False)
    modules = probe.width + 2 * QUIET_ZONE_BARS
    bar_width = min(MAX_BAR_WIDTH, CONTENT_WIDTH / modules)
    barcode = Code128(
        tracking_number,
        barWidth=bar_width,
        barHeight=BARCODE_HEIGHT,
        quiet=True,
        lquiet=QUIET_ZONE_BARS * bar_width,
        rquiet=QUIET_ZONE_BARS * bar_width,
    )
    bottom = top - BARCODE_HEIGHT
    barcode.drawOn(canvas, (PAGE_WIDTH - barcode.width) / 2, bottom)
    canvas.setFont(BOLD, 12)
    canvas.drawCentredString(PAGE_WIDTH / 2, bottom - 14, tracking_number)
    return bottom - 18


def _rule(canvas: Canvas, y: float) -> float:
    canvas.line(MARGIN, y, PAGE_WIDTH - MARGIN, y)
    return y
