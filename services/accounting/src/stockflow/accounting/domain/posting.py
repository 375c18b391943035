"""Posting rules: each business event becomes one balanced journal entry, a pure function of it.

| rule                      | debit                 | credit               | amount            |
| ------------------------- | --------------------- | -------------------- | ----------------- |
| post_receipt              | inventory             | goods rec. not inv.  | receipt cost      |
| post_shipment_cost        | cost of goods sold    | inventory            | valuation cost    |
| post_revenue              | clearing              | revenue (per line)   | unit price x qty  |
| post_revenue_reversal     | revenue (per sku)     | clearing             | revenue recognised|
| post_refund               | sales returns         | clearing             | refunded price    |
| post_return_restocked     | inventory             | cost of goods sold   | original cost     |
| post_return_written_off   | inventory shrinkage   | cost of goods sold   | original cost     |
| post_adjustment (up)      | inventory             | inventory shrinkage  | value found       |
| post_adjustment (down)    | inventory shrinkage   | inventory            | value lost        |
| post_shipping_cost        | shipping expense      | carrier payable      | the label's rate  |

Cost and price legs are separate entries because they come from separate events (a stock
movement, keyed by SKU, versus an order or fulfilment event) and may be in separate currencies.
A written-off return never re-enters inventory: its cost moves from COGS (the sale is undone)
to shrinkage (the goods are lost), so inventory keeps equalling the open cost layers.
A transfer between locations posts nothing: valuation is per SKU, so neither quantity nor
value changes, and a zero-value memo would only add noise to the ledger an ERP imports.

An entry's id is a UUID5 of its cause, its rule and its subject (SKU or order), so replaying an
event rebuilds the same id and the store can refuse the duplicate. Entries come out dated at
the event; pass them through `PeriodCalendar.place` before storing them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from uuid import NAMESPACE_URL, UUID, uuid5

from stockflow.accounting.domain.errors import AccountingError
from stockflow.accounting.domain.journal import Account, Cause, JournalEntry, JournalLine
from stockflow.accounting.domain.money import Money, total

_ENTRY_ID_NAMESPACE = uuid5(NAMESPACE_URL, "urn:stockflow:accounting:journal-entry")

dr = JournalLine.dr
cr = JournalLine.cr


@dataclass(frozen=True, slots=True)
class SoldLine:
    """An order line as shipped: what revenue is recognised on."""

    sku: str
    quantity: int
    unit_price: Decimal

    def __post_init__(self) -> None:
        if type(self.quantity) is not int or self.quantity <= 0:
            raise AccountingError(f"{self.sku}: shipped quantity must be positive")


def _entry_id(cause: Cause, rule: str, subject: str) -> UUID:
    """The deterministic id of the entry `rule` posts for `cause` about `subject`."""
    # JSON keeps the parts apart even when an id contains a separator character.
    return uuid5(_ENTRY_ID_NAMESPACE, json.dumps([cause.type, cause.id, rule, subject]))


def _entry(
    cause: Cause, rule: str, subject: str, occurred_at: datetime, lines: list[JournalLine]
) -> JournalEntry:
    return JournalEntry(
        entry_id=_entry_id(cause, rule, subject),
        posted_at=occurred_at,
        cause=cause,
        currency=lines[0].currency,
        lines=tuple(lines),
    )


def post_receipt(cause: Cause, occurred_at: datetime, sku: str, cost: Money) -> JournalEntry:
    """Goods received: Dr inventory / Cr goods received not invoiced, at receipt cost."""
    return _entry(
        cause,
        "receipt",
        sku,
        occurred_at,
        [
            dr(Account.INVENTORY, cost, sku=sku),
            cr(Account.GOODS_RECEIVED_NOT_INVOICED, cost, sku=sku),
        ],
    )


def post_shipment_cost(
    cause: Cause,
    occurred_at: datetime,
    sku: str,
    cost: Money,
    order_id: str | None = None,
    *,
    sold_as: str | None = None,
) -> JournalEntry:
    """Goods shipped: Dr cost of goods sold / Cr inventory, at `IssuedCost.cost`.

    The cost is the SKU's that was sold (`sold_as`: the bundle a component shipped in), so
    a bundle's revenue and cost share its line of the margin; inventory is the shelf's SKU.
    """
    return _entry(
        cause,
        "shipment_cost",
        sku,
        occurred_at,
        [
            dr(Account.COST_OF_GOODS_SOLD, cost, sku=sold_as or sku, order_id=order_id),
            cr(Account.INVENTORY, cost, sku=sku, order_id=order_id),
        ],
    )


def post_revenue(
    cause: Cause, occurred_at: datetime, order_id: str, currency: str, lines: Sequence[SoldLine]
) -> JournalEntry:
    """Order lines shipped: Cr revenue per line at unit price x quantity, Dr clearing the total.

    Each line is rounded on its own, the way an invoice shows it; the debit is their sum.
    """
    if not lines:
        raise AccountingError(f"order {order_id}: revenue needs at least one shipped line")
    credits = [
        cr(
            Account.REVENUE,
            Money.of(line.unit_price * line.quantity, currency),
            sku=line.sku,
            order_id=order_id,
        )
        for line in lines
    ]
    receivable = total((line.credit for line in credits), currency)
    return _entry(
        cause,
        "revenue",
        order_id,
        occurred_at,
        [dr(Account.CLEARING, receivable, order_id=order_id), *credits],
    )


def post_revenue_reversal(
    cause: Cause, occurred_at: datetime, order_id: str, revenue: Mapping[str, Money]
) -> JournalEntry:
    """Revenue recognised for an order that was then cancelled (its untracked lines, counted
    delivered on confirmation): Dr revenue per SKU / Cr clearing, the sale undone."""
    if not revenue:
        raise AccountingError(f"order {order_id}: nothing to reverse")
    debits = [
        dr(Account.REVENUE, amount, sku=sku, order_id=order_id)
        for sku, amount in sorted(revenue.items())
    ]
    owed = total((line.debit for line in debits), debits[0].currency)
    return _entry(
        cause,
        "revenue_reversal",
        order_id,
        occurred_at,
        [*debits, cr(Account.CLEARING, owed, order_id=order_id)],
    )


def post_shipping_cost(
    cause: Cause, occurred_at: datetime, order_id: str, cost: Money
) -> JournalEntry:
    """A shipment's label: Dr shipping expense (the order's) / Cr carrier payable, at its rate."""
    return _entry(
        cause,
        "shipping",
        order_id,
        occurred_at,
        [
            dr(Account.SHIPPING_EXPENSE, cost, order_id=order_id),
            cr(Account.CARRIER_PAYABLE, cost),
        ],
    )


def post_refund(
    cause: Cause, occurred_at: datetime, order_id: str, sku: str, refund: Money
) -> JournalEntry:
    """A return refunded: Dr sales returns / Cr clearing, at the refunded price."""
    return _entry(
        cause,
        "refund",
        sku,
        occurred_at,
        [
            dr(Account.SALES_RETURNS, refund, sku=sku, order_id=order_id),
            cr(Account.CLEARING, refund, sku=sku, order_id=order_id),
        ],
    )


def post_return_restocked(
    cause: Cause, occurred_at: datetime, order_id: str, sku: str, original_cost: Money
) -> JournalEntry:
    """Returned units back on the shelf: Dr inventory / Cr cost of goods sold, at original cost."""
    return _entry(
        cause,
        "return_restocked",
        sku,
        occurred_at,
        [
            dr(Account.INVENTORY, original_cost, sku=sku, order_id=order_id),
            cr(Account.COST_OF_GOODS_SOLD, original_cost, sku=sku, order_id=order_id),
        ],
    )


def post_return_written_off(
    cause: Cause, occurred_at: datetime, order_id: str, sku: str, original_cost: Money
) -> JournalEntry:
    """Returned units unsellable: Dr inventory shrinkage / Cr cost of goods sold, original cost."""
    return _entry(
        cause,
        "return_written_off",
        sku,
        occurred_at,
        [
            dr(Account.INVENTORY_SHRINKAGE, original_cost, sku=sku, order_id=order_id),
            cr(Account.COST_OF_GOODS_SOLD, original_cost, sku=sku, order_id=order_id),
        ],
    )


def post_adjustment(
    cause: Cause, occurred_at: datetime, sku: str, value_change: Money
) -> JournalEntry:
    """A count adjustment or write-off, signed: gains Dr inventory, losses Cr inventory.

    The other side is inventory shrinkage; a write-off is an adjustment with a negative change
    (`-IssuedCost.cost`), a found unit a positive one (`SkuValuation.receive_found`).
    """
    size = Money(abs(value_change.amount), value_change.currency)
    gain = value_change.amount >= 0
    debited = Account.INVENTORY if gain else Account.INVENTORY_SHRINKAGE
    credited = Account.INVENTORY_SHRINKAGE if gain else Account.INVENTORY
    lines = [dr(debited, size, sku=sku), cr(credited, size, sku=sku)]
    return _entry(cause, "adjustment", sku, occurred_at, lines)
