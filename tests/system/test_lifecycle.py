"""Paths a warehouse walks every day, through the five running services, the warehouse played by
hand through fulfillment's API (the autopilot off): every order ends, stock and books exact.

Issue 18's short pick: order 3 units, the picker finds 2, "ship what was picked", pack, ship,
deliver. The order used to stay `partially_shipped` with 1 unit reserved and the checker quiet.
"""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import httpx
import pytest

from stockflow.cli.check import check_system
from stockflow.cli.checkout_sim import order_payload
from stockflow.contracts.events.checkout import CheckoutOrderSubmitted
from stockflow.runtime.testing.factories import goods_received, variant
from stockflow.runtime.testing.plugin import SYSTEM_ENV, send
from stockflow.runtime.testing.system import System

pytestmark = pytest.mark.system

ADMIN = {"Authorization": "Bearer dev-admin-token"}
WAREHOUSE = "WH-EAST"


@pytest.fixture(scope="module")
def system(infra):
    """The five services; the warehouse does nothing unless the test asks it to."""
    running = System(infra, env=SYSTEM_ENV | {"STOCKFLOW_FULFILLMENT_AUTO_SHIP": "false"})
    running.start_all()
    yield running
    running.stop_all()


async def eventually(probe, what: str, attempts: int = 240):
    """`probe()` once it returns something truthy (every 0.25 s, 60 s at most)."""
    for _ in range(attempts):
        if result := await probe():
            return result
        await asyncio.sleep(0.25)
    pytest.fail(f"never: {what}")


async def level(system, sku: str) -> dict:
    async with httpx.AsyncClient(base_url=system.url("stock"), timeout=15) as api:
        return (await api.get(f"/levels/{sku}")).json().get("totals") or {}


async def stocked(system, producer, sku: str, units: int) -> None:
    await send(producer, variant(sku))
    await send(producer, goods_received(sku, WAREHOUSE, units, unit_cost="4.00", currency="USD"))

    async def received():
        return int((await level(system, sku)).get("on_hand", 0)) == units

    await eventually(received, f"stock received {units} of {sku}")


async def order_in(system, order_id: str, state: str) -> dict:
    async with httpx.AsyncClient(base_url=system.url("order"), headers=ADMIN, timeout=15) as api:

        async def reached():
            response = await api.get(f"/orders/{order_id}")
            body = response.json() if response.status_code == 200 else {}
            return body if body.get("state") == state else None

        return await eventually(reached, f"order {order_id} {state}")


class Warehouse:
    """Fulfillment's API as a warehouse worker uses it."""

    def __init__(self, api: httpx.AsyncClient) -> None:
        self.api = api

    async def post(self, path: str, body: dict | None = None) -> dict:
        response = await self.api.post(path, json=body or {})
        assert response.status_code in (200, 201), f"{path}: {response.text}"
        return response.json()

    async def shipments(self, order_id: str) -> list[dict]:
        async def planned():
            response = await self.api.get(f"/orders/{order_id}/shipments")
            return response.json().get("shipments") if response.status_code == 200 else None

        return await eventually(planned, f"a shipment of {order_id}")

    async def pick(
        self, shipment_id: str, found: dict[str, int], location: str = WAREHOUSE
    ) -> dict:
        pick_list = await self.post(
            "/pick-lists", {"location": location, "shipment_ids": [shipment_id]}
        )
        return await self.post(f"/pick-lists/{pick_list['pick_list_id']}/confirm", {"found": found})

    async def ship_and_deliver(self, shipment_id: str) -> None:
        parcel = {
            "weight_grams": 900,
            "dimensions_mm": {"length": 300, "width": 200, "height": 100},
        }
        await self.post(f"/shipments/{shipment_id}/pack", {"packages": [parcel]})
        shipped = await self.post(f"/shipments/{shipment_id}/ship")
        await self.post(
            "/tracking",
            {"tracking_number": shipped["label"]["tracking_number"], "status": "delivered"},
        )


async def revenue_of(system, order_id: str, expected: Decimal) -> Decimal:
    async with httpx.AsyncClient(
        base_url=system.url("accounting"), headers=ADMIN, timeout=15
    ) as api:

        async def posted():
            entries = (await api.get("/journal", params={"order_id": order_id})).json()
            lines = [line for entry in entries["entries"] for line in entry["lines"]]
            total = sum(
                (
                    Decimal(line["credit"]) - Decimal(line["debit"])
                    for line in lines
                    if line["account"] == "revenue"
                ),
                Decimal(0),
            )
            return total if total == expected else None

        await eventually(posted, f"revenue {expected} posted for {order_id}", attempts=80)
    return expected


