"""`Books`: what one transaction's working set posts for the order and fulfilment events."""

from datetime import UTC, datetime
from decimal import Decimal

from stockflow.accounting.domain import Account, Cause, Money, PeriodCalendar
from stockflow.accounting.domain.books import Books
from stockflow.contracts.events import OrderConfirmed

CONFIRMED_AT = datetime(2026, 3, 14, 9, 30, tzinfo=UTC)


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
    assert credits == [(Account.REVENUE, "EBOOK", Money.of(Decimal("15.00"), "USD"))]
    assert debits == [(Account.CLEARING, "o-1", Money.of(Decimal("15.00"), "USD"))]


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
