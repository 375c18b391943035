"""`accounting.journal.v1` (key entry_id): posted double-entry journal entries."""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import Field, StringConstraints, model_validator

from stockflow.contracts.base import Event, register
from stockflow.contracts.events._shared import MAX_JOURNAL_LINES, Part, Reference
from stockflow.contracts.types import (
    Currency,
    Identifier,
    LongText,
    NonNegativeMoney,
    Sku,
    Timestamp,
)

Period = Annotated[str, StringConstraints(pattern=r"^\d{4}-(0[1-9]|1[0-2])$")]
"""An accounting period, YYYY-MM."""


class JournalLine(Part):
    """One posting: a debit or a credit to an account."""

    account: Identifier
    debit: NonNegativeMoney
    credit: NonNegativeMoney
    sku: Sku | None = None
    order_id: Identifier | None = None


@register
class JournalEntryPosted(Event):
    """A balanced journal entry was posted (debits equal credits)."""

    event_type: ClassVar[str] = "accounting.entry.posted.v1"
    topic: ClassVar[str] = "accounting.journal.v1"
    key_field: ClassVar[str] = "entry_id"

    entry_id: Identifier
    posted_at: Timestamp
    period: Period
    cause: Reference
    currency: Currency
    lines: list[JournalLine] = Field(min_length=2, max_length=MAX_JOURNAL_LINES)
    note: LongText | None = Field(
        default=None,
        description="Why the entry is where it is, e.g. moved out of a closed period.",
    )

    @model_validator(mode="after")
    def _balanced(self) -> JournalEntryPosted:
        debits = sum((line.debit for line in self.lines), start=0)
        credits = sum((line.credit for line in self.lines), start=0)
        if debits != credits:
            raise ValueError(f"debits {debits} do not equal credits {credits}")
        return self
