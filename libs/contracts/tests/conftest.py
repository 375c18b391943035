"""A minimal valid example of every event type, as it travels on the wire (JSON data)."""

from __future__ import annotations

from typing import Any

import pytest

T = "2024-05-01T12:00:00Z"
ADDRESS = {
    "name": "Ada Lovelace",
    "line1": "1 Analytical Row",
    "city": "London",
    "postal_code": "N1 9GU",
    "country": "GB",
}
LOCATED = [{"line_id": "l1", "sku": "SKU-1", "location": "WH1", "quantity": 2}]

EXAMPLES: dict[str, dict[str, Any]] = {
    "checkout.order.submitted.v1": {
        "order_id": "o-1",
        "customer_id": "c-1",
        "currency": "EUR",
        "placed_at": T,
        "lines": [{"line_id": "l1", "sku": "SKU-1", "quantity": 2, "unit_price": "12.50"}],
        "shipping_address": ADDRESS,
        "payment": {"status": "authorized", "reference": "pay-1"},
    },
    "checkout.order.cancel_requested.v1": {"order_id": "o-1", "reason": "changed my mind"},
    "checkout.order.lines_cancel_requested.v1": {
        "order_id": "o-1",
        "request_id": "req-1",
        "lines": [{"line_id": "l-1", "quantity": 1}],
        "reason": "changed my mind",
    },
    "checkout.payment.confirmed.v1": {"order_id": "o-1", "reference": "pay-1"},
    "warehouse.goods.received.v1": {
        "receipt_id": "r-1",
        "sku": "SKU-1",
        "location": "WH1",
        "quantity": 10,
        "unit_cost": "4.20",
        "currency": "EUR",
        "received_at": T,
    },
    "catalog.variant.upserted.v1": {
        "sku": "SKU-1",
        "product_id": "p-1",
        "handle": "blue-mug",
        "title": "Blue mug",
        "status": "active",
        "tracked": True,
        "backorderable": False,
        "version": 1,
        "updated_at": T,
    },
    "catalog.variant.removed.v1": {"sku": "SKU-1", "version": 2},
    "stock.reserve.requested.v1": {
        "order_id": "o-1",
        "lines": [{"line_id": "l1", "sku": "SKU-1", "quantity": 2}],
        "attempt": 1,
    },
    "stock.release.requested.v1": {"order_id": "o-1", "reason": "customer_cancelled"},
    "stock.commit.requested.v1": {"order_id": "o-1", "shipment_id": "s-1", "lines": LOCATED},
    "stock.reserved.v1": {
        "order_id": "o-1",
        "lines": [
            {
                "line_id": "l1",
                "sku": "SKU-1",
                "requested": 2,
                "reserved": 2,
                "backordered": 0,
                "untracked": False,
                "allocations": [{"location": "WH1", "quantity": 2}],
            }
        ],
        "complete": True,
    },
    "stock.reservation.rejected.v1": {
        "order_id": "o-1",
        "reason": "insufficient_stock",
        "lines": [{"sku": "SKU-1", "requested": 2, "available": 0}],
    },
    "stock.released.v1": {"order_id": "o-1", "outcome": "released", "lines": LOCATED},
    "stock.committed.v1": {
        "order_id": "o-1",
        "shipment_id": "s-1",
        "outcome": "committed",
        "lines": LOCATED,
    },
    "stock.backorder.allocated.v1": {
        "order_id": "o-1",
        "line_id": "l1",
        "sku": "SKU-1",
        "location": "WH1",
        "quantity": 1,
        "remaining_backordered": 0,
    },
    "stock.backorder.eta_changed.v1": {
        "order_id": "o-1",
        "line_id": "l1",
        "sku": "SKU-1",
        "expected_date": T,
        "previous_expected_date": None,
    },
    "stock.level.changed.v1": {
        "sku": "SKU-1",
        "location": "WH1",
        "on_hand": 10,
        "reserved": 2,
        "available": 8,
        "incoming": 0,
        "backordered": 0,
        "damaged": 0,
        "quality_control": 0,
        "safety_stock": 1,
        "version": 3,
        "changed_at": T,
    },
    "stock.movement.recorded.v1": {
        "movement_id": "m-1",
        "sku": "SKU-1",
        "location": "WH1",
        "kind": "receipt",
        "quantity": 10,
        "reference": {"type": "receipt", "id": "r-1"},
        "unit_cost": "4.20",
        "currency": "EUR",
        "cause_event_id": "6f1c1b1e-0000-4000-8000-000000000001",
        "occurred_at": T,
    },
    "stock.low.v1": {"sku": "SKU-1", "location": "WH1", "available": 2, "reorder_point": 5},
    "stock.out.v1": {"sku": "SKU-1", "location": "WH1"},
    "stock.recovered.v1": {"sku": "SKU-1", "location": "WH1", "available": 9, "reorder_point": 5},
    "stock.reorder.suggested.v1": {
        "sku": "SKU-1",
        "location": "WH1",
        "order_quantity": 40,
        "reorder_point": 12,
        "safety_stock": 4,
        "forecast_daily_demand": "1.25",
        "lead_time_days": 7,
        "days_of_cover": "3.2",
        "model": "ses",
        "suggested_at": T,
    },
    "stock.invariant.violated.v1": {
        "sku": "*",
        "invariant": "available_not_negative",
        "detail": "1 level row has available < 0",
        "detected_at": T,
    },
    "order.accepted.v1": {
        "order_id": "o-1",
        "customer_id": "c-1",
        "currency": "EUR",
        "lines": [{"line_id": "l1", "sku": "SKU-1", "quantity": 2, "unit_price": "12.50"}],
        "accepted_at": T,
    },
    "order.confirmed.v1": {
        "order_id": "o-1",
        "lines": [
            {
                "line_id": "l1",
                "sku": "SKU-1",
                "quantity": 2,
                "reserved": 1,
                "backordered": 1,
                "unit_price": "12.50",
                "allocations": [{"location": "WH1", "quantity": 1}],
            }
        ],
        "currency": "EUR",
        "shipping_address": ADDRESS,
        "confirmed_at": T,
    },
    "order.rejected.v1": {
        "order_id": "o-1",
        "reason": "invalid_order",
        "field": "lines.0.quantity",
        "lines": [{"sku": "SKU-1", "requested": 0, "available": 0}],
    },
    "order.cancelled.v1": {"order_id": "o-1", "reason": "payment_timeout"},
    "order.line_cancelled.v1": {
        "order_id": "o-1",
        "line_id": "l-1",
        "sku": "SKU-1",
        "quantity": 1,
        "reason": "short_pick",
        "remaining": 2,
    },
    "order.lines_cancel_requested.v1": {
        "order_id": "o-1",
        "request_id": "req-1",
        "lines": [{"line_id": "l-1", "sku": "SKU-1", "quantity": 1}],
        "reason": "changed my mind",
    },
    "order.cancel_refused.v1": {
        "order_id": "o-1",
        "reason": "already_shipped",
        "requested_reason": "changed my mind",
    },
    "order.backorder.allocated.v1": {
        "order_id": "o-1",
        "line_id": "l1",
        "sku": "SKU-1",
        "location": "WH1",
        "quantity": 1,
    },
    "order.backorder.eta_changed.v1": {
        "order_id": "o-1",
        "line_id": "l1",
        "sku": "SKU-1",
        "expected_date": T,
        "previous_expected_date": T,
    },
    "order.shipped.v1": {
        "order_id": "o-1",
        "shipment_id": "s-1",
        "lines": LOCATED,
        "fully_shipped": True,
    },
    "order.delivered.v1": {"order_id": "o-1", "delivered_at": T},
    "order.returned.v1": {
        "order_id": "o-1",
        "rma_id": "rma-1",
        "lines": [
            {
                "line_id": "l1",
                "sku": "SKU-1",
                "location": "WH1",
                "quantity": 1,
                "condition": "restock",
            }
        ],
    },
    "order.stuck.v1": {
        "order_id": "o-1",
        "state": "RESERVING",
        "attempts": 5,
        "detail": "no reply from stock",
    },
    "fulfillment.shipment.created.v1": {
        "shipment_id": "s-1",
        "order_id": "o-1",
        "location": "WH1",
        "lines": [{"line_id": "l1", "sku": "SKU-1", "quantity": 2}],
    },
    "fulfillment.shipment.shipped.v1": {
        "shipment_id": "s-1",
        "order_id": "o-1",
        "location": "WH1",
        "lines": [{"line_id": "l1", "sku": "SKU-1", "quantity": 2, "unit_price": "12.50"}],
        "currency": "EUR",
        "carrier": "DHL",
        "service_level": "standard",
        "tracking_number": "JD0001",
        "label_ref": "labels/s-1.pdf",
        "shipped_at": T,
    },
    "fulfillment.shipment.shortened.v1": {
        "shipment_id": "s-1",
        "order_id": "o-1",
        "location": "WH1",
        "removed": [{"line_id": "l1", "sku": "SKU-1", "quantity": 1}],
    },
    "fulfillment.shipment.delivered.v1": {
        "shipment_id": "s-1",
        "order_id": "o-1",
        "delivered_at": T,
    },
    "fulfillment.shipment.exception.v1": {
        "shipment_id": "s-1",
        "order_id": "o-1",
        "detail": "parcel damaged in transit",
    },
    "fulfillment.shipment.cancelled.v1": {"shipment_id": "s-1", "order_id": "o-1"},
    "fulfillment.return.received.v1": {
        "rma_id": "rma-1",
        "order_id": "o-1",
        "lines": [
            {
                "line_id": "l1",
                "sku": "SKU-1",
                "location": "WH1",
                "quantity": 1,
                "condition": "write_off",
            }
        ],
        "received_at": T,
    },
    "fulfillment.stock.discrepancy.v1": {
        "order_id": "o-1",
        "shipment_id": "s-1",
        "sku": "SKU-1",
        "location": "WH1",
        "bin": "A-01-3",
        "expected": 5,
        "found": 3,
    },
    "accounting.entry.posted.v1": {
        "entry_id": "je-1",
        "posted_at": T,
        "period": "2024-05",
        "cause": {"type": "shipment", "id": "s-1"},
        "currency": "EUR",
        "lines": [
            {"account": "cogs", "debit": "8.40", "credit": "0", "sku": "SKU-1"},
            {"account": "inventory", "debit": "0", "credit": "8.40", "sku": "SKU-1"},
        ],
    },
}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "event_type" in metafunc.fixturenames:
        metafunc.parametrize("event_type", sorted(EXAMPLES))


@pytest.fixture
def example(event_type: str) -> dict[str, Any]:
    return EXAMPLES[event_type]


@pytest.fixture
def examples() -> dict[str, dict[str, Any]]:
    return EXAMPLES
