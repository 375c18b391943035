"""Intake rules: validate_order, the submission fingerprint and parsing."""

from copy import deepcopy
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from stockflow.order.domain import (
    BackorderPolicy,
    PaymentStatus,
    Violation,
    parse_submission,
    same_submission,
    submission_fingerprint,
    usable_order_id,
    validate_order,
)


def valid_payload(**overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "order_id": "ord-1",
        "customer_id": "cust-1",
        "currency": "USD",
        "placed_at": "2025-03-01T12:00:00Z",
        "lines": [
            {"line_id": "L1", "sku": "SKU-A", "quantity": 2, "unit_price": "10.00"},
            {"line_id": "L2", "sku": "SKU-B", "quantity": 1, "unit_price": "5.5"},
        ],
        "shipping_address": {
            "name": "Ada",
            "line1": "1 Main St",
            "city": "Springfield",
            "postal_code": "12345",
            "country": "US",
        },
        "payment": {"status": "authorized", "reference": "pay-1"},
    }
    payload.update(overrides)
    return payload


def with_line(**fields: Any) -> dict[str, Any]:
    line = {"line_id": "L1", "sku": "SKU-A", "quantity": 1, "unit_price": "1.00", **fields}
    return valid_payload(lines=[line])


def fields_at_fault(payload: dict[str, Any]) -> list[str]:
    return [violation.field for violation in validate_order(payload)]


def test_a_valid_order_has_no_violations() -> None:
    assert validate_order(valid_payload()) == []


def test_a_pending_payment_with_deadline_is_valid() -> None:
    payment = {"status": "pending", "reference": "p", "deadline": "2025-03-01T13:00:00+01:00"}
    assert validate_order(valid_payload(payment=payment)) == []


@pytest.mark.parametrize("lines", [[], None, "L1"])
def test_an_order_needs_at_least_one_line(lines: Any) -> None:
    assert validate_order(valid_payload(lines=lines)) == [
        Violation("lines", "an order needs at least one line")
    ]


def test_at_most_100_lines() -> None:
    lines = [
        {"line_id": f"L{i}", "sku": "SKU-A", "quantity": 1, "unit_price": "1.00"}
        for i in range(101)
    ]
    assert fields_at_fault(valid_payload(lines=lines)) == ["lines"]
    assert validate_order(valid_payload(lines=lines[:100])) == []


@pytest.mark.parametrize("quantity", [0, -1, 10_001])
def test_quantity_must_be_between_1_and_10000(quantity: int) -> None:
    assert fields_at_fault(with_line(quantity=quantity)) == ["lines[0].quantity"]


@pytest.mark.parametrize("quantity", [1, 10_000])
def test_quantity_bounds_are_inclusive(quantity: int) -> None:
    assert validate_order(with_line(quantity=quantity)) == []


@pytest.mark.parametrize("quantity", [2.0, "2", True, None])
def test_quantity_must_be_an_integer(quantity: Any) -> None:
    assert validate_order(with_line(quantity=quantity)) == [
        Violation("lines[0].quantity", "must be an integer")
    ]


def test_duplicate_line_ids_are_named() -> None:
    lines = [
        {"line_id": "L1", "sku": "SKU-A", "quantity": 1, "unit_price": "1.00"},
        {"line_id": "L1", "sku": "SKU-B", "quantity": 1, "unit_price": "1.00"},
    ]
    assert validate_order(valid_payload(lines=lines)) == [
        Violation("lines[1].line_id", "duplicate line id 'L1'")
    ]


@pytest.mark.parametrize("currency", ["XYZ", "usd", "", None, ["USD"]])
def test_unknown_currency(currency: Any) -> None:
    assert "currency" in fields_at_fault(valid_payload(currency=currency))


@pytest.mark.parametrize("price", ["abc", "1e3", "1.", ".5", 10, 10.5, None, "1,00"])
def test_unit_price_must_be_a_decimal_string(price: Any) -> None:
    assert validate_order(with_line(unit_price=price)) == [
        Violation("lines[0].unit_price", 'must be a decimal string such as "12.50"')
    ]


def test_unit_price_must_not_be_negative() -> None:
    assert validate_order(with_line(unit_price="-0.01")) == [
        Violation("lines[0].unit_price", "must not be negative")
    ]


def test_unit_price_zero_is_allowed() -> None:
    assert validate_order(with_line(unit_price="0")) == []


@pytest.mark.parametrize(
    ("currency", "price", "valid"),
    [
        ("USD", "1.99", True),
        ("USD", "1.999", False),
        ("JPY", "100", True),
        ("JPY", "100.0", False),
        ("KWD", "1.125", True),
        ("KWD", "1.1250", False),
    ],
)
def test_unit_price_has_at_most_the_currency_minor_digits(
    currency: str, price: str, valid: bool
) -> None:
    payload = valid_payload(
        currency=currency,
        lines=[{"line_id": "L1", "sku": "S", "quantity": 1, "unit_price": price}],
    )
    assert (validate_order(payload) == []) is valid


