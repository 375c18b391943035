"""The books of orders that walk the less common paths, through the five running services.

Orders go in on checkout.orders.v1, stock comes in as warehouse receipts, the warehouse
autopilot picks, ships and delivers; what is checked is what accounting posted.
"""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import asyncpg
import httpx
import pytest

from stockflow.cli.checkout_sim import order_payload
from stockflow.contracts.events.checkout import CheckoutOrderCancelRequested, CheckoutOrderSubmitted
from stockflow.runtime.testing.factories import goods_received, variant
from stockflow.runtime.testing.plugin import send

pytestmark = pytest.mark.system

ADMIN = {"Authorization": "Bearer dev-admin-token"}


async def stocked(system, producer, sku: str, units: int, currency: str = "USD") -> None:
    """A tracked variant with `units` received at WH-EAST, once stock has them on hand."""
    await send(producer, variant(sku))
    await send(producer, goods_received(sku, "WH-EAST", units, unit_cost="4.00", currency=currency))
    async with httpx.AsyncClient(base_url=system.url("stock"), timeout=15) as stock_api:
        for _ in range(150):
            totals = (await stock_api.get(f"/levels/{sku}")).json().get("totals") or {}
            if int(totals.get("on_hand", 0)) == units:
                return
            await asyncio.sleep(0.2)
    pytest.fail(f"stock never recorded the receipt of {sku}")


async def order_ends(system, order_id: str, state: str) -> None:
    async with httpx.AsyncClient(base_url=system.url("order"), headers=ADMIN, timeout=15) as api:
        for _ in range(240):
            response = await api.get(f"/orders/{order_id}")
            if response.status_code == 200 and response.json().get("state") == state:
                return
            await asyncio.sleep(0.25)
    pytest.fail(f"order {order_id} never reached {state}: {response.text}")


async def journal_lines(system, order_id: str, until) -> list[dict]:
    """The order's journal lines, once `until(lines)` holds (or after 20 s)."""
    lines: list[dict] = []
    async with httpx.AsyncClient(
        base_url=system.url("accounting"), headers=ADMIN, timeout=15
    ) as api:
        for _ in range(80):
            entries = (await api.get("/journal", params={"order_id": order_id})).json()
            lines = [line for entry in entries["entries"] for line in entry["lines"]]
            if until(lines):
                break
            await asyncio.sleep(0.25)
    return lines


def net_by_sku(lines: list[dict], account: str) -> dict[str | None, Decimal]:
    """What `account` gained per sku, on its normal side (credit for revenue)."""
    sign = -1 if account == "revenue" else 1
    sums: dict[str | None, Decimal] = {}
    for line in lines:
        if line["account"] == account:
            net = sign * (Decimal(line["debit"]) - Decimal(line["credit"]))
            sums[line.get("sku")] = sums.get(line.get("sku"), Decimal(0)) + net
    return sums


async def test_a_digital_line_posts_its_revenue_when_the_order_delivers_it(system, producer):
    prefix = f"BK{uuid.uuid4().hex[:6].upper()}"
    book, ebook = f"{prefix}-BOOK", f"{prefix}-EBOOK"
    await stocked(system, producer, book, 5)
    await send(producer, variant(ebook, tracked=False))
    order_id = f"o-{prefix.lower()}"
    payload = order_payload(
        order_id,
        [(book, 1), (ebook, 2)],
        prices={book: Decimal("20.00"), ebook: Decimal("7.50")},
    )
    await send(producer, CheckoutOrderSubmitted.model_validate(payload))
    await order_ends(system, order_id, "delivered")

    lines = await journal_lines(
        system, order_id, lambda lines: {book, ebook} <= net_by_sku(lines, "revenue").keys()
    )

    assert net_by_sku(lines, "revenue") == {book: Decimal("20.00"), ebook: Decimal("15.00")}


async def test_the_label_rate_is_a_shipping_expense_in_the_order_margin(system, producer, infra):
    """All in GBP, the currency the built-in carrier bills in, so the order has one margin row
    (the books keep currencies apart; they do not convert)."""
    prefix = f"SH{uuid.uuid4().hex[:6].upper()}"
    parcel = f"{prefix}-PARCEL"
    await stocked(system, producer, parcel, 5, currency="GBP")
    order_id = f"o-{prefix.lower()}"
    payload = order_payload(
        order_id, [(parcel, 2)], prices={parcel: Decimal("30.00")}, currency="GBP"
    )
    await send(producer, CheckoutOrderSubmitted.model_validate(payload))
    await order_ends(system, order_id, "delivered")
    admin = await asyncpg.connect(infra.admin_database_url)
    try:
        rate = await admin.fetchval(
            "SELECT sum(l.rate_amount) FROM fulfillment.labels l "
            "JOIN fulfillment.shipments s USING (shipment_id) WHERE s.order_id = $1",
            order_id,
        )
    finally:
        await admin.close()
    assert rate > 0

    lines = await journal_lines(
        system, order_id, lambda lines: any(ln["account"] == "shipping_expense" for ln in lines)
    )
    async with httpx.AsyncClient(
        base_url=system.url("accounting"), headers=ADMIN, timeout=15
    ) as api:
        report = (
            await api.get("/reports/profitability", params={"by": "order", "order_id": order_id})
        ).json()

    assert net_by_sku(lines, "shipping_expense") == {None: rate}
    assert net_by_sku(lines, "carrier_payable") == {None: -rate}
    [row] = report["rows"]
    assert row["currency"] == "GBP"
    assert Decimal(row["shipping"]) == rate
    assert Decimal(row["profit"]) == Decimal(row["gross_margin"]) - rate


