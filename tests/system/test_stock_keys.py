"""What a new user tried, through the five running services: a WMS retry counts a receipt once,
and an archived (discontinued), draft or never-announced product is not sold — the order ends
rejected with the reason, and `stockflow check` stays clean."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from stockflow.cli.check import check_system
from stockflow.cli.checkout_sim import order_payload
from stockflow.contracts.events.checkout import CheckoutOrderSubmitted
from stockflow.runtime.testing.factories import goods_received, variant
from stockflow.runtime.testing.plugin import send

pytestmark = pytest.mark.system

ADMIN = {"Authorization": "Bearer dev-admin-token"}


async def on_hand(system, sku: str, units: int) -> None:
    async with httpx.AsyncClient(base_url=system.url("stock"), timeout=15) as stock_api:
        for _ in range(150):
            totals = (await stock_api.get(f"/levels/{sku}")).json().get("totals") or {}
            if int(totals.get("on_hand", 0)) == units:
                return
            await asyncio.sleep(0.2)
    pytest.fail(f"stock never had {units} of {sku} on hand: {totals}")


async def order_ends(system, order_id: str, state: str) -> dict:
    async with httpx.AsyncClient(base_url=system.url("order"), headers=ADMIN, timeout=15) as api:
        for _ in range(240):
            response = await api.get(f"/orders/{order_id}")
            if response.status_code == 200 and response.json().get("state") == state:
                return dict(response.json())
            await asyncio.sleep(0.25)
    pytest.fail(f"order {order_id} never reached {state}: {response.text}")


async def test_a_wms_retry_counts_once_and_unsellable_products_are_refused(system, producer, infra):
    prefix = f"SK{uuid.uuid4().hex[:6].upper()}"
    retried, archived, draft, stray = (f"{prefix}-{n}" for n in ("RETRY", "OLD", "NEW", "STRAY"))
    await send(producer, variant(retried))
    await send(producer, variant(archived, status="discontinued"))  # the import's `archived`
    await send(producer, variant(draft, status="draft"))
    receipt = goods_received(retried, "WH-EAST", 10, receipt_id=f"po-{prefix}")
    await send(producer, receipt)
    await send(producer, receipt)  # the WMS retries: same receipt_id, a new event id
    for sku in (archived, draft, stray):
        await send(producer, goods_received(sku, "WH-EAST", 5))
    await send(producer, goods_received(retried, "WH-EAST", 1))
    await on_hand(system, retried, 11)
    await on_hand(system, stray, 5)

    for sku, reason in (
        (archived, "not_sellable"),
        (draft, "not_sellable"),
        (stray, "unknown_sku"),
    ):
        order_id = f"o-{sku.lower()}"
        await send(
            producer, CheckoutOrderSubmitted.model_validate(order_payload(order_id, [(sku, 1)]))
        )
        rejected = await order_ends(system, order_id, "rejected")
        assert rejected["reason"] == reason, rejected

    violations = await check_system(infra.admin_database_url, settle_seconds=0)
    assert [v for v in violations if prefix in v.subject or prefix.lower() in v.subject] == []
