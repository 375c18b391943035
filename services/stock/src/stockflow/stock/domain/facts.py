"""Business facts applied once per business key: a receipt per `receipt_id`, a return per RMA
line (`rma_id` and `line_id`), a cycle count per `count_id`.

The same fact delivered again under a new event id (a WMS retry, an HTTP call repeated without
an Idempotency-Key) says the same thing: it changes nothing and gets the first answer. The same
key saying something else is a conflict: refused with the fields that differ, never applied and
never silently dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

Said = Mapping[str, str | int]
"""What a fact says, as JSON scalars (money as `canonical_money` strings)."""


class FactKind(StrEnum):
    RECEIPT = "receipt"
    RETURN_LINE = "return_line"
    COUNT = "count"


# The input field that carries each kind's business key: refusals name it.
KEY_FIELDS: Mapping[FactKind, str] = {
    FactKind.RECEIPT: "receipt_id",
    FactKind.RETURN_LINE: "rma_id",
    FactKind.COUNT: "count_id",
}


@dataclass(frozen=True)
class Fact:
    """A business fact: its kind, its business key and what it says."""

    kind: FactKind
    key: str
    says: Said


def canonical_money(amount: Decimal) -> str:
    """One spelling per amount ("2.50" and "2.5" are the same unit cost)."""
    return format(amount.normalize(), "f")


def conflict_with(first: Said, again: Fact) -> str | None:
    """None when `again` says what its key first said; else why it is refused.

    The reason starts with the field that carries the key, then names every field that differs.
    """
    differing = sorted(
        name for name in first.keys() | again.says.keys() if first.get(name) != again.says.get(name)
    )
    if not differing:
        return None
    changes = "; ".join(
        f"{name} {first.get(name)!r} then, {again.says.get(name)!r} now" for name in differing
    )
    return (
        f"{KEY_FIELDS[again.kind]}: {again.kind} {again.key} was already applied with other "
        f"values ({changes}); a business key names one fact"
    )
