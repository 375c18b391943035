"""The checkout simulator's orders: valid where they should be, broken only where they say so."""

from __future__ import annotations

import json
from decimal import Decimal
from types import SimpleNamespace

import pytest

from stockflow.cli.checkout_sim import (
    DEMO_MIX,
    LINE_CANCEL_DROP,
    SHORT_PICK,
    WAREHOUSE_CANCEL,
    Catalog,
    OrderFactory,
    Scenario,
    order_payload,
    warehouse_path,
    with_extra_scenarios,
)
from stockflow.contracts import InvalidMessage, decode, parse
from stockflow.contracts.events.checkout import (
    CheckoutOrderLinesCancelRequested,
    CheckoutOrderSubmitted,
)

CATALOG = Catalog(
    skus=["HOT-1", "A-1", "B-1"],
    prices={"HOT-1": Decimal("12.50"), "A-1": Decimal("3.00"), "B-1": Decimal("7.25")},
    out_of_stock=["GONE-1"],
    backorderable=["BACK-1"],
    backorderable_bundles=["KIT-1"],
    digital=["EBOOK-1"],
)


def test_order_payload_numbers_lines_and_prices_them():
    payload = order_payload("o-1", [("A-1", 2), ("NEW-1", 1)], prices=CATALOG.prices)
    assert [(line["line_id"], line["unit_price"]) for line in payload["lines"]] == [
        ("L1", "3.00"),
        ("L2", "10.00"),
    ]
    order = CheckoutOrderSubmitted.model_validate(payload)
    assert order.payment.status == "authorized" and order.payment.reference == "pay-o-1"


def test_the_same_seed_gives_the_same_orders():
    def orders(seed: int) -> list[tuple]:
        factory = OrderFactory(CATALOG, seed=seed)
        planned = [factory.next() for _ in range(50)]
        return [(p.scenario, json.loads(p.record.value)["lines"]) for p in planned]

    assert orders(3) == orders(3)
    assert orders(3) != orders(4)


@pytest.mark.parametrize("scenario", list(Scenario))
def test_every_scenario_is_what_it_claims(scenario):
    planned = OrderFactory(CATALOG, mix={scenario: 1.0}, seed=5).next()
    cloud = decode(planned.record.value, planned.record.headers)
    if scenario is Scenario.INVALID:
        with pytest.raises(InvalidMessage, match="quantity"):
            parse(cloud)
        return
    order = parse(cloud)
    assert isinstance(order, CheckoutOrderSubmitted)
    skus = [line.sku for line in order.lines]
    assert len(skus) == len(set(skus)), "a sku appears on one line only"
    if scenario is Scenario.OUT_OF_STOCK:
        assert skus[0] == "GONE-1"
    if scenario is Scenario.BACKORDER:
        assert skus == ["BACK-1"] and order.lines[0].quantity >= 3
    if scenario is Scenario.BUNDLE_BACKORDER:
        assert skus == ["KIT-1"] and order.lines[0].quantity >= 3
    if scenario is Scenario.DIGITAL:
        assert skus == ["EBOOK-1"]
        assert planned.lines() == [("EBOOK-1", order.lines[0].quantity)]
    if scenario is Scenario.UNKNOWN_SKU:
        assert skus[0].startswith("NOPE-")
    if scenario is Scenario.NORMAL:
        assert all(line.unit_price == CATALOG.prices[line.sku] for line in order.lines)
    pending = scenario in (Scenario.PENDING_PAID, Scenario.PENDING_UNPAID)
    assert (order.payment.status == "pending") is pending
    assert (order.payment.deadline is not None) is pending
    follow_ups = {Scenario.PENDING_PAID: 1, Scenario.CANCELLED: 1, Scenario.LINE_CANCEL: 1}
    assert len(planned.follow_ups) == follow_ups.get(scenario, 0)
    assert not planned.reallocates, "the merchant's default policy unless asked"


def test_a_line_cancel_takes_one_unit_of_the_first_line_and_leaves_the_rest():
    for seed in range(20):
        planned = OrderFactory(CATALOG, mix={Scenario.LINE_CANCEL: 1.0}, seed=seed).next()
        first_line_quantity = planned.lines()[0][1]
        (follow_up,) = planned.follow_ups
        cancel = parse(decode(follow_up.record.value, follow_up.record.headers))
        assert isinstance(cancel, CheckoutOrderLinesCancelRequested)
        assert cancel.order_id == planned.order_id
        assert [(line.line_id, line.quantity) for line in cancel.lines] == [("L1", 1)]
        assert first_line_quantity >= 2, "part of a line: a unit is left to ship"
        assert follow_up.delay_s >= 0.8, "sent once the order is likely confirmed"


def test_a_share_of_orders_asks_for_reallocation():
    factory = OrderFactory(CATALOG, seed=9, reallocate_share=0.3)
    planned = [factory.next() for _ in range(200)]
    reallocating = [p for p in planned if p.reallocates]
    assert 30 <= len(reallocating) <= 90
    valid = [p for p in reallocating if p.scenario is not Scenario.INVALID]
    order = parse(decode(valid[0].record.value, valid[0].record.headers))
    assert isinstance(order, CheckoutOrderSubmitted)
    assert order.fulfillment_exception_policy == "reallocate"


def test_extra_scenarios_take_their_share_from_the_normal_orders():
    mix = with_extra_scenarios(DEMO_MIX, {Scenario.DIGITAL: 0.03, Scenario.BUNDLE_BACKORDER: 0})
    assert mix[Scenario.NORMAL] == pytest.approx(DEMO_MIX[Scenario.NORMAL] - 0.03)
    assert mix[Scenario.DIGITAL] == 0.03 and Scenario.BUNDLE_BACKORDER not in mix
    assert sum(mix.values()) == pytest.approx(sum(DEMO_MIX.values()))
    with pytest.raises(ValueError, match="more than the normal orders"):
        with_extra_scenarios(DEMO_MIX, {Scenario.DIGITAL: 0.9})


@pytest.mark.parametrize(
    ("event_type", "data", "path"),
    [
        ("fulfillment.shipment.shortened.v1", {"reason": None}, SHORT_PICK),
        ("fulfillment.shipment.shortened.v1", {"cancel_request_id": "lc-1"}, LINE_CANCEL_DROP),
        ("fulfillment.shipment.cancelled.v1", {"reason": "warehouse: damp"}, WAREHOUSE_CANCEL),
        ("fulfillment.shipment.cancelled.v1", {"cancel_request_id": "lc-1"}, LINE_CANCEL_DROP),
        ("fulfillment.shipment.cancelled.v1", {"reason": "order cancelled"}, None),
        ("fulfillment.shipment.shipped.v1", {}, None),
    ],
)
def test_warehouse_reports_are_told_apart(event_type, data, path):
    cloud = SimpleNamespace(data=json.dumps(data).encode())
    assert warehouse_path(event_type, cloud) == path
