"""Reports: pure functions over journal entries and valuations.

Every figure is per currency; nothing is summed across currencies, as the books hold no rates.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from stockflow.accounting.domain.journal import (
    Account,
    JournalEntry,
    JournalLine,
    rfc3339,
)
from stockflow.accounting.domain.money import Money
from stockflow.accounting.domain.valuation import CostMethod, SkuValuation

_ACCOUNT_ORDER = {account: position for position, account in enumerate(Account)}


@dataclass(frozen=True, slots=True)
class TrialBalanceRow:
    currency: str
    account: Account
    debit: Money
    credit: Money

    @property
    def balance(self) -> Money:
        """Net balance on the account's normal side (positive is the usual state)."""
        return self.account.balance(self.debit - self.credit)


def trial_balance(entries: Iterable[JournalEntry]) -> list[TrialBalanceRow]:
    """Total debits and credits per (currency, account); per currency they net to zero."""
    totals: dict[tuple[str, Account], tuple[Money, Money]] = {}
    for entry in entries:
        for line in entry.lines:
            key = (entry.currency, line.account)
            debit, credit = totals.get(key, (Money.zero(entry.currency),) * 2)
            totals[key] = (debit + line.debit, credit + line.credit)
    return [
        TrialBalanceRow(currency, account, debit, credit)
        for (currency, account), (debit, credit) in sorted(
            totals.items(), key=lambda item: (item[0][0], _ACCOUNT_ORDER[item[0][1]])
        )
    ]


@dataclass(frozen=True, slots=True)
class InventoryValue:
    sku: str
    method: CostMethod
    quantity: int
    value: Money


def inventory_valuation(valuations: Iterable[SkuValuation]) -> list[InventoryValue]:
    """Units on hand and their value per SKU now: the sum of the open cost layers."""
    return sorted(
        (InventoryValue(v.sku, v.method, v.quantity, v.value) for v in valuations),
        key=lambda row: row.sku,
    )


def inventory_value_as_of(entries: Iterable[JournalEntry], as_of: datetime) -> dict[str, Money]:
    """Inventory value per SKU at `as_of` (inclusive), from the inventory account.

    Posting keeps the inventory account equal to the open layers, so this is the layers' value
    as it stood at that moment, without keeping every past state of every layer.
    """
    values: dict[str, Money] = {}
    for entry in entries:
        if entry.posted_at > as_of:
            continue
        for line in entry.lines:
            if line.account is Account.INVENTORY and line.sku is not None:
                values[line.sku] = values.get(line.sku, Money.zero(entry.currency)) + line.net_debit
    return dict(sorted(values.items()))


@dataclass(frozen=True, slots=True)
class ProfitRow:
    """Revenue and cost of one group (SKU, period or order) in one currency."""

    group: str
    currency: str
    revenue: Money
    sales_returns: Money
    cost_of_goods_sold: Money
    shrinkage: Money
    shipping: Money

    @property
    def net_revenue(self) -> Money:
        return self.revenue - self.sales_returns

    @property
    def gross_margin(self) -> Money:
        return self.net_revenue - self.cost_of_goods_sold

    @property
    def profit(self) -> Money:
        """Gross margin less shrinkage (per order: the cost of its written-off returns) and less
        what its labels cost (shipping carries no SKU, so a SKU's row has none)."""
        return self.gross_margin - self.shrinkage - self.shipping


Grouping = Literal["sku", "period", "order"]

_GROUP_KEY: dict[Grouping, Callable[[JournalEntry, JournalLine], str | None]] = {
    "sku": lambda entry, line: line.sku,
    "period": lambda entry, line: entry.period,
    "order": lambda entry, line: line.order_id,
}


_PROFIT_ACCOUNTS = frozenset(
    {
        Account.REVENUE,
        Account.SALES_RETURNS,
        Account.COST_OF_GOODS_SOLD,
        Account.INVENTORY_SHRINKAGE,
        Account.SHIPPING_EXPENSE,
    }
)


