import csv
import io
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from stockflow.accounting.domain import (
    JOURNAL_CSV_HEADER,
    Account,
    Cause,
    CostMethod,
    InventoryValue,
    JournalEntry,
    JournalFilter,
    Money,
    SkuValuation,
    SoldLine,
    filter_journal,
    inventory_valuation,
    inventory_value_as_of,
    journal_csv,
    journal_jsonl,
    post_adjustment,
    post_receipt,
    post_refund,
    post_return_restocked,
    post_return_written_off,
    post_revenue,
    post_shipment_cost,
    post_shipping_cost,
    profitability,
    trial_balance,
)


def usd(text: str) -> Money:
    return Money.parse(text, "USD")


def at(month: int, day: int) -> datetime:
    return datetime(2024, month, day, 12, 0, tzinfo=UTC)


def cause(event_id: str) -> Cause:
    return Cause("test.event.v1", event_id)


@pytest.fixture
def book() -> tuple[list[JournalEntry], SkuValuation]:
    """A month of trading in one FIFO SKU at 2.00 a unit, computed by hand in the tests."""
    sku = SkuValuation("A", "USD", CostMethod.FIFO)
    entries = [post_receipt(cause("r1"), at(3, 1), "A", sku.receive(10, Decimal("2.00"), "r1"))]
    for event_id, day, order_id, quantity, price in [
        ("s1", 5, "o-1", 4, "5.00"),
        ("s2", 10, "o-2", 3, "5.50"),
    ]:
        cost = sku.issue(quantity).cost
        entries += [
            post_shipment_cost(cause(event_id), at(3, day), "A", cost, order_id=order_id),
            post_revenue(
                cause(event_id),
                at(3, day),
                order_id,
                "USD",
                [SoldLine("A", quantity, Decimal(price))],
            ),
        ]
    restocked_cost = sku.restock_return(1, usd("2.00"), "ret-1")
    entries += [
        post_refund(cause("ret-1"), at(4, 2), "o-1", "A", usd("5.00")),
        post_return_restocked(cause("ret-1"), at(4, 2), "o-1", "A", restocked_cost),
        post_refund(cause("ret-2"), at(4, 3), "o-2", "A", usd("5.50")),
        post_return_written_off(cause("ret-2"), at(4, 3), "o-2", "A", usd("2.00")),
        post_adjustment(cause("wo-1"), at(4, 4), "A", -sku.write_off(1).cost),
    ]
    return entries, sku


def test_trial_balance_per_account_nets_to_zero(book) -> None:
    entries, _ = book
    entries = [*entries, post_shipping_cost(cause("s1"), at(3, 5), "o-1", usd("3.40"))]
    rows = {row.account: row for row in trial_balance(entries)}

    assert {account: (str(r.debit), str(r.credit)) for account, r in rows.items()} == {
        Account.INVENTORY: ("22.00", "16.00"),
        Account.GOODS_RECEIVED_NOT_INVOICED: ("0.00", "20.00"),
        Account.COST_OF_GOODS_SOLD: ("14.00", "4.00"),
        Account.REVENUE: ("0.00", "36.50"),
        Account.SALES_RETURNS: ("10.50", "0.00"),
        Account.INVENTORY_SHRINKAGE: ("4.00", "0.00"),
        Account.CLEARING: ("36.50", "10.50"),
        Account.SHIPPING_EXPENSE: ("3.40", "0.00"),
        Account.CARRIER_PAYABLE: ("0.00", "3.40"),
    }
    assert list(rows) == list(Account)  # chart order
    assert rows[Account.REVENUE].balance == usd("36.50")  # on its normal (credit) side
    assert rows[Account.INVENTORY].balance == usd("6.00")
    debits = sum(r.debit.amount for r in rows.values())
    assert debits == sum(r.credit.amount for r in rows.values()) == Decimal("90.40")


def test_trial_balance_keeps_currencies_apart() -> None:
    entries = [
        post_receipt(cause("r1"), at(3, 1), "A", usd("1.00")),
        post_receipt(cause("r2"), at(3, 1), "B", Money.parse("100", "JPY")),
    ]
    assert [(r.currency, r.account, str(r.debit)) for r in trial_balance(entries)] == [
        ("JPY", Account.INVENTORY, "100"),
        ("JPY", Account.GOODS_RECEIVED_NOT_INVOICED, "0"),
        ("USD", Account.INVENTORY, "1.00"),
        ("USD", Account.GOODS_RECEIVED_NOT_INVOICED, "0.00"),
    ]


