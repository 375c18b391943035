from datetime import UTC, datetime, timedelta, timezone
from uuid import uuid4

import pytest

from stockflow.accounting.domain import (
    Account,
    Cause,
    CurrencyMismatch,
    InvalidEntry,
    JournalEntry,
    JournalLine,
    Money,
    Side,
    period_of,
)
from stockflow.contracts.events import JournalEntryPosted

AT = datetime(2024, 3, 15, 10, 30, tzinfo=UTC)
CAUSE = Cause("stock.movement.recorded.v1", "evt-1")


def usd(text: str) -> Money:
    return Money.parse(text, "USD")


def entry(*lines: JournalLine, currency: str = "USD") -> JournalEntry:
    return JournalEntry(uuid4(), AT, CAUSE, currency, lines)


def test_normal_balance_per_account() -> None:
    debit_normal = {a for a in Account if a.normal_balance is Side.DEBIT}
    assert debit_normal == {
        Account.INVENTORY,
        Account.COST_OF_GOODS_SOLD,
        Account.SALES_RETURNS,
        Account.INVENTORY_SHRINKAGE,
        Account.CLEARING,
        Account.SHIPPING_EXPENSE,
    }
    assert Account.REVENUE.normal_balance is Side.CREDIT
    assert Account.CARRIER_PAYABLE.normal_balance is Side.CREDIT
    assert Account.GOODS_RECEIVED_NOT_INVOICED.normal_balance is Side.CREDIT


def test_balanced_entry_is_accepted() -> None:
    posted = entry(
        JournalLine.dr(Account.INVENTORY, usd("10.00"), sku="A"),
        JournalLine.cr(Account.GOODS_RECEIVED_NOT_INVOICED, usd("10.00"), sku="A"),
    )
    assert posted.amount == usd("10.00")
    assert posted.period == "2024-03"


def test_unbalanced_entry_is_refused() -> None:
    with pytest.raises(InvalidEntry, match="unbalanced"):
        entry(
            JournalLine.dr(Account.INVENTORY, usd("10.00")),
            JournalLine.cr(Account.GOODS_RECEIVED_NOT_INVOICED, usd("9.99")),
        )


def test_single_line_entry_is_refused() -> None:
    with pytest.raises(InvalidEntry, match="two lines"):
        entry(JournalLine(Account.INVENTORY, usd("0"), usd("0")))


def test_line_with_both_debit_and_credit_is_refused() -> None:
    with pytest.raises(InvalidEntry, match="both"):
        JournalLine(Account.INVENTORY, usd("1.00"), usd("1.00"))


def test_negative_amount_is_refused() -> None:
    with pytest.raises(InvalidEntry, match="negative"):
        JournalLine.dr(Account.INVENTORY, usd("-1.00"))


def test_mixed_currencies_are_refused() -> None:
    with pytest.raises(CurrencyMismatch):
        JournalLine(Account.INVENTORY, usd("1.00"), Money.zero("EUR"))
    with pytest.raises(CurrencyMismatch):
        entry(
            JournalLine.dr(Account.INVENTORY, Money.parse("1.00", "EUR")),
            JournalLine.cr(Account.GOODS_RECEIVED_NOT_INVOICED, usd("1.00")),
        )
    with pytest.raises(CurrencyMismatch):
        entry(
            JournalLine.dr(Account.INVENTORY, usd("1.00")),
            JournalLine.cr(Account.GOODS_RECEIVED_NOT_INVOICED, usd("1.00")),
            currency="EUR",
        )


def test_naive_time_is_refused_and_aware_time_kept_in_utc() -> None:
    lines = (
        JournalLine.dr(Account.INVENTORY, usd("1.00")),
        JournalLine.cr(Account.GOODS_RECEIVED_NOT_INVOICED, usd("1.00")),
    )
    with pytest.raises(InvalidEntry, match="time zone"):
        JournalEntry(uuid4(), datetime(2024, 3, 1), CAUSE, "USD", lines)
    # 23:30 on 31 March in New York is already April in UTC: periods are UTC months.
    new_york = timezone(timedelta(hours=-4))
    late = JournalEntry(
        uuid4(), datetime(2024, 3, 31, 23, 30, tzinfo=new_york), CAUSE, "USD", lines
    )
    assert late.posted_at.tzinfo is UTC
    assert late.period == "2024-04" == period_of(late.posted_at)


def test_entry_round_trips_through_its_wire_dict() -> None:
    posted = JournalEntry(
        uuid4(),
        AT,
        CAUSE,
        "KWD",
        (
            JournalLine.dr(Account.CLEARING, Money.parse("1.250", "KWD"), order_id="o-1"),
            JournalLine.cr(Account.REVENUE, Money.parse("1.250", "KWD"), sku="A", order_id="o-1"),
        ),
        note="why",
    )
    data = posted.to_dict()
    assert data == {
        "entry_id": str(posted.entry_id),
        "posted_at": "2024-03-15T10:30:00Z",
        "period": "2024-03",
        "cause": {"type": "stock.movement.recorded.v1", "id": "evt-1"},
        "currency": "KWD",
        "lines": [
            {"account": "clearing", "debit": "1.250", "credit": "0.000", "order_id": "o-1"},
            {
                "account": "revenue",
                "debit": "0.000",
                "credit": "1.250",
                "sku": "A",
                "order_id": "o-1",
            },
        ],
        "note": "why",
    }
    assert JournalEntry.from_dict(data) == posted


def test_wire_dict_is_a_valid_published_event() -> None:
    posted = entry(
        JournalLine.dr(Account.INVENTORY, usd("1.00"), sku="A"),
        JournalLine.cr(Account.GOODS_RECEIVED_NOT_INVOICED, usd("1.00"), sku="A"),
    )
    event = JournalEntryPosted.model_validate(posted.to_dict())
    assert event.model_dump(mode="json", exclude_none=True) == posted.to_dict()


def test_from_dict_revalidates() -> None:
    data = entry(
        JournalLine.dr(Account.INVENTORY, usd("1.00")),
        JournalLine.cr(Account.GOODS_RECEIVED_NOT_INVOICED, usd("1.00")),
    ).to_dict()
    data["lines"][0]["debit"] = "2.00"
    with pytest.raises(InvalidEntry, match="unbalanced"):
        JournalEntry.from_dict(data)
    data["lines"][0]["debit"] = "1.00"
    data["period"] = "2024-02"
    with pytest.raises(InvalidEntry, match="period"):
        JournalEntry.from_dict(data)


def test_cause_needs_type_and_id() -> None:
    with pytest.raises(InvalidEntry):
        Cause("stock.movement.recorded.v1", "")


def test_line_net_debit_is_signed() -> None:
    assert JournalLine.dr(Account.INVENTORY, usd("2")).net_debit == usd("2")
    assert JournalLine.cr(Account.INVENTORY, usd("2")).net_debit == usd("-2")
    assert JournalLine.cr(Account.INVENTORY, usd("2")).debit == Money.zero("USD")
