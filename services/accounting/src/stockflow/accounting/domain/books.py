"""The books: apply stock movements, learn prices, post revenue and returns.

`Books` is one transaction's working set — the period calendar, the valuations of the SKUs in
play, the shipment costs and prices of the orders in play — loaded by the store, changed here
with the posting rules (no I/O), and written back by the store in the same transaction as the
inbox rows.

Cost legs follow the stock ledger (`stock.movements.v1`, key sku, so a SKU's receipts,
shipments and returns arrive in order); price legs follow order and fulfilment events (key
order_id). The two streams are not ordered against each other, so a posting that needs what the
other stream brings (a line's price, a shipment's cost) is parked and settled when it arrives.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from stockflow.accounting.domain import (
    Account,
    AccountingError,
    Cause,
    CostMethod,
    InsufficientStock,
    JournalEntry,
    Money,
    PeriodCalendar,
    SkuValuation,
    SoldLine,
    post_adjustment,
    post_receipt,
    post_refund,
    post_return_restocked,
    post_return_written_off,
    post_revenue,
    post_revenue_reversal,
    post_shipment_cost,
    post_shipping_cost,
    prorate,
)
from stockflow.contracts.events import (
    OrderConfirmed,
    ReturnReceived,
    ShipmentShipped,
    StockMovementRecorded,
)

RETURN_REFERENCES = frozenset({"rma", "return"})

PriceRow = tuple[str, str, str, Decimal, str]
"""A learned unit price as the store keeps it: (order_id, line_id, sku, unit_price, currency)."""


@dataclass
class ShipmentCost:
    """What one shipment movement of an order's SKU cost, and what has not come back yet."""

    movement_id: str
    order_id: str
    sku: str
    quantity: int
    cost: Money
    quantity_left: int
    cost_left: Money
    changed: bool = False


@dataclass(frozen=True)
class LinePrice:
    """What an order line sells for: the price revenue is posted at."""

    sku: str
    unit_price: Decimal
    currency: str


@dataclass
class Pending:
    """A posting parked until its order's prices or shipment costs are known."""

    cause: Cause
    rule: str  # revenue | refund | return_write_off
    order_id: str
    occurred_at: datetime
    payload: dict[str, Any]

    @property
    def waiting_for(self) -> str:
        return "shipment_cost" if self.rule == "return_write_off" else "prices"