def test_inventory_valuation_now_and_as_of_a_date(book) -> None:
    entries, sku = book
    assert inventory_valuation([sku]) == [InventoryValue("A", CostMethod.FIFO, 3, usd("6.00"))]
    assert inventory_value_as_of(entries, at(3, 5).replace(hour=11)) == {"A": usd("20.00")}
    assert inventory_value_as_of(entries, at(3, 31)) == {"A": usd("6.00")}  # 10 - 4 - 3 units
    assert inventory_value_as_of(entries, at(4, 2)) == {"A": usd("8.00")}  # one restocked
    assert inventory_value_as_of(entries, at(4, 30)) == {"A": sku.value}
    assert inventory_value_as_of(entries, at(2, 1)) == {}


def test_profitability_per_order(book) -> None:
    entries, _ = book
    rows = {row.group: row for row in profitability(entries, by="order")}
    one, two = rows["o-1"], rows["o-2"]
    # o-1: sold 4 x 5.00 at cost 8.00, one came back to the shelf: refund 5.00, cost 2.00 back
    assert (one.revenue, one.sales_returns, one.cost_of_goods_sold) == (
        usd("20.00"),
        usd("5.00"),
        usd("6.00"),
    )
    assert (one.gross_margin, one.profit) == (usd("9.00"), usd("9.00"))
    # o-2: sold 3 x 5.50 at cost 6.00, one came back broken: its cost is shrinkage, not COGS
    assert (two.cost_of_goods_sold, two.shrinkage) == (usd("4.00"), usd("2.00"))
    assert (two.net_revenue, two.gross_margin, two.profit) == (
        usd("11.00"),
        usd("7.00"),
        usd("5.00"),
    )


def test_an_orders_labels_lower_its_profit_not_its_gross_margin_nor_any_skus(book) -> None:
    entries, _ = book
    entries = [*entries, post_shipping_cost(cause("s1"), at(3, 5), "o-1", usd("3.40"))]

    order = {row.group: row for row in profitability(entries, by="order")}["o-1"]
    [by_sku] = profitability(entries, by="sku")
    march = profitability(entries, by="period")[0]

    assert (order.gross_margin, order.shipping, order.profit) == (
        usd("9.00"),
        usd("3.40"),
        usd("5.60"),
    )
    assert by_sku.shipping == usd("0.00")
    assert march.shipping == usd("3.40")


def test_cogs_and_gross_margin_by_sku_and_by_period(book) -> None:
    entries, _ = book
    [by_sku] = profitability(entries, by="sku")
    assert (by_sku.group, by_sku.currency) == ("A", "USD")
    assert (by_sku.cost_of_goods_sold, by_sku.gross_margin) == (usd("10.00"), usd("16.00"))
    assert by_sku.shrinkage == usd("4.00")  # the broken return and the warehouse write-off

    march, april = profitability(entries, by="period")
    assert (march.group, march.revenue, march.cost_of_goods_sold) == (
        "2024-03",
        usd("36.50"),
        usd("14.00"),
    )
    assert march.gross_margin == usd("22.50")
    assert (april.group, april.sales_returns, april.cost_of_goods_sold) == (
        "2024-04",
        usd("10.50"),
        usd("-4.00"),
    )


def test_journal_filters(book) -> None:
    entries, _ = book

    def ids(**where: Any) -> list[str]:
        return [entry.cause.id for entry in filter_journal(entries, JournalFilter(**where))]

    assert ids(order_id="o-2") == ["s2", "s2", "ret-2", "ret-2"]
    assert ids(account=Account.INVENTORY_SHRINKAGE) == ["ret-2", "wo-1"]
    assert len(ids(period="2024-04")) == 5
    assert ids(since=at(3, 10), until=at(4, 3)) == ["s2", "s2", "ret-1", "ret-1"]
    assert ids(sku="B") == []
    assert filter_journal(entries, JournalFilter(cause_type="test.event.v1")) == entries


def test_csv_export_has_a_header_and_one_row_per_line(book) -> None:
    entries, _ = book
    text = "".join(journal_csv(entries))
    rows = list(csv.DictReader(io.StringIO(text)))

    assert tuple(next(csv.reader(io.StringIO(text)))) == JOURNAL_CSV_HEADER
    assert len(rows) == sum(len(entry.lines) for entry in entries)
    assert rows[0] == {
        "entry_id": str(entries[0].entry_id),
        "posted_at": "2024-03-01T12:00:00Z",
        "period": "2024-03",
        "cause_type": "test.event.v1",
        "cause_id": "r1",
        "currency": "USD",
        "account": "inventory",
        "debit": "20.00",
        "credit": "0.00",
        "sku": "A",
        "order_id": "",
        "note": "",
    }
    assert sum(Decimal(r["debit"]) for r in rows) == sum(Decimal(r["credit"]) for r in rows)


def test_json_lines_feed_round_trips(book) -> None:
    entries, _ = book
    lines = list(journal_jsonl(entries))
    assert all(line.endswith("\n") and "\n" not in line[:-1] for line in lines)
    assert [JournalEntry.from_dict(json.loads(line)) for line in lines] == entries
