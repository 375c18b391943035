from datetime import UTC, datetime
from decimal import Decimal

import pytest

from stockflow.accounting.domain import (
    AccountingError,
    Cause,
    InvalidEntry,
    JournalEntry,
    Money,
    SoldLine,
    post_adjustment,
    post_receipt,
    post_refund,
    post_return_restocked,
    post_return_written_off,
    post_revenue,
    post_shipment_cost,
    post_shipping_cost,
)

AT = datetime(2024, 3, 15, 10, 0, tzinfo=UTC)
MOVEMENT = Cause("stock.movement.recorded.v1", "mov-1")
SHIPPED = Cause("fulfillment.shipment.shipped.v1", "shp-1")


def usd(text: str) -> Money:
    return Money.parse(text, "USD")


def rows(entry: JournalEntry) -> list[tuple[str, str, str, str | None, str | None]]:
    return [
        (line.account.value, str(line.debit), str(line.credit), line.sku, line.order_id)
        for line in entry.lines
    ]


def test_receipt_debits_inventory_against_goods_received_not_invoiced() -> None:
    entry = post_receipt(MOVEMENT, AT, "A", usd("20.00"))
    assert rows(entry) == [
        ("inventory", "20.00", "0.00", "A", None),
        ("goods_received_not_invoiced", "0.00", "20.00", "A", None),
    ]
    assert (entry.cause, entry.posted_at, entry.currency) == (MOVEMENT, AT, "USD")


def test_shipment_cost_moves_valuation_cost_from_inventory_to_cogs() -> None:
    entry = post_shipment_cost(MOVEMENT, AT, "A", usd("26.00"), order_id="o-1")
    assert rows(entry) == [
        ("cost_of_goods_sold", "26.00", "0.00", "A", "o-1"),
        ("inventory", "0.00", "26.00", "A", "o-1"),
    ]


def test_a_bundles_component_costs_the_bundle_sold_and_leaves_its_own_inventory() -> None:
    entry = post_shipment_cost(MOVEMENT, AT, "PEN", usd("8.00"), order_id="o-1", sold_as="KIT")
    assert rows(entry) == [
        ("cost_of_goods_sold", "8.00", "0.00", "KIT", "o-1"),
        ("inventory", "0.00", "8.00", "PEN", "o-1"),
    ]


def test_a_label_is_the_orders_shipping_expense_owed_to_the_carrier() -> None:
    entry = post_shipping_cost(SHIPPED, AT, "o-1", usd("5.75"))
    assert rows(entry) == [
        ("shipping_expense", "5.75", "0.00", None, "o-1"),
        ("carrier_payable", "0.00", "5.75", None, None),
    ]
    assert (
        entry.entry_id
        != post_revenue(SHIPPED, AT, "o-1", "USD", [SoldLine("A", 1, Decimal(1))]).entry_id
    )


def test_revenue_rounds_each_line_and_debits_clearing_the_sum() -> None:
    entry = post_revenue(
        SHIPPED,
        AT,
        "o-1",
        "USD",
        [SoldLine("A", 3, Decimal("3.335")), SoldLine("B", 1, Decimal("0.125"))],
    )
    # 3 x 3.335 = 10.005 -> 10.00 and 0.125 -> 0.12 (half-even); clearing is their sum
    assert rows(entry) == [
        ("clearing", "10.12", "0.00", None, "o-1"),
        ("revenue", "0.00", "10.00", "A", "o-1"),
        ("revenue", "0.00", "0.12", "B", "o-1"),
    ]


def test_revenue_needs_positive_lines() -> None:
    with pytest.raises(AccountingError):
        post_revenue(SHIPPED, AT, "o-1", "USD", [])
    with pytest.raises(AccountingError):
        SoldLine("A", 0, Decimal("1"))
    with pytest.raises(InvalidEntry, match="negative"):
        post_revenue(SHIPPED, AT, "o-1", "USD", [SoldLine("A", 1, Decimal("-1"))])


def test_refund_reverses_revenue_through_sales_returns() -> None:
    entry = post_refund(SHIPPED, AT, "o-1", "A", usd("7.00"))
    assert rows(entry) == [
        ("sales_returns", "7.00", "0.00", "A", "o-1"),
        ("clearing", "0.00", "7.00", "A", "o-1"),
    ]


