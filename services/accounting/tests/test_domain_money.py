from decimal import Decimal

import pytest

from stockflow.accounting.domain import (
    AccountingError,
    CurrencyMismatch,
    Money,
    minor_units,
    prorate,
    total,
)


@pytest.mark.parametrize(("currency", "digits"), [("JPY", 0), ("USD", 2), ("EUR", 2), ("KWD", 3)])
def test_minor_units_follow_iso_4217(currency: str, digits: int) -> None:
    assert minor_units(currency) == digits


def test_unknown_currency_is_refused() -> None:
    with pytest.raises(AccountingError, match="unknown"):
        Money.zero("XYZ")


@pytest.mark.parametrize(
    ("amount", "currency", "rounded"),
    [
        ("2.345", "USD", "2.34"),  # half-even: tie goes to the even cent
        ("2.355", "USD", "2.36"),
        ("2.3451", "USD", "2.35"),
        ("1234.5", "JPY", "1234"),
        ("1235.5", "JPY", "1236"),
        ("1.23450", "KWD", "1.234"),
        ("-2.345", "USD", "-2.34"),
    ],
)
def test_of_rounds_half_even_to_minor_units(amount: str, currency: str, rounded: str) -> None:
    assert str(Money.of(Decimal(amount), currency)) == rounded


def test_constructor_refuses_sub_minor_unit_amounts() -> None:
    with pytest.raises(AccountingError, match="more decimals"):
        Money(Decimal("1.005"), "USD")
    with pytest.raises(AccountingError, match="more decimals"):
        Money(Decimal("1.5"), "JPY")


def test_one_spelling_per_value() -> None:
    assert str(Money(Decimal("5"), "USD")) == "5.00"
    assert str(Money(Decimal("-0.00"), "USD")) == "0.00"
    assert str(Money(Decimal("7"), "KWD")) == "7.000"
    assert Money(Decimal("5"), "USD") == Money(Decimal("5.00"), "USD")


@pytest.mark.parametrize("bad", [1.1, "1.10", True])
def test_of_refuses_floats_strings_and_bools(bad: object) -> None:
    with pytest.raises(AccountingError):
        Money.of(bad, "USD")  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["abc", "NaN", "Infinity", "1.001"])
def test_parse_refuses_what_is_not_an_exact_amount(bad: str) -> None:
    with pytest.raises(AccountingError):
        Money.parse(bad, "USD")


def test_arithmetic_stays_in_one_currency() -> None:
    a, b = Money.parse("1.10", "EUR"), Money.parse("2.25", "EUR")
    assert a + b == Money.parse("3.35", "EUR")
    assert a - b == Money.parse("-1.15", "EUR")
    assert -a == Money.parse("-1.10", "EUR")
    with pytest.raises(CurrencyMismatch):
        a + Money.parse("1.10", "USD")
    with pytest.raises(CurrencyMismatch):
        total([a, Money.parse("1", "USD")], "EUR")
    assert total([], "EUR") == Money.zero("EUR")


def test_prorated_shares_of_the_remainder_add_up_to_the_whole() -> None:
    amount = Money.parse("10.00", "USD")
    remaining, units_left, shares = amount, 3, []
    for _ in range(3):
        share = prorate(remaining, 1, units_left)
        shares.append(share)
        remaining, units_left = remaining - share, units_left - 1
    assert [str(s) for s in shares] == ["3.33", "3.34", "3.33"]
    assert total(shares, "USD") == amount


def test_prorate_refuses_impossible_shares() -> None:
    with pytest.raises(AccountingError):
        prorate(Money.parse("1", "USD"), 2, 1)
    with pytest.raises(AccountingError):
        prorate(Money.parse("1", "USD"), 0, 0)
