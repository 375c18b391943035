"""`Books`: what one transaction's working set posts for order and fulfilment events."""

from datetime import UTC, datetime
from decimal import Decimal

from stockflow.accounting.domain import Account, Cause, Money, PeriodCalendar
from stockflow.accounting.domain.books import Books
from stockflow.contracts.events import OrderConfirmed, ShipmentShipped

CONFIRMED_AT = datetime(2026, 3, 14, 9, 30, tzinfo=UTC)


def usd(amount: str) -> Money:
    return Money.of(Decimal(amount), "USD")


def confirmed(*lines: tuple[str, str, int, str, bool]) -> OrderConfirmed:
    return OrderConfirmed.model_validate(
        {
            "order_id": "o-1",
            "currency": "USD",
            "confirmed_at": CONFIRMED_AT,
            "shipping_address": {
                "name": "Ada Lovelace",
                "line1": "12 Analytical Row",
                "city": "London",
                "postal_code": "N1 9GU",
                "country": "GB",
            },
            "lines": [
                {
                    "line_id": line_id,
                    "sku": sku,
                    "quantity": quantity,
                    "reserved": quantity,
                    "backordered": 0,
                    "unit_price": price,
                    "untracked": untracked,
                    "allocations": []
                    if untracked
                    else [{"location": "WH-EAST", "quantity": quantity}],
                }
                for line_id, sku, quantity, price, untracked in lines
            ],
        }
    )


def test_untracked_lines_post_their_revenue_when_the_order_is_confirmed() -> None:
    books = Books(PeriodCalendar())
    event = confirmed(("L1", "BOOK", 1, "20.00", False), ("L2", "EBOOK", 2, "7.50", True))

    books.take_delivered_untracked(Cause("order.confirmed.v1", "e-1"), event)

    [entry] = books.entries
    assert entry.posted_at == CONFIRMED_AT
    credits = [(ln.account, ln.sku, ln.credit) for ln in entry.lines if ln.credit.amount]
    debits = [(ln.account, ln.order_id, ln.debit) for ln in entry.lines if ln.debit.amount]
    assert credits == [(Account.REVENUE, "EBOOK", usd("15.00"))]
    assert debits == [(Account.CLEARING, "o-1", usd("15.00"))]


def test_an_order_of_tracked_lines_posts_nothing_on_confirmation() -> None:
    books = Books(PeriodCalendar())

    books.take_delivered_untracked(
        Cause("order.confirmed.v1", "e-1"), confirmed(("L1", "BOOK", 3, "20.00", False))
    )

    assert books.entries == []


def test_a_free_untracked_line_posts_no_entry_of_nothing() -> None:
    books = Books(PeriodCalendar())

    books.take_delivered_untracked(
        Cause("order.confirmed.v1", "e-1"), confirmed(("L1", "GIFT", 1, "0.00", True))
    )

    assert books.entries == []


def test_a_cancel_reverses_the_revenue_its_untracked_lines_recognised_on_confirmation() -> None:
    books = Books(PeriodCalendar())
    event = confirmed(("L1", "BOOK", 1, "20.00", False), ("L2", "EBOOK", 2, "7.50", True))
    books.take_delivered_untracked(Cause("order.confirmed.v1", "e-1"), event)
    cancelled_at = datetime(2026, 3, 14, 10, 0, tzinfo=UTC)

    books.take_cancelled(Cause("order.cancelled.v1", "e-2"), "o-1", cancelled_at)
    books.take_cancelled(Cause("order.cancelled.v1", "e-3"), "o-1", cancelled_at)  # no twice

    _, reversal = books.entries
    assert reversal.posted_at == cancelled_at
    debits = [(ln.account, ln.sku, ln.debit) for ln in reversal.lines if ln.debit.amount]
    credits = [(ln.account, ln.order_id, ln.credit) for ln in reversal.lines if ln.credit.amount]
    assert debits == [(Account.REVENUE, "EBOOK", usd("15.00"))]
    assert credits == [(Account.CLEARING, "o-1", usd("15.00"))]


def test_a_cancel_of_an_order_that_recognised_no_revenue_posts_nothing() -> None:
    books = Books(PeriodCalendar())
    books.untracked_revenue["o-1"] = {"EBOOK": usd("0.00")}  # recognised, then reversed

    books.take_cancelled(Cause("order.cancelled.v1", "e-2"), "o-1", CONFIRMED_AT)
    books.take_cancelled(Cause("order.cancelled.v1", "e-3"), "o-2", CONFIRMED_AT)

    assert books.entries == []


def shipped(**fields: object) -> ShipmentShipped:
    return ShipmentShipped.model_validate(
        {
            "shipment_id": "s-1",
            "order_id": "o-1",
            "location": "WH-EAST",
            "lines": [{"line_id": "L1", "sku": "BOOK", "quantity": 1, "unit_price": "20.00"}],
            "currency": "USD",
            "carrier": "stockflow-post",
            "service_level": "standard",
            "tracking_number": "RR123456785GB",
            "label_ref": "/shipments/s-1/label",
            "shipped_at": CONFIRMED_AT,
        }
        | fields
    )


def test_a_shipment_posts_its_label_rate_as_the_orders_shipping_expense() -> None:
    books = Books(PeriodCalendar())

    books.take_shipped(
        Cause("fulfillment.shipment.shipped.v1", "e-2"),
        shipped(shipping_cost="5.75", shipping_currency="USD"),
    )

    shipping, revenue = books.entries
    assert [(ln.account, ln.order_id, ln.debit, ln.credit) for ln in shipping.lines] == [
        (Account.SHIPPING_EXPENSE, "o-1", usd("5.75"), usd("0")),
        (Account.CARRIER_PAYABLE, None, usd("0"), usd("5.75")),
    ]
    assert Account.REVENUE in {ln.account for ln in revenue.lines}


def test_a_shipment_without_a_known_rate_posts_only_its_revenue() -> None:
    books = Books(PeriodCalendar())

    books.take_shipped(Cause("fulfillment.shipment.shipped.v1", "e-2"), shipped())

    [revenue] = books.entries
    assert Account.SHIPPING_EXPENSE not in {ln.account for ln in revenue.lines}
