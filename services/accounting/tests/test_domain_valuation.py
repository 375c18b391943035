import json
from decimal import Decimal

import pytest

from stockflow.accounting.domain import (
    AccountingError,
    CostLayer,
    CostMethod,
    CostSlice,
    CurrencyMismatch,
    InsufficientStock,
    Money,
    SkuValuation,
    prorate,
)


def usd(text: str) -> Money:
    return Money.parse(text, "USD")


def layers(valuation: SkuValuation) -> list[tuple[str, int, str]]:
    return [(layer.ref, layer.quantity, str(layer.value)) for layer in valuation.layers]


def fifo() -> SkuValuation:
    return SkuValuation("SKU-1", "USD", CostMethod.FIFO)


def average() -> SkuValuation:
    return SkuValuation("SKU-1", "USD", CostMethod.MOVING_AVERAGE)


class TestFifo:
    def test_issue_consumes_oldest_layers_first_and_splits_the_last(self) -> None:
        valuation = fifo()
        assert valuation.receive(10, Decimal("2.00"), "R1") == usd("20.00")
        assert valuation.receive(5, Decimal("3.00"), "R2") == usd("15.00")

        issued = valuation.issue(12)

        # 10 x 2.00 + 2 x 3.00
        assert issued.cost == usd("26.00")
        assert issued.slices == (CostSlice("R1", 10, usd("20.00")), CostSlice("R2", 2, usd("6.00")))
        assert layers(valuation) == [("R2", 3, "9.00")]
        assert (valuation.quantity, valuation.value) == (3, usd("9.00"))

    def test_returns_restock_at_original_cost_as_the_newest_layer(self) -> None:
        valuation = fifo()
        valuation.receive(10, Decimal("2.00"), "R1")
        valuation.receive(5, Decimal("3.00"), "R2")
        shipped = valuation.issue(12)  # 26.00
        original_cost = prorate(shipped.cost, 2, shipped.quantity)  # 26.00 x 2/12 = 4.333...
        assert original_cost == usd("4.33")

        valuation.restock_return(2, original_cost, "RET-1")
        valuation.receive(4, Decimal("2.50"), "R3")
        issued = valuation.issue(4)

        # the 3 left of R2 (9.00) then one of the two returned units: 4.33 / 2 = 2.165 -> 2.16
        assert issued.cost == usd("11.16")
        assert layers(valuation) == [("RET-1", 1, "2.17"), ("R3", 4, "10.00")]
        # in 20 + 15 + 4.33 + 10 = 49.33, out 26 + 11.16 = 37.16, left 12.17
        assert valuation.value == usd("12.17")

    def test_partial_issues_never_lose_a_cent_to_rounding(self) -> None:
        valuation = fifo()
        assert valuation.receive(3, Decimal("0.333333"), "R1") == usd("1.00")
        costs = [valuation.issue(1).cost for _ in range(3)]
        assert [str(c) for c in costs] == ["0.33", "0.34", "0.33"]
        assert valuation.layers == ()

    def test_found_units_take_the_latest_receipt_cost(self) -> None:
        valuation = fifo()
        valuation.receive(1, Decimal("2.00"), "R1")
        valuation.receive(1, Decimal("2.40"), "R2")
        valuation.issue(2)
        assert valuation.current_unit_cost == Decimal("2.40")
        assert valuation.receive_found(3, "COUNT-1") == usd("7.20")