def profitability(entries: Iterable[JournalEntry], by: Grouping) -> list[ProfitRow]:
    """Revenue, returns, COGS, gross margin, shipping and profit per SKU, period or order.

    Lines without the grouping key (the order-level clearing line, a warehouse write-off when
    grouping by order) do not count towards any group.
    """
    group_key = _GROUP_KEY[by]
    net_debits: dict[tuple[str, str], dict[Account, Money]] = {}
    for entry in entries:
        for line in entry.lines:
            group = group_key(entry, line)
            if group is None or line.account not in _PROFIT_ACCOUNTS:
                continue
            sums = net_debits.setdefault((group, entry.currency), {})
            sums[line.account] = sums.get(line.account, Money.zero(entry.currency)) + line.net_debit
    return [
        ProfitRow(
            group,
            currency,
            revenue=_balance(sums, Account.REVENUE, currency),
            sales_returns=_balance(sums, Account.SALES_RETURNS, currency),
            cost_of_goods_sold=_balance(sums, Account.COST_OF_GOODS_SOLD, currency),
            shrinkage=_balance(sums, Account.INVENTORY_SHRINKAGE, currency),
            shipping=_balance(sums, Account.SHIPPING_EXPENSE, currency),
        )
        for (group, currency), sums in sorted(net_debits.items())
    ]


def _balance(net_debits: dict[Account, Money], account: Account, currency: str) -> Money:
    return account.balance(net_debits.get(account, Money.zero(currency)))


@dataclass(frozen=True)
class JournalFilter:
    """Which entries a journal read wants: posted in [since, until) and `period`, with this cause,
    and (account, sku, order_id) matched by any one of the entry's lines. None matches anything."""

    since: datetime | None = None
    until: datetime | None = None
    period: str | None = None
    cause_type: str | None = None
    account: Account | None = None
    sku: str | None = None
    order_id: str | None = None

    def matches(self, entry: JournalEntry) -> bool:
        return (
            (self.since is None or entry.posted_at >= self.since)
            and (self.until is None or entry.posted_at < self.until)
            and (self.period is None or entry.period == self.period)
            and (self.cause_type is None or entry.cause.type == self.cause_type)
            and any(self._line_matches(line) for line in entry.lines)
        )

    def _line_matches(self, line: JournalLine) -> bool:
        return (
            (self.account is None or line.account is self.account)
            and (self.sku is None or line.sku == self.sku)
            and (self.order_id is None or line.order_id == self.order_id)
        )


def filter_journal(entries: Iterable[JournalEntry], where: JournalFilter) -> list[JournalEntry]:
    """The entries `where` matches, in their order."""
    return [entry for entry in entries if where.matches(entry)]


JOURNAL_CSV_HEADER = (
    "entry_id",
    "posted_at",
    "period",
    "cause_type",
    "cause_id",
    "currency",
    "account",
    "debit",
    "credit",
    "sku",
    "order_id",
    "note",
)


def journal_csv(entries: Iterable[JournalEntry], *, header: bool = True) -> Iterator[str]:
    """The journal as CSV text, streamed: the header, then one row per line (RFC 4180).

    `header=False` continues an export page by page."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def flush() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    if header:
        writer.writerow(JOURNAL_CSV_HEADER)
        yield flush()
    for entry in entries:
        for line in entry.lines:
            writer.writerow(
                (
                    entry.entry_id,
                    rfc3339(entry.posted_at),
                    entry.period,
                    entry.cause.type,
                    entry.cause.id,
                    entry.currency,
                    line.account.value,
                    line.debit,
                    line.credit,
                    line.sku or "",
                    line.order_id or "",
                    entry.note or "",
                )
            )
            yield flush()


def journal_jsonl(entries: Iterable[JournalEntry]) -> Iterator[str]:
    """The journal as JSON lines, one `accounting.entry.posted.v1` payload per line."""
    for entry in entries:
        yield json.dumps(entry.to_dict(), separators=(",", ":")) + "\n"
