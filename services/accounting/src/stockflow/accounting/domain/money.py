"""Money: a Decimal amount in one ISO 4217 currency, always a whole number of minor units."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

from stockflow.accounting.domain.errors import AccountingError, CurrencyMismatch
from stockflow.contracts.currencies import MINOR_UNITS

# Banker's rounding: ties go to the even digit, so thousands of rounded price lines and prorated
# issues do not drift upwards in total as they would with ROUND_HALF_UP. It never leaks value out
# of the books either way: see `prorate`.
ROUNDING = ROUND_HALF_EVEN


def minor_units(currency: str) -> int:
    """Digits after the decimal point for an ISO 4217 code (JPY 0, USD 2, KWD 3)."""
    try:
        return MINOR_UNITS[currency]
    except KeyError:
        raise AccountingError(f"unknown ISO 4217 currency {currency!r}") from None


def _quantum(currency: str) -> Decimal:
    return Decimal(1).scaleb(-minor_units(currency))


@dataclass(frozen=True, slots=True)
class Money:
    """An amount in one currency. The constructor refuses sub-minor-unit amounts; `of` rounds."""

    amount: Decimal
    currency: str

    def __post_init__(self) -> None:
        if not isinstance(self.amount, Decimal) or not self.amount.is_finite():
            raise AccountingError(f"money must be a finite Decimal, not {self.amount!r}")
        exact = self.amount.quantize(_quantum(self.currency))
        if exact != self.amount:
            raise AccountingError(
                f"{self.amount} has more decimals than {self.currency} allows; use Money.of"
            )
        # One spelling per value ("5" -> "5.00", "-0.00" -> "0.00") keeps the wire format stable.
        object.__setattr__(self, "amount", abs(exact) if exact.is_zero() else exact)

    @classmethod
    def of(cls, amount: Decimal | int, currency: str) -> Money:
        """`amount` rounded half-even to the currency's minor units."""
        if not isinstance(amount, Decimal | int) or isinstance(amount, bool):
            raise AccountingError(f"money comes from Decimal or int, not {type(amount).__name__}")
        return cls(Decimal(amount).quantize(_quantum(currency), rounding=ROUNDING), currency)

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(Decimal(0), currency)

    @classmethod
    def parse(cls, text: str, currency: str) -> Money:
        """A decimal string from the wire or the store; refused if not exact in the currency."""
        try:
            amount = Decimal(text)
        except InvalidOperation:
            raise AccountingError(f"not a decimal amount: {text!r}") from None
        return cls(amount, currency)

    def __add__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(self.amount - other.amount, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount, self.currency)

    def __str__(self) -> str:
        return format(self.amount, "f")

    def _same_currency(self, other: Money) -> None:
        if other.currency != self.currency:
            raise CurrencyMismatch(f"{self.currency} and {other.currency} do not add up")


def total(amounts: Iterable[Money], currency: str) -> Money:
    """Sum of amounts in `currency` (zero when empty); a foreign amount raises CurrencyMismatch."""
    result = Money.zero(currency)
    for amount in amounts:
        result += amount
    return result


def prorate(amount: Money, part: int, whole: int) -> Money:
    """The share part/whole of amount, rounded; the whole share is exactly the amount.

    Taking successive shares of what is left (left value, left units) therefore adds up to the
    original amount to the minor unit: the last share absorbs every rounding difference.
    """
    if whole <= 0 or not 0 <= part <= whole:
        raise AccountingError(f"cannot take {part} of {whole}")
    if part == whole:
        return amount
    return Money.of(amount.amount * part / whole, amount.currency)