class TestMovingAverage:
    def test_issues_at_the_weighted_average(self) -> None:
        valuation = average()
        valuation.receive(10, Decimal("2.00"), "R1")
        valuation.receive(5, Decimal("3.00"), "R2")
        assert valuation.current_unit_cost == Decimal("2.333333")  # 35.00 / 15

        issued = valuation.issue(12)

        assert issued.cost == usd("28.00")  # 35.00 x 12/15
        assert issued.slices == (CostSlice("moving-average", 12, usd("28.00")),)
        assert layers(valuation) == [("moving-average", 3, "7.00")]

    def test_returns_merge_at_original_cost_and_move_the_average(self) -> None:
        valuation = average()
        valuation.receive(10, Decimal("2.00"), "R1")
        valuation.receive(5, Decimal("3.00"), "R2")
        shipped = valuation.issue(12)  # 28.00
        original_cost = prorate(shipped.cost, 2, 12)  # 4.666... -> 4.67

        valuation.restock_return(2, original_cost, "RET-1")
        assert layers(valuation) == [("moving-average", 5, "11.67")]
        valuation.receive(5, Decimal("2.00"), "R3")
        assert valuation.current_unit_cost == Decimal("2.167000")  # 21.67 / 10

        # issuing everything takes exactly what is left, rounding included
        assert valuation.issue(10).cost == usd("21.67")
        assert valuation.value == usd("0.00")

    def test_average_survives_an_empty_shelf_for_found_units(self) -> None:
        valuation = average()
        valuation.receive(3, Decimal("2.00"), "R1")
        valuation.receive(1, Decimal("3.00"), "R2")
        valuation.issue(4)
        assert valuation.receive_found(2, "COUNT-1") == usd("4.50")  # 2 x 9.00/4


@pytest.mark.parametrize("method", list(CostMethod))
def test_issuing_more_than_valued_raises_and_changes_nothing(method: CostMethod) -> None:
    valuation = SkuValuation("SKU-1", "USD", method)
    valuation.receive(2, Decimal("1.00"), "R1")
    before = valuation.to_dict()
    with pytest.raises(InsufficientStock):
        valuation.issue(3)
    with pytest.raises(InsufficientStock):
        valuation.write_off(3)
    assert valuation.to_dict() == before


@pytest.mark.parametrize("method", list(CostMethod))
def test_write_off_costs_like_an_issue(method: CostMethod) -> None:
    valuation = SkuValuation("SKU-1", "USD", method)
    valuation.receive(4, Decimal("1.25"), "R1")
    assert valuation.write_off(2).cost == usd("2.50")
    assert valuation.value == usd("2.50")


def test_minor_units_follow_the_sku_currency() -> None:
    yen = SkuValuation("SKU-1", "JPY")
    assert str(yen.receive(3, Decimal("100.5"), "R1")) == "302"  # 301.5 half-even
    assert [str(yen.issue(1).cost) for _ in range(3)] == ["101", "100", "101"]
    dinar = SkuValuation("SKU-2", "KWD")
    assert str(dinar.receive(3, Decimal("0.3335"), "R1")) == "1.000"  # 1.0005 half-even


def test_nothing_is_valued_in_a_foreign_currency_or_from_nothing() -> None:
    valuation = fifo()
    with pytest.raises(CurrencyMismatch):
        valuation.restock_return(1, Money.parse("1.00", "EUR"), "RET-1")
    with pytest.raises(AccountingError, match="no known cost"):
        valuation.receive_found(1, "COUNT-1")
    for bad_quantity in (0, -1, True):
        with pytest.raises(AccountingError):
            valuation.receive(bad_quantity, Decimal("1"), "R1")
    for bad_cost in (Decimal("-1"), Decimal("NaN"), 1.5):
        with pytest.raises(AccountingError):
            valuation.receive(1, bad_cost, "R1")  # type: ignore[arg-type]


@pytest.mark.parametrize("method", list(CostMethod))
def test_state_round_trips_through_plain_json(method: CostMethod) -> None:
    valuation = SkuValuation("SKU-1", "USD", method)
    valuation.receive(3, Decimal("0.333333"), "R1")
    valuation.receive(2, Decimal("5.10"), "R2")
    valuation.issue(1)
    data = json.loads(json.dumps(valuation.to_dict()))

    restored = SkuValuation.from_dict(data)

    assert restored.to_dict() == valuation.to_dict()
    assert restored.issue(4) == valuation.issue(4)


def test_stored_state_is_revalidated() -> None:
    data = {
        "sku": "SKU-1",
        "currency": "USD",
        "method": "moving_average",
        "layers": [
            {"ref": "a", "quantity": 1, "value": "1.00"},
            {"ref": "b", "quantity": 1, "value": "1.00"},
        ],
        "last_unit_cost": None,
    }
    with pytest.raises(AccountingError, match="single layer"):
        SkuValuation.from_dict(data)
    with pytest.raises(AccountingError):
        CostLayer("a", 1, usd("-1.00"))
