"""What intake adds to the contract: violations named like fields, fingerprints, defaults.

The rules themselves are the contract model's (libs/contracts/tests/test_checkout.py).
"""

from copy import deepcopy
from typing import Any

import pytest
from pydantic import ValidationError

from stockflow.contracts.events.checkout import CheckoutOrderSubmitted
from stockflow.contracts.events.orders import OrderRejected
from stockflow.order.domain import (
    BackorderPolicy,
    Violation,
    backorder_policy,
    field_path,
    fingerprint_of,
    same_submission,
    submission_fingerprint,
    violations,
)
from stockflow.order.domain.intake import MAX_VIOLATIONS


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


def violations_of(payload: dict[str, Any]) -> list[Violation]:
    try:
        CheckoutOrderSubmitted.model_validate(payload)
    except ValidationError as exc:
        return violations(exc.errors())
    return []


@pytest.mark.parametrize(
    ("location", "path"),
    [
        (("lines", 0, "quantity"), "lines[0].quantity"),
        (("payment", "deadline"), "payment.deadline"),
        (("lines",), "lines"),
        ((), ""),
    ],
)
def test_field_paths_read_like_the_payload(location: tuple[int | str, ...], path: str) -> None:
    assert field_path(location) == path


def test_a_valid_order_has_no_violations() -> None:
    assert violations_of(valid_payload()) == []


def test_violations_name_the_field_at_fault_and_why() -> None:
    lines = [
        {"line_id": "L1", "sku": "SKU-A", "quantity": 10_001, "unit_price": "1.00"},
        {"line_id": "L2", "sku": "SKU-B", "quantity": 1, "unit_price": "1.00"},
    ]
    assert violations_of(valid_payload(currency="usd", lines=lines)) == [
        Violation(field="currency", message="unknown ISO 4217 currency 'usd'"),
        Violation(field="lines[0].quantity", message="Input should be less than or equal to 10000"),
    ]
    lines[0]["quantity"], lines[1]["line_id"] = 1, "L1"
    assert violations_of(valid_payload(lines=lines)) == [
        Violation(field="lines[1].line_id", message="duplicate line id 'L1'")
    ]


def test_a_missing_field_is_named() -> None:
    payload = valid_payload()
    del payload["customer_id"]
    assert violations_of(payload) == [Violation(field="customer_id", message="Field required")]


def test_a_payload_that_is_not_an_object_is_a_root_violation() -> None:
    assert [v.field for v in violations_of(["ord-1"])] == ["(root)"]  # type: ignore[arg-type]


def test_every_violation_of_a_large_order_is_reported() -> None:
    lines = [{"line_id": f"L{i}", "sku": "", "quantity": 0, "unit_price": "-1"} for i in range(100)]
    assert len(violations_of(valid_payload(lines=lines))) == 300


def test_violations_are_bounded_like_order_rejected() -> None:
    errors = [{"loc": ("lines",), "msg": "m"}] * 600
    assert len(violations(errors)) == MAX_VIOLATIONS
    rejected = OrderRejected.model_fields["violations"].metadata
    assert any(getattr(m, "max_length", None) == MAX_VIOLATIONS for m in rejected)


def test_a_violation_is_the_contract_s_and_bounded_like_it() -> None:
    long_message = {"loc": ("lines",), "msg": "x" * 3000}
    (violation,) = violations([long_message])
    assert violation == Violation(field="lines", message="x" * 2000)


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


def test_a_valid_submission_is_fingerprinted_as_its_json_data() -> None:
    payload = valid_payload(backorder_policy=None)
    assert fingerprint_of(CheckoutOrderSubmitted.model_validate(payload)) == (
        submission_fingerprint(payload)
    )


def test_fields_the_contract_ignores_do_not_make_another_order() -> None:
    with_extra = valid_payload(loyalty_points=12)
    assert fingerprint_of(CheckoutOrderSubmitted.model_validate(with_extra)) == (
        submission_fingerprint(valid_payload())
    )


def test_backorders_follow_each_skus_catalog_flag_unless_the_order_says() -> None:
    def policy(**overrides: Any) -> BackorderPolicy:
        return backorder_policy(CheckoutOrderSubmitted.model_validate(valid_payload(**overrides)))

    assert policy() is BackorderPolicy.PER_SKU
    assert BackorderPolicy.PER_SKU.wire is None  # the reservation request leaves it to stock
    assert policy(backorder_policy="allow").wire == "allow"
    assert policy(backorder_policy="reject") is BackorderPolicy.REJECT
    # A producer serialising the contract model writes null for "not given".
    assert policy(backorder_policy=None) is BackorderPolicy.PER_SKU
    assert [v.field for v in violations_of(valid_payload(backorder_policy=""))] == [
        "backorder_policy"
    ]