@dataclass
class Books:
    calendar: PeriodCalendar
    valuations: dict[str, SkuValuation] = field(default_factory=dict)
    methods: dict[str, CostMethod] = field(default_factory=dict)
    shipment_costs: dict[tuple[str, str], list[ShipmentCost]] = field(default_factory=dict)
    prices: dict[tuple[str, str], LinePrice] = field(default_factory=dict)
    entries: list[JournalEntry] = field(default_factory=list)
    changed_skus: set[str] = field(default_factory=set)
    parked: list[Pending] = field(default_factory=list)
    settled: list[Pending] = field(default_factory=list)
    costed_orders: set[str] = field(default_factory=set)
    # order -> sku -> revenue its untracked lines have recognised, net of reversals
    untracked_revenue: dict[str, dict[str, Money]] = field(default_factory=dict)

    # --- posting -------------------------------------------------------------------------

    def post(self, entry: JournalEntry) -> None:
        """Keep `entry` as the calendar lets it be posted; an entry of nothing is not kept."""
        if entry.amount.amount:
            self.entries.append(self.calendar.place(entry))

    # --- stock movements: the cost legs --------------------------------------------------

    def apply_movement(self, cause: Cause, movement: StockMovementRecorded) -> None:
        """Value one stock ledger movement and post its cost leg (transfers etc. post nothing)."""
        m, quantity, at = movement, abs(movement.quantity), movement.occurred_at
        if quantity == 0:
            return
        if m.kind == "receipt":
            if m.unit_cost is None or m.currency is None:
                raise AccountingError(f"receipt {m.movement_id} of {m.sku} carries no unit cost")
            cost = self._valuation(m.sku, m.currency).receive(quantity, m.unit_cost, m.movement_id)
            self.post(post_receipt(cause, at, m.sku, cost))
        elif m.kind == "shipment":
            issued = self._held(m.sku).issue(quantity)
            self.post(
                post_shipment_cost(
                    cause, at, m.sku, issued.cost, order_id=m.order_id, sold_as=m.bundle_sku
                )
            )
            if m.order_id is not None:
                shipped = ShipmentCost(
                    m.movement_id,
                    m.order_id,
                    m.sku,
                    quantity,
                    issued.cost,
                    quantity,
                    issued.cost,
                    changed=True,
                )
                self.shipment_costs.setdefault((m.order_id, m.sku), []).append(shipped)
                self.costed_orders.add(m.order_id)
        elif m.kind == "return_restock":
            self._restock(cause, m, quantity)
        elif m.kind == "write_off":
            if self._is_return(m):
                return  # never back on the shelf: valued from fulfilment's ReturnReceived
            issued = self._held(m.sku).write_off(quantity)
            self.post(post_adjustment(cause, at, m.sku, -issued.cost))
        elif m.kind == "adjustment":
            self._adjust(cause, m, quantity)
        else:
            return
        self.changed_skus.add(m.sku)

    def _restock(self, cause: Cause, m: StockMovementRecorded, quantity: int) -> None:
        valuation = self._held(m.sku, allow_empty=True)
        known, original = (0, None)
        if m.order_id is not None:
            known, original = self.take_shipped_cost(m.order_id, m.sku, quantity)
        if known and original is not None:
            valuation.restock_return(known, original, m.movement_id)
            self.post(
                post_return_restocked(cause, m.occurred_at, m.order_id or "", m.sku, original)
            )
        if quantity > known:
            # Returned units accounting never saw leave: valued like units found in a count.
            value = valuation.receive_found(quantity - known, m.movement_id)
            entry = post_adjustment(cause, m.occurred_at, m.sku, value)
            self.post(
                replace(
                    entry,
                    note=f"return of {quantity - known} unit(s) without a "
                    f"known shipment cost (order {m.order_id})",
                )
            )

    def _adjust(self, cause: Cause, m: StockMovementRecorded, quantity: int) -> None:
        if m.quantity > 0:
            if m.unit_cost is not None and m.currency is not None:
                value = self._valuation(m.sku, m.currency).receive(
                    quantity, m.unit_cost, m.movement_id
                )
            else:
                value = self._held(m.sku, allow_empty=True).receive_found(quantity, m.movement_id)
            self.post(post_adjustment(cause, m.occurred_at, m.sku, value))
        else:
            issued = self._held(m.sku).issue(quantity)
            self.post(post_adjustment(cause, m.occurred_at, m.sku, -issued.cost))

    @staticmethod
    def _is_return(m: StockMovementRecorded) -> bool:
        return m.order_id is not None or (
            m.reference is not None and m.reference.type in RETURN_REFERENCES
        )

    def _valuation(self, sku: str, currency: str) -> SkuValuation:
        if sku not in self.valuations:
            method = self.methods.get(sku, CostMethod.FIFO)
            self.valuations[sku] = SkuValuation(sku, currency, method)
        return self.valuations[sku]

    def _held(self, sku: str, *, allow_empty: bool = False) -> SkuValuation:
        valuation = self.valuations.get(sku)
        if valuation is None:
            raise InsufficientStock(f"{sku}: no receipt valued yet")
        if not allow_empty and valuation.quantity == 0:
            raise InsufficientStock(f"{sku}: no valued units on hand")
        return valuation

    # --- shipment costs for returns ------------------------------------------------------

    def shipped_left(self, order_id: str, sku: str) -> int:
        return sum(row.quantity_left for row in self.shipment_costs.get((order_id, sku), []))

    def take_shipped_cost(self, order_id: str, sku: str, quantity: int) -> tuple[int, Money | None]:
        """Up to `quantity` returned units at their original cost, oldest shipment first."""
        taken, cost = 0, None
        for row in self.shipment_costs.get((order_id, sku), []):
            if taken == quantity:
                break
            if not row.quantity_left:
                continue
            take = min(quantity - taken, row.quantity_left)
            part = prorate(row.cost_left, take, row.quantity_left)
            row.quantity_left -= take
            row.cost_left -= part
            row.changed = True
            taken += take
            cost = part if cost is None else cost + part
        return taken, cost

    # --- prices and the price legs -------------------------------------------------------

    def learn_prices(self, order_id: str, currency: str, lines: Iterable[Any]) -> list[PriceRow]:
        """Remember unit prices of an order's lines; returns the rows for the store."""
        rows: list[PriceRow] = []
        for line in lines:
            self.prices.setdefault(
                (order_id, line.line_id), LinePrice(line.sku, line.unit_price, currency)
            )
            rows.append((order_id, line.line_id, line.sku, line.unit_price, currency))
        return rows

    def take_delivered_untracked(self, cause: Cause, event: OrderConfirmed) -> None:
        """Untracked lines (digital goods, services) never ship: the customer has them once the
        order is confirmed (the order service counts them delivered then), so their revenue is
        recognised on `order.confirmed`, at the confirmed line's own price."""
        sold = [
            SoldLine(line.sku, line.quantity, line.unit_price)
            for line in event.lines
            if line.untracked
        ]
        if not sold:
            return
        entry = post_revenue(cause, event.confirmed_at, event.order_id, event.currency, sold)
        self.post(entry)
        recognised = self.untracked_revenue.setdefault(event.order_id, {})
        for line in entry.lines:
            if line.account is Account.REVENUE and line.sku is not None:
                before = recognised.get(line.sku, Money.zero(entry.currency))
                recognised[line.sku] = before + line.credit

    def take_cancelled(self, cause: Cause, order_id: str, cancelled_at: datetime) -> None:
        """A cancelled order's customer pays nothing: undo the revenue its untracked lines
        recognised on confirmation (stocked lines never shipped, so never posted any)."""
        recognised = {
            sku: amount
            for sku, amount in self.untracked_revenue.pop(order_id, {}).items()
            if amount.amount > 0
        }
        if recognised:
            self.post(post_revenue_reversal(cause, cancelled_at, order_id, recognised))

    def take_shipped(self, cause: Cause, event: ShipmentShipped) -> None:
        """Revenue for the shipped lines (parked until priced), and what the label cost."""
        if event.shipping_cost is not None and event.shipping_currency is not None:
            cost = Money.of(event.shipping_cost, event.shipping_currency)
            self.post(post_shipping_cost(cause, event.shipped_at, event.order_id, cost))
        self.settle_or_park(
            Pending(
                cause,
                "revenue",
                event.order_id,
                event.shipped_at,
                _priced_payload(event.currency, event.lines),
            )
        )

    def take_returned(self, cause: Cause, event: ReturnReceived) -> None:
        self.settle_or_park(
            Pending(
                cause,
                "refund",
                event.order_id,
                event.received_at,
                _priced_payload(event.currency, event.lines),
            )
        )
        lost: dict[str, int] = {}
        for line in event.lines:
            if line.condition == "write_off":
                lost[line.sku] = lost.get(line.sku, 0) + line.quantity
        if lost:
            payload = {"lines": [{"sku": sku, "quantity": q} for sku, q in sorted(lost.items())]}
            self.settle_or_park(
                Pending(cause, "return_write_off", event.order_id, event.received_at, payload)
            )

    def settle_or_park(self, pending: Pending) -> None:
        if not self.settle(pending):
            self.parked.append(pending)

    def settle(self, pending: Pending) -> bool:
        """Post `pending` if what it waits for is known; False leaves nothing changed."""
        if pending.rule == "return_write_off":
            return self._settle_write_off(pending)
        priced = self._prices_of(pending)
        if priced is None:
            return False
        currency, sold = priced
        args = (pending.cause, pending.occurred_at, pending.order_id)
        if pending.rule == "revenue":
            self.post(post_revenue(*args, currency, sold))
        else:
            refunds: dict[str, Money] = {}
            for line in sold:
                amount = Money.of(line.unit_price * line.quantity, currency)
                refunds[line.sku] = refunds.get(line.sku, Money.zero(currency)) + amount
            for sku, refund in sorted(refunds.items()):
                self.post(post_refund(*args, sku, refund))
        return True

    def _settle_write_off(self, pending: Pending) -> bool:
        lines = pending.payload["lines"]
        if any(self.shipped_left(pending.order_id, ln["sku"]) < ln["quantity"] for ln in lines):
            return False
        for line in lines:
            _, cost = self.take_shipped_cost(pending.order_id, line["sku"], line["quantity"])
            assert cost is not None
            self.post(
                post_return_written_off(
                    pending.cause, pending.occurred_at, pending.order_id, line["sku"], cost
                )
            )
        return True

    def _prices_of(self, pending: Pending) -> tuple[str, list[SoldLine]] | None:
        sold: list[SoldLine] = []
        currencies: set[str] = set()
        for line in pending.payload["lines"]:
            if line.get("unit_price") is not None and pending.payload.get("currency"):
                unit_price, currency = Decimal(line["unit_price"]), pending.payload["currency"]
            else:
                known = self.prices.get((pending.order_id, line["line_id"]))
                if known is None:
                    return None
                unit_price, currency = known.unit_price, known.currency
            currencies.add(currency)
            sold.append(SoldLine(line["sku"], line["quantity"], unit_price))
        if len(currencies) != 1:
            raise AccountingError(f"order {pending.order_id}: lines priced in {sorted(currencies)}")
        return currencies.pop(), sold


def _priced_payload(currency: str | None, lines: Iterable[Any]) -> dict[str, Any]:
    return {
        "currency": currency,
        "lines": [
            {
                "line_id": line.line_id,
                "sku": line.sku,
                "quantity": line.quantity,
                "unit_price": None if line.unit_price is None else format(line.unit_price, "f"),
            }
            for line in lines
        ],
    }
