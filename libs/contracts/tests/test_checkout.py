"""The rules of a checkout submission: the contract model is the whole rule set."""

from __future__ import annotations

import json
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from stockflow.contracts.events.checkout import MAX_LINE_QUANTITY, CheckoutOrderSubmitted
from stockflow.contracts.export import event_schema


def submission(examples: dict, **overrides: Any) -> dict[str, Any]:
    return {**json.loads(json.dumps(examples["checkout.order.submitted.v1"])), **overrides}


def with_line(examples: dict, **fields: Any) -> dict[str, Any]:
    line = {"line_id": "L1", "sku": "SKU-A", "quantity": 1, "unit_price": "1.00", **fields}
    return submission(examples, lines=[line])


def faults(data: dict[str, Any]) -> list[tuple[tuple[int | str, ...], str]]:
    try:
        CheckoutOrderSubmitted.model_validate(data)
    except ValidationError as exc:
        return [(error["loc"], error["msg"]) for error in exc.errors()]
    return []


def fields_at_fault(data: dict[str, Any]) -> list[tuple[int | str, ...]]:
    return [loc for loc, _ in faults(data)]


def test_one_quantity_cap_per_checkout_line(examples: dict) -> None:
    assert MAX_LINE_QUANTITY == 10_000
    for quantity in (1, MAX_LINE_QUANTITY):
        assert faults(with_line(examples, quantity=quantity)) == []
    for quantity in (0, -1, MAX_LINE_QUANTITY + 1):
        assert fields_at_fault(with_line(examples, quantity=quantity)) == [("lines", 0, "quantity")]


@pytest.mark.parametrize("quantity", [2.0, "2", True, None])
def test_quantity_must_be_an_integer(examples: dict, quantity: Any) -> None:
    assert fields_at_fault(with_line(examples, quantity=quantity)) == [("lines", 0, "quantity")]


def test_a_duplicate_line_id_is_named_where_it_repeats(examples: dict) -> None:
    lines = [
        {"line_id": "L1", "sku": "SKU-A", "quantity": 1, "unit_price": "1.00"},
        {"line_id": "L1", "sku": "SKU-B", "quantity": 1, "unit_price": "1.00"},
    ]
    assert faults(submission(examples, lines=lines)) == [
        (("lines", 1, "line_id"), "duplicate line id 'L1'")
    ]


@pytest.mark.parametrize("currency", ["XYZ", "usd", ""])
def test_an_unknown_currency_is_named(examples: dict, currency: str) -> None:
    assert faults(submission(examples, currency=currency)) == [
        (("currency",), f"unknown ISO 4217 currency {currency!r}")
    ]


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
    examples: dict, currency: str, price: str, valid: bool
) -> None:
    data = with_line(examples, unit_price=price)
    data["currency"] = currency
    expected = [] if valid else [("lines", 0, "unit_price")]
    assert fields_at_fault(data) == expected


def test_an_unknown_currency_does_not_also_blame_the_prices(examples: dict) -> None:
    data = with_line(examples, unit_price="1.9999")
    data["currency"] = "XYZ"
    assert fields_at_fault(data) == [("currency",)]


def test_a_pending_payment_needs_a_deadline(examples: dict) -> None:
    pending = {"status": "pending", "reference": "p"}
    assert faults(submission(examples, payment=pending)) == [
        (("payment", "deadline"), "required when payment is pending")
    ]
    with_deadline = {**pending, "deadline": "2025-03-01T13:00:00+01:00"}
    assert faults(submission(examples, payment=with_deadline)) == []


def test_every_broken_field_is_reported_at_once(examples: dict) -> None:
    data = submission(
        examples,
        currency="XYZ",
        lines=[{"line_id": "L1", "sku": "S", "quantity": 0, "unit_price": "-1"}],
        payment={"status": "pending"},
    )
    assert fields_at_fault(data) == [
        ("currency",),
        ("lines", 0, "quantity"),
        ("lines", 0, "unit_price"),
        ("payment", "reference"),
        ("payment", "deadline"),
    ]


def test_the_exported_schema_states_the_same_limits(examples: dict) -> None:
    schema = json.loads(json.dumps(event_schema(CheckoutOrderSubmitted)))
    validator = Draft202012Validator(schema)
    assert validator.is_valid(with_line(examples, quantity=MAX_LINE_QUANTITY))
    assert not validator.is_valid(with_line(examples, quantity=MAX_LINE_QUANTITY + 1))
    pending = {"status": "pending", "reference": "p"}
    assert not validator.is_valid(submission(examples, payment=pending))
    assert not validator.is_valid(submission(examples, payment={**pending, "deadline": None}))
    deadline = "2025-03-01T13:00:00Z"
    assert validator.is_valid(submission(examples, payment={**pending, "deadline": deadline}))
    assert "minor digits" in json.dumps(schema)
