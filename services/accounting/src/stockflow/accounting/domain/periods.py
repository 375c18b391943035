"""Period close: a closed month takes no postings; late events land in the first open month."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from stockflow.accounting.domain.errors import AccountingError
from stockflow.accounting.domain.journal import JournalEntry, rfc3339

_PERIOD = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


def _year_month(period: str) -> tuple[int, int]:
    match = _PERIOD.match(period)
    if match is None:
        raise AccountingError(f"a period is written YYYY-MM, not {period!r}")
    return int(match[1]), int(match[2])


def next_period(period: str) -> str:
    year, month = _year_month(period)
    return f"{year + month // 12:04d}-{month % 12 + 1:02d}"


def period_start(period: str) -> datetime:
    """The first instant of a period, UTC."""
    year, month = _year_month(period)
    return datetime(year, month, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class PeriodCalendar:
    """Which periods are closed. Immutable: `close` returns the calendar for the store to keep."""

    closed: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        object.__setattr__(self, "closed", frozenset(self.closed))
        for period in self.closed:
            _year_month(period)

    def close(self, period: str) -> PeriodCalendar:
        _year_month(period)
        return PeriodCalendar(self.closed | {period})

    def is_open(self, period: str) -> bool:
        return period not in self.closed

    def first_open_period(self, period: str) -> str:
        """`period` itself when open, otherwise the earliest open period after it."""
        while not self.is_open(period):
            period = next_period(period)
        return period

    def place(self, entry: JournalEntry) -> JournalEntry:
        """The entry as it may be posted: unchanged in an open period, else moved forward.

        A moved entry is posted at the first instant of the first open period (so its posted_at
        and period agree for any importer) and its note keeps the original date. Its id is kept:
        the id names the cause, not the period.
        """
        if self.is_open(entry.period):
            return entry
        target = self.first_open_period(entry.period)
        correction = (
            f"correction: event of {rfc3339(entry.posted_at)} falls into closed period "
            f"{entry.period}; posted to {target}"
        )
        note = f"{entry.note}; {correction}" if entry.note else correction
        return replace(entry, posted_at=period_start(target), note=note)