async def bundle_order(system, producer, prefix: str) -> tuple[str, str, str, str]:
    """A delivered order of 2 bundles, each 1 x PEN (cost 4.00) and 3 x INK (cost 1.00)."""
    pen, ink, kit = f"{prefix}-PEN", f"{prefix}-INK", f"{prefix}-KIT"
    await send(producer, variant(pen))
    await send(producer, variant(ink))
    await send(producer, variant(kit, components=[(pen, 1), (ink, 3)]))
    await send(producer, goods_received(pen, "WH-EAST", 5, unit_cost="4.00"))
    await send(producer, goods_received(ink, "WH-EAST", 20, unit_cost="1.00"))
    async with httpx.AsyncClient(base_url=system.url("stock"), timeout=15) as stock_api:
        for _ in range(150):
            totals = (await stock_api.get(f"/levels/{ink}")).json().get("totals") or {}
            if int(totals.get("on_hand", 0)) == 20:
                break
            await asyncio.sleep(0.2)
    order_id = f"o-{prefix.lower()}"
    payload = order_payload(order_id, [(kit, 2)], prices={kit: Decimal("25.00")})
    await send(producer, CheckoutOrderSubmitted.model_validate(payload))
    await order_ends(system, order_id, "delivered")
    return order_id, pen, ink, kit


async def test_a_bundles_pick_list_lists_its_components_times_the_bundle_units(
    system, producer, infra
):
    order_id, pen, ink, kit = await bundle_order(system, producer, f"PK{uuid.uuid4().hex[:6]}")
    admin = await asyncpg.connect(infra.admin_database_url)
    try:
        [pick_list_id] = [
            r["pick_list_id"]
            for r in await admin.fetch(
                "SELECT pick_list_id FROM fulfillment.shipments WHERE order_id = $1", order_id
            )
        ]
    finally:
        await admin.close()
    async with httpx.AsyncClient(
        base_url=system.url("fulfillment"), headers=ADMIN, timeout=15
    ) as api:
        pick_list = (await api.get(f"/pick-lists/{pick_list_id}")).json()
        [shipment] = (await api.get(f"/orders/{order_id}/shipments")).json()["shipments"]

    assert {line["sku"]: line["quantity"] for line in pick_list["lines"]} == {pen: 2, ink: 6}
    assert [(line["sku"], line["quantity"]) for line in shipment["lines"]] == [(kit, 2)]


async def test_a_bundles_revenue_and_cost_share_one_line_of_the_margin_report(system, producer):
    order_id, pen, ink, kit = await bundle_order(system, producer, f"MG{uuid.uuid4().hex[:6]}")
    await journal_lines(
        system,
        order_id,
        lambda lines: (
            net_by_sku(lines, "cost_of_goods_sold").get(kit) == Decimal("14.00")
            and kit in net_by_sku(lines, "revenue")
        ),
    )
    async with httpx.AsyncClient(
        base_url=system.url("accounting"), headers=ADMIN, timeout=15
    ) as api:
        rows = {
            row["sku"]: row
            for sku in (kit, pen, ink)
            for row in (
                await api.get("/reports/profitability", params={"by": "sku", "sku": sku})
            ).json()["rows"]
        }

    # 2 kits at 25.00; each kit is 1 pen at 4.00 and 3 ink at 1.00.
    assert (rows[kit]["revenue"], rows[kit]["cost_of_goods_sold"]) == ("50.00", "14.00")
    assert rows[kit]["gross_margin"] == "36.00"


