"""Business keys: the same fact again is a repeat; the same key saying something else is refused."""

from __future__ import annotations

from decimal import Decimal

from stockflow.stock.domain import Fact, FactKind, canonical_money, conflict_with

RECEIPT = {"sku": "TEE", "location": "WH-A", "quantity": 10, "unit_cost": "2.5", "currency": "USD"}


def test_the_same_fact_again_is_a_repeat_not_a_conflict() -> None:
    assert conflict_with(RECEIPT, Fact(FactKind.RECEIPT, "r-1", dict(RECEIPT))) is None


def test_one_spelling_per_amount_so_a_retry_with_trailing_zeros_is_the_same_receipt() -> None:
    assert canonical_money(Decimal("2.50")) == canonical_money(Decimal("2.5")) == "2.5"
    assert canonical_money(Decimal("10.00")) == "10"
    assert canonical_money(Decimal("0")) == "0"


def test_a_receipt_id_with_another_quantity_is_refused_naming_the_key_and_the_fields() -> None:
    again = Fact(FactKind.RECEIPT, "r-1", RECEIPT | {"quantity": 12, "location": "WH-B"})
    reason = conflict_with(RECEIPT, again)
    assert reason is not None
    assert reason.startswith("receipt_id: receipt r-1 was already applied with other values")
    assert "location 'WH-A' then, 'WH-B' now" in reason
    assert "quantity 10 then, 12 now" in reason
    assert "sku" not in reason.split("(")[1]


def test_each_kind_names_the_field_that_carries_its_key() -> None:
    line = Fact(FactKind.RETURN_LINE, "rma-1:L1", {"quantity": 2})
    count = Fact(FactKind.COUNT, "c-1", {"counted": 4})
    assert (conflict_with({"quantity": 1}, line) or "").startswith("rma_id: return_line rma-1:L1")
    assert (conflict_with({"counted": 3}, count) or "").startswith("count_id: count c-1")
