"""The shared field types refuse what a sloppy producer would send."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from pydantic import TypeAdapter, ValidationError

from stockflow.contracts import EVENT_TYPES
from stockflow.contracts.events import CheckoutOrderSubmitted, JournalEntryPosted, OrderRejected
from stockflow.contracts.types import Currency, Money, NonNegativeMoney, Quantity, Timestamp

quantity = TypeAdapter(Quantity)
money = TypeAdapter(Money)
price = TypeAdapter(NonNegativeMoney)
currency = TypeAdapter(Currency)
timestamp = TypeAdapter(Timestamp)


@pytest.mark.parametrize("raw", ["1", "5", "1000000"])
def test_quantity_accepts_json_integers(raw: str) -> None:
    assert quantity.validate_json(raw) == int(raw)


@pytest.mark.parametrize("raw", ['"5"', "5.0", "0", "-1", "true", "null", "1000001", "5.5"])
def test_quantity_refuses_strings_floats_zero_and_negatives(raw: str) -> None:
    with pytest.raises(ValidationError):
        quantity.validate_json(raw)


def test_quantity_refuses_python_coercions() -> None:
    for value in ("5", 5.0, True, 0):
        with pytest.raises(ValidationError):
            quantity.validate_python(value)


@pytest.mark.parametrize("raw", ['"12.50"', '"0"', '"-3.1"', '"1234567890123.123456"'])
def test_money_reads_decimal_strings_exactly(raw: str) -> None:
    value = money.validate_json(raw)
    assert isinstance(value, Decimal)
    assert money.dump_json(value).decode() == raw


@pytest.mark.parametrize(
    "raw", ["12.5", "12", '"abc"', '"NaN"', '"Infinity"', '"1e3"', '" 12.50"', '"1_000"', '""']
)
def test_money_is_a_plain_decimal_string_only(raw: str) -> None:
    with pytest.raises(ValidationError):
        money.validate_json(raw)


def test_money_refuses_too_many_decimals_from_python() -> None:
    with pytest.raises(ValidationError):
        money.validate_python(Decimal(1) / Decimal(3))
    assert money.validate_python(Decimal("0.333333")) == Decimal("0.333333")


def test_prices_are_never_negative() -> None:
    assert price.validate_json('"0.00"') == Decimal("0.00")
    with pytest.raises(ValidationError):
        price.validate_json('"-0.01"')


@pytest.mark.parametrize("code", ["EUR", "USD", "JPY"])
def test_currency_accepts_iso_4217(code: str) -> None:
    assert currency.validate_python(code) == code


@pytest.mark.parametrize("code", ["eur", "EURO", "XXX", "ABC", "", "E1R"])
def test_currency_refuses_anything_else(code: str) -> None:
    with pytest.raises(ValidationError):
        currency.validate_python(code)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('"2024-05-01T12:00:00Z"', datetime(2024, 5, 1, 12, tzinfo=UTC)),
        ('"2024-05-01T14:00:00+02:00"', datetime(2024, 5, 1, 12, tzinfo=UTC)),
        ('"2024-05-01T12:00:00.250Z"', datetime(2024, 5, 1, 12, 0, 0, 250000, tzinfo=UTC)),
    ],
)
def test_timestamp_takes_rfc3339_with_offset_and_normalises_to_utc(
    raw: str, expected: datetime
) -> None:
    value = timestamp.validate_json(raw)
    assert value == expected
    assert value.utcoffset() is not None and value.utcoffset().total_seconds() == 0
    assert timestamp.dump_json(value).decode().endswith('Z"')


@pytest.mark.parametrize(
    "raw",
    [
        '"2024-05-01T12:00:00"',  # no offset
        '"2024-05-01"',
        '"2024-05-01T12:00Z"',  # no seconds
        '"1714564800"',  # epoch seconds as a string
        "1714564800",
        '"01/05/2024 12:00"',
    ],
)
def test_timestamp_refuses_naive_and_non_rfc3339(raw: str) -> None:
    with pytest.raises(ValidationError):
        timestamp.validate_json(raw)


def test_unknown_fields_are_ignored_everywhere(examples: dict) -> None:
    submitted = dict(examples["checkout.order.submitted.v1"])
    submitted["loyalty_points"] = 12
    submitted["shipping_address"] = {**submitted["shipping_address"], "floor": "3"}
    submitted["lines"] = [{**submitted["lines"][0], "gift_wrap": True}]
    order = CheckoutOrderSubmitted.model_validate(submitted)
    dumped = order.model_dump()
    assert "loyalty_points" not in dumped
    assert "floor" not in dumped["shipping_address"]
    assert "gift_wrap" not in dumped["lines"][0]


def test_every_model_and_nested_object_ignores_unknown_fields_and_is_frozen() -> None:
    seen: set[type] = set()
    stack = list(EVENT_TYPES.values())
    while stack:
        model = stack.pop()
        if model in seen:
            continue
        seen.add(model)
        assert model.model_config.get("extra") == "ignore", model
        assert model.model_config.get("frozen") is True, model
        for field in model.model_fields.values():
            for arg in _types_in(field.annotation):
                if isinstance(arg, type) and hasattr(arg, "model_fields"):
                    stack.append(arg)
    assert len(seen) > len(EVENT_TYPES)


def _types_in(annotation: object) -> list[object]:
    args = getattr(annotation, "__args__", None)
    if not args:
        return [annotation]
    return [annotation] + [t for arg in args for t in _types_in(arg)]


def test_order_lines_are_bounded(examples: dict) -> None:
    data = dict(examples["checkout.order.submitted.v1"])
    line = data["lines"][0]
    data["lines"] = [{**line, "line_id": f"l{i}"} for i in range(101)]
    with pytest.raises(ValidationError, match="lines"):
        CheckoutOrderSubmitted.model_validate(data)
    data["lines"] = []
    with pytest.raises(ValidationError, match="lines"):
        CheckoutOrderSubmitted.model_validate(data)


def test_duplicate_line_ids_are_refused(examples: dict) -> None:
    data = dict(examples["checkout.order.submitted.v1"])
    data["lines"] = data["lines"] * 2
    with pytest.raises(ValidationError, match="line_id"):
        CheckoutOrderSubmitted.model_validate(data)


def test_rejection_for_invalid_order_can_report_bad_quantities() -> None:
    rejected = OrderRejected(
        order_id="o-1",
        reason="invalid_order",
        field="lines.0.quantity",
        lines=[{"sku": "SKU-1", "requested": 0, "available": 3}],
    )
    assert rejected.lines[0].requested == 0
    assert OrderRejected(order_id="o-1", reason="invalid_order").lines == []


def test_journal_entries_must_balance(examples: dict) -> None:
    data = dict(examples["accounting.entry.posted.v1"])
    data["lines"] = [{**data["lines"][0], "debit": "8.41"}, data["lines"][1]]
    with pytest.raises(ValidationError, match="debits"):
        JournalEntryPosted.model_validate(data)