async def test_a_short_pick_shipped_as_picked_ends_delivered_with_the_missing_unit_off_the_books(
    system, producer, infra
):
    sku = f"SP{uuid.uuid4().hex[:6].upper()}"
    order_id = f"o-short-{sku.lower()}"
    await stocked(system, producer, sku, 10)
    payload = order_payload(order_id, [(sku, 3)], prices={sku: Decimal("25.00")})
    await send(producer, CheckoutOrderSubmitted.model_validate(payload))
    await order_in(system, order_id, "confirmed")

    async with httpx.AsyncClient(
        base_url=system.url("fulfillment"), headers=ADMIN, timeout=15
    ) as api:
        warehouse = Warehouse(api)
        [shipment] = await warehouse.shipments(order_id)
        picked = await warehouse.pick(shipment["shipment_id"], {sku: 2})
        assert picked["discrepancies"], picked
        await warehouse.post(f"/shipments/{shipment['shipment_id']}/ship-picked")
        await warehouse.ship_and_deliver(shipment["shipment_id"])

    order = await order_in(system, order_id, "delivered")
    [line] = order["lines"]
    assert (line["shipped"], line["cancelled"]) == (2, 1)

    async def settled():
        totals = await level(system, sku)
        return totals if int(totals["reserved"]) == 0 and int(totals["on_hand"]) == 7 else None

    totals = await eventually(settled, "stock settled: 2 shipped, 1 not found")
    # The unit the picker did not find is not offered again: 10 - 2 shipped - 1 not found.
    assert int(totals["available"]) == 7
    assert await revenue_of(system, order_id, Decimal("50.00")) == Decimal("50.00")

    violations = await check_system(infra.admin_database_url, settle_seconds=0)
    assert [v for v in violations if order_id in v.subject or sku in v.subject] == []


async def test_a_shipment_the_warehouse_cancels_cancels_the_order_and_frees_its_stock(
    system, producer, infra
):
    sku = f"WC{uuid.uuid4().hex[:6].upper()}"
    order_id = f"o-wcancel-{sku.lower()}"
    await stocked(system, producer, sku, 5)
    payload = order_payload(order_id, [(sku, 2)])
    await send(producer, CheckoutOrderSubmitted.model_validate(payload))
    await order_in(system, order_id, "confirmed")

    async with httpx.AsyncClient(
        base_url=system.url("fulfillment"), headers=ADMIN, timeout=15
    ) as api:
        warehouse = Warehouse(api)
        [shipment] = await warehouse.shipments(order_id)
        await warehouse.post(
            f"/shipments/{shipment['shipment_id']}/cancel", {"reason": "pallet damaged"}
        )

    order = await order_in(system, order_id, "cancelled")
    assert order["lines"][0]["cancelled"] == 2

    async def freed():
        totals = await level(system, sku)
        return totals if int(totals["reserved"]) == 0 else None

    totals = await eventually(freed, "the cancelled units released")
    assert (int(totals["on_hand"]), int(totals["available"])) == (5, 5)
    violations = await check_system(infra.admin_database_url, settle_seconds=0)
    assert [v for v in violations if order_id in v.subject or sku in v.subject] == []


