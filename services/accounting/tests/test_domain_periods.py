from datetime import UTC, datetime

import pytest

from stockflow.accounting.domain import (
    AccountingError,
    Cause,
    Money,
    PeriodCalendar,
    next_period,
    period_start,
    post_receipt,
)

MARCH_15 = datetime(2024, 3, 15, 10, 0, tzinfo=UTC)


def receipt(at: datetime = MARCH_15):
    return post_receipt(
        Cause("stock.movement.recorded.v1", "m-1"), at, "A", Money.parse("5", "USD")
    )


def test_period_arithmetic() -> None:
    assert next_period("2024-03") == "2024-04"
    assert next_period("2024-12") == "2025-01"
    assert period_start("2024-02") == datetime(2024, 2, 1, tzinfo=UTC)
    for bad in ("2024-13", "2024-3", "24-03", "2024-00"):
        with pytest.raises(AccountingError):
            next_period(bad)


def test_entry_in_an_open_period_is_posted_as_is() -> None:
    entry = receipt()
    assert PeriodCalendar().place(entry) is entry
    assert PeriodCalendar(frozenset({"2024-02"})).place(entry) is entry


def test_entry_dated_in_a_closed_period_moves_to_the_first_open_one_with_a_note() -> None:
    calendar = PeriodCalendar().close("2024-03").close("2024-04")
    entry = receipt()

    placed = calendar.place(entry)

    assert placed.period == "2024-05"
    assert placed.posted_at == datetime(2024, 5, 1, tzinfo=UTC)
    assert placed.note == (
        "correction: event of 2024-03-15T10:00:00Z falls into closed period 2024-03; "
        "posted to 2024-05"
    )
    assert (placed.entry_id, placed.lines, placed.cause) == (
        entry.entry_id,
        entry.lines,
        entry.cause,
    )
    assert not calendar.is_open("2024-03")
    assert calendar.first_open_period("2024-03") == "2024-05"


def test_close_returns_a_new_calendar() -> None:
    calendar = PeriodCalendar()
    closed = calendar.close("2024-03")
    assert calendar.is_open("2024-03")
    assert not closed.is_open("2024-03")
    with pytest.raises(AccountingError):
        calendar.close("March")
    with pytest.raises(AccountingError):
        PeriodCalendar(frozenset({"2024-3"}))
