"""Field types shared by every event: strict where a sloppy producer would do harm."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BeforeValidator,
    Field,
    PlainSerializer,
    StringConstraints,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

from stockflow.contracts.currencies import MINOR_UNITS

MAX_QUANTITY = 1_000_000
MONEY_PATTERN = r"^-?\d{1,13}(\.\d{1,6})?$"
_MONEY = re.compile(MONEY_PATTERN)
RFC3339_PATTERN = r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
_RFC3339 = re.compile(RFC3339_PATTERN)


def _money_from_string(value: object) -> Decimal:
    # Money travels as a decimal string; a float would already have lost cents.
    # The wire form must match MONEY_PATTERN (the exported schema says so): no exponent, no
    # blanks, no underscores, at most 13 integer and 6 fractional digits.
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError("money must be finite")
        if not _MONEY.match(format(value, "f")):
            raise ValueError("money needs at most 13 integer and 6 fractional digits (quantize it)")
        return value
    if not isinstance(value, str):
        raise ValueError('money must be a decimal string such as "12.50"')
    if not _MONEY.match(value):
        raise ValueError(f'not a decimal string such as "12.50": {value[:40]!r}')
    try:
        return Decimal(value)
    except InvalidOperation as exc:  # pragma: no cover - the pattern already guarantees it
        raise ValueError(f"not a decimal number: {value[:40]!r}") from exc


def _check_currency(code: str) -> str:
    # The table of known codes subsumes the pattern; one message names both mistakes.
    if code not in MINOR_UNITS:
        raise PydanticCustomError(
            "currency", "unknown ISO 4217 currency {code}", {"code": repr(code)[:40]}
        )
    return code


def _refuse_epoch_numbers(value: object) -> object:
    if isinstance(value, int | float):
        raise ValueError("time must be an RFC 3339 string with an offset, not a number")
    # pydantic alone would also take "1700000000" (epoch seconds) and "2024-01-01T10:00Z".
    if isinstance(value, str) and not _RFC3339.match(value):
        raise ValueError(
            "time must be RFC 3339 with seconds and an offset, e.g. 2024-05-01T12:00:00Z"
        )
    return value


def _as_utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


Quantity = Annotated[int, Field(strict=True, gt=0, le=MAX_QUANTITY)]
"""A positive whole number of units; "5" or 5.0 are refused."""

NonNegativeQuantity = Annotated[int, Field(strict=True, ge=0, le=MAX_QUANTITY)]
SignedQuantity = Annotated[int, Field(strict=True, ge=-MAX_QUANTITY, le=MAX_QUANTITY)]
StockCount = Annotated[int, Field(strict=True)]
"""A level figure (on hand, reserved, ...): unbounded but strictly an integer."""

Money = Annotated[
    Decimal,
    BeforeValidator(_money_from_string),
    PlainSerializer(lambda amount: format(amount, "f"), return_type=str),
    WithJsonSchema({"type": "string", "pattern": MONEY_PATTERN, "examples": ["12.50"]}),
]
"""A decimal amount written as a string ("12.50"); always paired with a currency."""

Currency = Annotated[
    str,
    AfterValidator(_check_currency),
    WithJsonSchema({"type": "string", "pattern": r"^[A-Z]{3}$", "examples": ["EUR"]}),
]
"""An ISO 4217 code of the table in `currencies` ("EUR")."""
Timestamp = Annotated[
    AwareDatetime,
    BeforeValidator(_refuse_epoch_numbers),
    AfterValidator(_as_utc),
    PlainSerializer(_rfc3339, return_type=str),
]
"""An RFC 3339 time with an offset; normalised to UTC."""

Identifier = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@/-]*$")
]
Sku = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
LocationCode = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$")]
ShortText = Annotated[str, StringConstraints(max_length=200)]
LongText = Annotated[str, StringConstraints(max_length=2000)]


def _not_negative(amount: Decimal) -> Decimal:
    if amount < 0:
        raise ValueError("amount must not be negative")
    return amount


NON_NEGATIVE_DECIMAL_PATTERN = r"^\d{1,13}(\.\d{1,6})?$"

NonNegativeMoney = Annotated[
    Decimal,
    BeforeValidator(_money_from_string),
    AfterValidator(_not_negative),
    PlainSerializer(lambda amount: format(amount, "f"), return_type=str),
    WithJsonSchema(
        {"type": "string", "pattern": NON_NEGATIVE_DECIMAL_PATTERN, "examples": ["12.50"]}
    ),
]
"""A price or cost: Money that is never negative."""

DecimalString = Annotated[
    Decimal,
    BeforeValidator(_money_from_string),
    AfterValidator(_not_negative),
    PlainSerializer(lambda amount: format(amount, "f"), return_type=str),
    WithJsonSchema(
        {"type": "string", "pattern": NON_NEGATIVE_DECIMAL_PATTERN, "examples": ["1.5"]}
    ),
]
"""A non-negative decimal that is not money (a rate, a ratio), written as a string ("1.25")."""