def test_an_unknown_currency_does_not_also_blame_the_prices() -> None:
    assert fields_at_fault(valid_payload(currency="XYZ")) == ["currency"]


def test_a_pending_payment_needs_a_deadline() -> None:
    payload = valid_payload(payment={"status": "pending", "reference": "p"})
    assert validate_order(payload) == [
        Violation("payment.deadline", "required when payment is pending")
    ]


@pytest.mark.parametrize("deadline", ["tomorrow", "2025-03-01T13:00:00", 1740830400])
def test_a_deadline_must_be_rfc3339_with_offset(deadline: Any) -> None:
    payment = {"status": "pending", "reference": "p", "deadline": deadline}
    assert fields_at_fault(valid_payload(payment=payment)) == ["payment.deadline"]


@pytest.mark.parametrize("payment", [None, "authorized", {"status": "paid"}])
def test_payment_status_must_be_known(payment: Any) -> None:
    assert len(fields_at_fault(valid_payload(payment=payment))) == 1


def test_backorder_policy_must_be_allow_or_reject() -> None:
    assert validate_order(valid_payload(backorder_policy="allow")) == []
    assert fields_at_fault(valid_payload(backorder_policy="maybe")) == ["backorder_policy"]
    assert fields_at_fault(valid_payload(backorder_policy=["allow"])) == ["backorder_policy"]


def test_line_ids_and_skus_must_be_non_empty_strings() -> None:
    assert fields_at_fault(with_line(line_id="", sku=7)) == ["lines[0].line_id", "lines[0].sku"]
    assert fields_at_fault(valid_payload(lines=["L1"])) == ["lines[0]"]


def test_every_violation_is_reported_at_once() -> None:
    payload = valid_payload(
        currency="XYZ",
        lines=[{"line_id": "L1", "sku": "S", "quantity": 0, "unit_price": "-1"}],
        payment={"status": "pending"},
    )
    assert fields_at_fault(payload) == [
        "currency",
        "lines[0].quantity",
        "lines[0].unit_price",
        "payment.deadline",
    ]


def test_violation_as_dict() -> None:
    assert Violation("lines", "x").to_dict() == {"field": "lines", "message": "x"}


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"order_id": "ord-1"}, "ord-1"),
        ({"order_id": ""}, None),
        ({"order_id": "   "}, None),
        ({"order_id": 42}, None),
        ({"order_id": "x" * 129}, None),
        ({}, None),
        (["ord-1"], None),
        ("ord-1", None),
    ],
)
def test_usable_order_id(payload: Any, expected: str | None) -> None:
    assert usable_order_id(payload) == expected


def test_fingerprint_ignores_key_order() -> None:
    payload = valid_payload()
    reordered = dict(reversed(list(deepcopy(payload).items())))
    reordered["payment"] = {"reference": "pay-1", "status": "authorized"}
    assert submission_fingerprint(payload) == submission_fingerprint(reordered)
    assert same_submission(payload, reordered)


def test_fingerprint_changes_with_any_value() -> None:
    changed = valid_payload()
    changed["lines"][0]["quantity"] = 3
    assert not same_submission(valid_payload(), changed)
    assert len(submission_fingerprint(changed)) == 64


def test_parse_submission() -> None:
    payment = {"status": "pending", "reference": "p", "deadline": "2025-03-01T14:00:00+01:00"}
    submitted = parse_submission(valid_payload(payment=payment, backorder_policy="reject"), "evt-1")
    assert submitted.cause_id == "evt-1"
    assert submitted.order_id == "ord-1"
    assert submitted.currency == "USD"
    assert [(line.line_id, line.sku, line.quantity) for line in submitted.lines] == [
        ("L1", "SKU-A", 2),
        ("L2", "SKU-B", 1),
    ]
    assert submitted.lines[1].unit_price == Decimal("5.5")
    assert submitted.payment is PaymentStatus.PENDING
    assert submitted.payment_deadline == datetime(2025, 3, 1, 13, 0, tzinfo=UTC)
    assert submitted.backorder_policy is BackorderPolicy.REJECT
    assert submitted.fingerprint == submission_fingerprint(
        valid_payload(payment=payment, backorder_policy="reject")
    )


def test_backorders_follow_each_skus_catalog_flag_unless_the_order_says() -> None:
    assert parse_submission(valid_payload(), "e").backorder_policy is BackorderPolicy.PER_SKU
    assert BackorderPolicy.PER_SKU.wire is None  # ReserveStock leaves it to stock
    allowed = parse_submission(valid_payload(backorder_policy="allow"), "e")
    assert allowed.backorder_policy.wire == "allow"
    # A producer serialising the contract model writes null for "not given".
    assert validate_order(valid_payload(backorder_policy=None)) == []
    assert fields_at_fault(valid_payload(backorder_policy="")) == ["backorder_policy"]
    explicit_null = parse_submission(valid_payload(backorder_policy=None), "e")
    assert explicit_null.backorder_policy is BackorderPolicy.PER_SKU