def test_restocked_return_reverses_cogs_at_original_cost() -> None:
    entry = post_return_restocked(MOVEMENT, AT, "o-1", "A", usd("4.33"))
    assert rows(entry) == [
        ("inventory", "4.33", "0.00", "A", "o-1"),
        ("cost_of_goods_sold", "0.00", "4.33", "A", "o-1"),
    ]


def test_written_off_return_moves_its_cost_from_cogs_to_shrinkage() -> None:
    entry = post_return_written_off(MOVEMENT, AT, "o-1", "A", usd("4.33"))
    assert rows(entry) == [
        ("inventory_shrinkage", "4.33", "0.00", "A", "o-1"),
        ("cost_of_goods_sold", "0.00", "4.33", "A", "o-1"),
    ]


def test_adjustments_post_against_shrinkage_by_sign() -> None:
    loss = post_adjustment(MOVEMENT, AT, "A", usd("-2.50"))
    gain = post_adjustment(Cause("stock.movement.recorded.v1", "mov-2"), AT, "A", usd("1.00"))
    assert rows(loss) == [
        ("inventory_shrinkage", "2.50", "0.00", "A", None),
        ("inventory", "0.00", "2.50", "A", None),
    ]
    assert rows(gain) == [
        ("inventory", "1.00", "0.00", "A", None),
        ("inventory_shrinkage", "0.00", "1.00", "A", None),
    ]


def test_zero_cost_goods_still_post_a_traceable_entry() -> None:
    entry = post_receipt(MOVEMENT, AT, "FREE", usd("0"))
    assert entry.amount == usd("0.00")


def test_negative_cost_is_refused() -> None:
    with pytest.raises(InvalidEntry, match="negative"):
        post_receipt(MOVEMENT, AT, "A", usd("-1.00"))


def test_entry_currency_is_the_amounts_currency() -> None:
    entry = post_receipt(MOVEMENT, AT, "A", Money.parse("1.250", "KWD"))
    assert entry.currency == "KWD"
    with pytest.raises(AccountingError, match="unknown"):
        post_revenue(SHIPPED, AT, "o-1", "XXX", [SoldLine("A", 1, Decimal("1"))])


class TestEntryIds:
    def test_same_cause_rule_and_subject_give_the_same_id(self) -> None:
        first = post_receipt(MOVEMENT, AT, "A", usd("1.00"))
        replayed = post_receipt(Cause(MOVEMENT.type, MOVEMENT.id), AT, "A", usd("1.00"))
        assert first.entry_id == replayed.entry_id
        assert first == replayed

    def test_ids_differ_by_cause_rule_and_subject(self) -> None:
        ids = {
            post_receipt(MOVEMENT, AT, "A", usd("1")).entry_id,
            post_receipt(MOVEMENT, AT, "B", usd("1")).entry_id,
            post_receipt(Cause(MOVEMENT.type, "mov-2"), AT, "A", usd("1")).entry_id,
            post_receipt(Cause("other.type.v1", MOVEMENT.id), AT, "A", usd("1")).entry_id,
            post_shipment_cost(MOVEMENT, AT, "A", usd("1")).entry_id,
            post_return_restocked(MOVEMENT, AT, "o-1", "A", usd("1")).entry_id,
            post_return_written_off(MOVEMENT, AT, "o-1", "A", usd("1")).entry_id,
            post_adjustment(MOVEMENT, AT, "A", usd("1")).entry_id,
            # one fulfilment event can post revenue for the order and a refund per SKU
            post_revenue(SHIPPED, AT, "o-1", "USD", [SoldLine("A", 1, Decimal(1))]).entry_id,
            post_refund(SHIPPED, AT, "o-1", "A", usd("1")).entry_id,
        }
        assert len(ids) == 10

    def test_separator_characters_in_ids_cannot_collide(self) -> None:
        one = post_receipt(Cause("t", "a/b"), AT, "c", usd("1")).entry_id
        other = post_receipt(Cause("t", "a"), AT, "b/c", usd("1")).entry_id
        assert one != other
