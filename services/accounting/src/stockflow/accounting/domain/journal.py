"""The chart of accounts and the journal entry, which refuses anything but balanced double entry."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from stockflow.accounting.domain.errors import CurrencyMismatch, InvalidEntry
from stockflow.accounting.domain.money import Money, minor_units, total


class Side(StrEnum):
    DEBIT = "debit"
    CREDIT = "credit"


class Account(StrEnum):
    """The chart of accounts; the value is the name on the wire and in the store."""

    INVENTORY = "inventory"
    GOODS_RECEIVED_NOT_INVOICED = "goods_received_not_invoiced"
    COST_OF_GOODS_SOLD = "cost_of_goods_sold"
    REVENUE = "revenue"
    SALES_RETURNS = "sales_returns"
    INVENTORY_SHRINKAGE = "inventory_shrinkage"
    CLEARING = "clearing"
    SHIPPING_EXPENSE = "shipping_expense"
    CARRIER_PAYABLE = "carrier_payable"

    @property
    def normal_balance(self) -> Side:
        """The side on which the account grows: assets and expenses debit, the rest credit."""
        return _NORMAL_BALANCE[self]

    def balance(self, net_debit: Money) -> Money:
        """A net debit restated on this account's normal side: positive in the usual state."""
        return net_debit if self.normal_balance is Side.DEBIT else -net_debit


_NORMAL_BALANCE = {
    Account.INVENTORY: Side.DEBIT,  # asset
    Account.GOODS_RECEIVED_NOT_INVOICED: Side.CREDIT,  # liability until the supplier invoices
    Account.COST_OF_GOODS_SOLD: Side.DEBIT,  # expense
    Account.REVENUE: Side.CREDIT,  # income
    Account.SALES_RETURNS: Side.DEBIT,  # contra-revenue
    Account.INVENTORY_SHRINKAGE: Side.DEBIT,  # expense
    Account.CLEARING: Side.DEBIT,  # receivable from the customer / payment provider
    Account.SHIPPING_EXPENSE: Side.DEBIT,  # expense: the labels bought for an order
    Account.CARRIER_PAYABLE: Side.CREDIT,  # liability until the carrier invoices
}


def period_of(moment: datetime) -> str:
    """The accounting period "YYYY-MM" (UTC) a moment falls into."""
    return f"{moment.astimezone(UTC):%Y-%m}"


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Cause:
    """The event an entry answers to: its CloudEvents type and id."""

    type: str
    id: str

    def __post_init__(self) -> None:
        if not self.type or not self.id:
            raise InvalidEntry("an entry's cause needs an event type and an event id")


@dataclass(frozen=True, slots=True)
class JournalLine:
    """One account touched by an entry: a debit or a credit (the other side is zero)."""

    account: Account
    debit: Money
    credit: Money
    sku: str | None = None
    order_id: str | None = None

    def __post_init__(self) -> None:
        if self.debit.currency != self.credit.currency:
            raise CurrencyMismatch(
                f"line debits {self.debit.currency}, credits {self.credit.currency}"
            )
        if self.debit.amount < 0 or self.credit.amount < 0:
            raise InvalidEntry(f"negative amount on {self.account}: post the other side instead")
        if self.debit.amount and self.credit.amount:
            raise InvalidEntry(f"line on {self.account} has both a debit and a credit")

    @classmethod
    def dr(
        cls, account: Account, amount: Money, *, sku: str | None = None, order_id: str | None = None
    ) -> JournalLine:
        """A debit line."""
        return cls(account, amount, Money.zero(amount.currency), sku, order_id)

    @classmethod
    def cr(
        cls, account: Account, amount: Money, *, sku: str | None = None, order_id: str | None = None
    ) -> JournalLine:
        """A credit line."""
        return cls(account, Money.zero(amount.currency), amount, sku, order_id)

    @property
    def currency(self) -> str:
        return self.debit.currency

    @property
    def net_debit(self) -> Money:
        """Debit minus credit: positive for a debit line, negative for a credit line."""
        return self.debit - self.credit


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """A balanced set of lines in one currency, posted at one moment for one cause.

    The constructor refuses fewer than two lines, lines in another currency, and debits that
    differ from credits; each line refuses negatives and two-sided amounts. So an entry that
    exists is a valid entry, whether built by a posting rule or read back from the store.
    """

    entry_id: UUID
    posted_at: datetime
    cause: Cause
    currency: str
    lines: tuple[JournalLine, ...]
    note: str | None = None

    def __post_init__(self) -> None:
        if self.posted_at.tzinfo is None:
            raise InvalidEntry("posted_at needs a time zone; the books keep UTC")
        object.__setattr__(self, "posted_at", self.posted_at.astimezone(UTC))
        object.__setattr__(self, "lines", tuple(self.lines))
        minor_units(self.currency)
        if len(self.lines) < 2:
            raise InvalidEntry("double entry needs at least two lines")
        foreign = {line.currency for line in self.lines} - {self.currency}
        if foreign:
            raise CurrencyMismatch(f"{self.currency} entry has lines in {sorted(foreign)}")
        debits = total((line.debit for line in self.lines), self.currency)
        credits = total((line.credit for line in self.lines), self.currency)
        if debits != credits:
            raise InvalidEntry(f"unbalanced entry: debits {debits} != credits {credits}")

    @property
    def period(self) -> str:
        return period_of(self.posted_at)

    @property
    def amount(self) -> Money:
        """The entry's size: its total debits (equal to its total credits)."""
        return total((line.debit for line in self.lines), self.currency)

    def to_dict(self) -> dict[str, Any]:
        """The `accounting.entry.posted.v1` payload: decimal strings, RFC 3339 UTC time."""
        data: dict[str, Any] = {
            "entry_id": str(self.entry_id),
            "posted_at": rfc3339(self.posted_at),
            "period": self.period,
            "cause": {"type": self.cause.type, "id": self.cause.id},
            "currency": self.currency,
            "lines": [_line_to_dict(line) for line in self.lines],
        }
        if self.note is not None:
            data["note"] = self.note
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JournalEntry:
        """Inverse of `to_dict`; re-validates everything, so a tampered row is refused."""
        currency = data["currency"]
        entry = cls(
            entry_id=UUID(data["entry_id"]),
            posted_at=datetime.fromisoformat(data["posted_at"]),
            cause=Cause(data["cause"]["type"], data["cause"]["id"]),
            currency=currency,
            lines=tuple(_line_from_dict(line, currency) for line in data["lines"]),
            note=data.get("note"),
        )
        if data.get("period", entry.period) != entry.period:
            raise InvalidEntry(
                f"period {data['period']} does not match posted_at {entry.posted_at}"
            )
        return entry


def _line_to_dict(line: JournalLine) -> dict[str, Any]:
    data: dict[str, Any] = {
        "account": line.account.value,
        "debit": str(line.debit),
        "credit": str(line.credit),
    }
    if line.sku is not None:
        data["sku"] = line.sku
    if line.order_id is not None:
        data["order_id"] = line.order_id
    return data


def _line_from_dict(data: Mapping[str, Any], currency: str) -> JournalLine:
    return JournalLine(
        account=Account(data["account"]),
        debit=Money.parse(data["debit"], currency),
        credit=Money.parse(data["credit"], currency),
        sku=data.get("sku"),
        order_id=data.get("order_id"),
    )