async def test_a_digital_lines_revenue_is_reversed_when_its_order_is_cancelled_before_shipping(
    system, producer
):
    """The e-book's revenue posts on confirmation (the customer has it); the backordered book
    keeps the order open, and the customer cancels: the books end with no revenue for it."""
    prefix = f"DC{uuid.uuid4().hex[:6].upper()}"
    book, ebook = f"{prefix}-BOOK", f"{prefix}-EBOOK"
    await send(producer, variant(book, backorderable=True))
    await send(producer, variant(ebook, tracked=False))
    order_id = f"o-{prefix.lower()}"
    payload = order_payload(
        order_id, [(book, 1), (ebook, 2)], prices={book: Decimal("20.00"), ebook: Decimal("7.50")}
    )
    await asyncio.sleep(1)  # stock learns both variants from the catalog topic first
    await send(producer, CheckoutOrderSubmitted.model_validate(payload))
    await order_ends(system, order_id, "confirmed")
    posted = await journal_lines(
        system, order_id, lambda lines: ebook in net_by_sku(lines, "revenue")
    )
    assert net_by_sku(posted, "revenue") == {ebook: Decimal("15.00")}

    await send(producer, CheckoutOrderCancelRequested(order_id=order_id, reason="changed my mind"))
    await order_ends(system, order_id, "cancelled")
    lines = await journal_lines(
        system, order_id, lambda lines: net_by_sku(lines, "revenue").get(ebook) == 0
    )

    assert net_by_sku(lines, "revenue") == {ebook: Decimal("0.00")}
    assert net_by_sku(lines, "clearing") == {None: Decimal("0.00")}


async def order_when(system, order_id: str, ready, what: str) -> dict:
    """The order as the API shows it, once `ready(order)` holds."""
    async with httpx.AsyncClient(base_url=system.url("order"), headers=ADMIN, timeout=15) as api:
        for _ in range(240):
            response = await api.get(f"/orders/{order_id}")
            if response.status_code == 200 and ready(response.json()):
                return response.json()
            await asyncio.sleep(0.25)
    pytest.fail(f"order {order_id} never {what}: {response.text}")


def backordered(order: dict, sku: str) -> int:
    return next(line["backordered"] for line in order["lines"] if line["sku"] == sku)


async def test_a_backordered_bundle_ships_in_whole_kits_as_its_components_arrive(system, producer):
    """3 kits (a lamp and 2 bulbs) and an e-book; stock for 1 kit. Lamps alone allocate no
    kit; 3 bulbs make 1 whole kit, the 4th the last. The books: the kit's revenue and all its
    components' cost on the kit's line, the e-book's revenue."""
    prefix = f"BB{uuid.uuid4().hex[:6].upper()}"
    lamp, bulb, kit, ebook = (f"{prefix}-{n}" for n in ("LAMP", "BULB", "KIT", "EBOOK"))
    await send(producer, variant(kit, components=[(lamp, 1), (bulb, 2)], backorderable=True))
    await send(producer, variant(ebook, tracked=False))
    await stocked(system, producer, lamp, 1)
    await stocked(system, producer, bulb, 2)
    async with httpx.AsyncClient(base_url=system.url("stock"), timeout=15) as stock_api:
        for _ in range(100):
            known = (await stock_api.post("/availability", json={"skus": [kit, ebook]})).json()
            if {kit, ebook} <= set(known.get("known", [])):
                break
            await asyncio.sleep(0.2)
    order_id = f"o-{prefix.lower()}"
    payload = order_payload(
        order_id, [(kit, 3), (ebook, 1)], prices={kit: Decimal("30.00"), ebook: Decimal("5.00")}
    )
    await send(producer, CheckoutOrderSubmitted.model_validate(payload))
    await order_when(system, order_id, lambda o: backordered(o, kit) == 2, "backordered 2 kits")

    await send(producer, goods_received(lamp, "WH-EAST", 3, unit_cost="4.00"))
    async with httpx.AsyncClient(base_url=system.url("stock"), timeout=15) as stock_api:
        for _ in range(100):
            totals = (await stock_api.get(f"/levels/{lamp}")).json().get("totals") or {}
            if int(totals.get("backordered", -1)) == 0:  # the lamps went to the waiting kits
                break
            await asyncio.sleep(0.2)
    await asyncio.sleep(1)
    waiting = await order_when(system, order_id, lambda o: True, "answered")
    assert backordered(waiting, kit) == 2  # no kit is whole without its bulbs

    await send(producer, goods_received(bulb, "WH-EAST", 3, unit_cost="4.00"))
    await order_when(system, order_id, lambda o: backordered(o, kit) == 1, "got one kit")
    await send(producer, goods_received(bulb, "WH-EAST", 1, unit_cost="4.00"))
    await order_ends(system, order_id, "delivered")

    lines = await journal_lines(
        system,
        order_id,
        lambda lines: (
            net_by_sku(lines, "cost_of_goods_sold").get(kit) == Decimal("36.00")
            and net_by_sku(lines, "revenue").get(kit) == Decimal("90.00")
        ),
    )
    assert net_by_sku(lines, "revenue") == {kit: Decimal("90.00"), ebook: Decimal("5.00")}
    assert net_by_sku(lines, "cost_of_goods_sold") == {kit: Decimal("36.00")}
    assert net_by_sku(lines, "inventory") == {lamp: Decimal("-12.00"), bulb: Decimal("-24.00")}