async def test_a_customer_cancels_a_unit_before_picking_and_the_rest_ships_and_ends_delivered(
    system, producer, infra
):
    sku = f"LC{uuid.uuid4().hex[:6].upper()}"
    order_id = f"o-lcancel-{sku.lower()}"
    await stocked(system, producer, sku, 10)
    payload = order_payload(order_id, [(sku, 3)], prices={sku: Decimal("25.00")})
    await send(producer, CheckoutOrderSubmitted.model_validate(payload))
    await order_in(system, order_id, "confirmed")

    async with (
        httpx.AsyncClient(base_url=system.url("fulfillment"), headers=ADMIN, timeout=15) as api,
        httpx.AsyncClient(base_url=system.url("order"), headers=ADMIN, timeout=15) as orders,
    ):
        warehouse = Warehouse(api)
        [shipment] = await warehouse.shipments(order_id)

        async def accepted():
            response = await orders.post(
                f"/orders/{order_id}/line-cancellations",
                json={"request_id": "REQ-1", "lines": [{"line_id": "L1", "quantity": 1}]},
                headers={"Idempotency-Key": f"cancel-{order_id}"},
            )
            return response.status_code == 202  # 409 until the order heard of the shipment

        await eventually(accepted, "the lines cancel accepted")

        async def dropped():
            current = (await api.get(f"/shipments/{shipment['shipment_id']}")).json()
            return current["lines"][0]["quantity"] == 2

        await eventually(dropped, "fulfillment dropped the cancelled unit")
        await warehouse.pick(shipment["shipment_id"], {sku: 2})
        await warehouse.ship_and_deliver(shipment["shipment_id"])

    order = await order_in(system, order_id, "delivered")
    assert (order["lines"][0]["shipped"], order["lines"][0]["cancelled"]) == (2, 1)

    async def settled():
        totals = await level(system, sku)
        return totals if int(totals["reserved"]) == 0 and int(totals["on_hand"]) == 8 else None

    totals = await eventually(settled, "stock settled: 2 shipped, 1 back on sale")
    assert int(totals["available"]) == 8
    assert await revenue_of(system, order_id, Decimal("50.00")) == Decimal("50.00")
    violations = await check_system(infra.admin_database_url, settle_seconds=0)
    assert [v for v in violations if order_id in v.subject or sku in v.subject] == []


async def test_a_short_pick_under_reallocate_ships_the_missing_unit_from_another_warehouse(
    system, producer, infra
):
    sku = f"RA{uuid.uuid4().hex[:6].upper()}"
    order_id = f"o-realloc-{sku.lower()}"
    await send(producer, variant(sku))
    await send(producer, goods_received(sku, WAREHOUSE, 3, unit_cost="4.00", currency="USD"))
    await send(producer, goods_received(sku, "WH-WEST", 5, unit_cost="4.00", currency="USD"))

    async def received():
        return int((await level(system, sku)).get("on_hand", 0)) == 8

    await eventually(received, f"stock received 8 of {sku}")
    payload = order_payload(order_id, [(sku, 3)], prices={sku: Decimal("25.00")})
    payload["fulfillment_exception_policy"] = "reallocate"
    await send(producer, CheckoutOrderSubmitted.model_validate(payload))
    await order_in(system, order_id, "confirmed")

    async with httpx.AsyncClient(
        base_url=system.url("fulfillment"), headers=ADMIN, timeout=15
    ) as api:
        warehouse = Warehouse(api)
        [first] = await warehouse.shipments(order_id)
        assert first["location"] == WAREHOUSE
        await warehouse.pick(first["shipment_id"], {sku: 2})
        await warehouse.post(f"/shipments/{first['shipment_id']}/ship-picked")
        await warehouse.ship_and_deliver(first["shipment_id"])

        async def second_planned():
            shipments = (await api.get(f"/orders/{order_id}/shipments")).json()["shipments"]
            return [s for s in shipments if s["shipment_id"] != first["shipment_id"]]

        [second] = await eventually(second_planned, "a second shipment for the missing unit")
        assert second["location"] == "WH-WEST"
        assert [(line["sku"], line["quantity"]) for line in second["lines"]] == [(sku, 1)]
        await warehouse.pick(second["shipment_id"], {sku: 1}, location="WH-WEST")
        await warehouse.ship_and_deliver(second["shipment_id"])

    order = await order_in(system, order_id, "delivered")
    assert (order["lines"][0]["shipped"], order["lines"][0]["cancelled"]) == (3, 0)

    async def settled():
        totals = await level(system, sku)
        return totals if int(totals["reserved"]) == 0 and int(totals["on_hand"]) == 4 else None

    # 8 - 3 shipped - 1 not found at the first warehouse.
    totals = await eventually(settled, "stock settled across both warehouses")
    assert (int(totals["available"]), int(totals["backordered"])) == (4, 0)
    assert await revenue_of(system, order_id, Decimal("75.00")) == Decimal("75.00")
    violations = await check_system(infra.admin_database_url, settle_seconds=0)
    assert [v for v in violations if order_id in v.subject or sku in v.subject] == []
