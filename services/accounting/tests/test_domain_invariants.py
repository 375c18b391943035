"""Randomised trading (fixed seeds) through valuation, posting rules and period close.

Proves the issue's invariants over many mixed sequences: every entry balances, the trial
balance nets to zero per currency, the inventory account equals the open cost layers per SKU,
COGS equals the cost of what was shipped and kept, and a replay gives identical books.
"""

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from stockflow.accounting.domain import (
    Account,
    Cause,
    CostMethod,
    JournalEntry,
    Money,
    PeriodCalendar,
    SkuValuation,
    SoldLine,
    inventory_valuation,
    inventory_value_as_of,
    period_of,
    post_adjustment,
    post_receipt,
    post_refund,
    post_return_restocked,
    post_return_written_off,
    post_revenue,
    post_shipment_cost,
    post_shipping_cost,
    profitability,
    prorate,
    total,
    trial_balance,
)

SKUS = {
    "FIFO-USD": ("USD", CostMethod.FIFO),
    "AVG-USD": ("USD", CostMethod.MOVING_AVERAGE),
    "FIFO-KWD": ("KWD", CostMethod.FIFO),
    "AVG-JPY": ("JPY", CostMethod.MOVING_AVERAGE),
}
SEEDS = [7, 2024, 31337]
EVENTS = 600


@dataclass
class Shipment:
    """What the handler keeps per shipped order line, so returns restock at original cost."""

    order_id: str
    sku: str
    unit_price: Decimal
    quantity_kept: int
    cost_kept: Money


@dataclass
class Books:
    entries: list[JournalEntry]
    valuations: dict[str, SkuValuation]
    shipments: list[Shipment]
    written_off: dict[str, Money]  # shrinkage the sequence caused, net of found stock
    placements: list[tuple[str, PeriodCalendar]]  # per entry: its event's period, the calendar


def random_amount(rng: random.Random) -> Decimal:
    return Decimal(rng.randint(0, 99_999)).scaleb(-rng.randint(0, 4))


def trade(seed: int) -> Books:
    rng = random.Random(seed)
    valuations = {sku: SkuValuation(sku, *setup) for sku, setup in SKUS.items()}
    calendar = PeriodCalendar()
    entries: list[JournalEntry] = []
    shipments: list[Shipment] = []
    written_off = {sku: Money.zero(v.currency) for sku, v in valuations.items()}
    placements: list[tuple[str, PeriodCalendar]] = []
    now = datetime(2024, 1, 1, tzinfo=UTC)

    for n in range(EVENTS):
        now += timedelta(hours=rng.randint(1, 20))
        # Some events arrive late, dated weeks back, possibly in an already closed period.
        occurred_at = now - timedelta(days=rng.choice([0, 0, 0, 0, 20, 45]))
        cause = Cause("test.event.v1", f"evt-{n}")
        sku = rng.choice(list(SKUS))
        valuation = valuations[sku]
        currency = valuation.currency
        posted: list[JournalEntry] = []
        roll = rng.random()

        if roll < 0.3 or valuation.quantity == 0:
            cost = valuation.receive(rng.randint(1, 25), random_amount(rng), f"rcv-{n}")
            posted.append(post_receipt(cause, occurred_at, sku, cost))
        elif roll < 0.6:
            quantity = rng.randint(1, valuation.quantity)
            order_id = f"order-{n}"
            issued = valuation.issue(quantity)
            price = random_amount(rng)
            posted += [
                post_shipment_cost(cause, occurred_at, sku, issued.cost, order_id=order_id),
                post_revenue(
                    cause, occurred_at, order_id, currency, [SoldLine(sku, quantity, price)]
                ),
                post_shipping_cost(
                    cause, occurred_at, order_id, Money.of(random_amount(rng), currency)
                ),
            ]
            shipments.append(Shipment(order_id, sku, price, quantity, issued.cost))
        elif roll < 0.8 and any(s.quantity_kept for s in shipments):
            shipment = rng.choice([s for s in shipments if s.quantity_kept])
            quantity = rng.randint(1, shipment.quantity_kept)
            original_cost = prorate(shipment.cost_kept, quantity, shipment.quantity_kept)
            shipment.quantity_kept -= quantity
            shipment.cost_kept -= original_cost
            refund = Money.of(shipment.unit_price * quantity, original_cost.currency)
            args = (cause, occurred_at, shipment.order_id, shipment.sku)
            posted.append(post_refund(*args, refund))
            if rng.random() < 0.6:
                valuations[shipment.sku].restock_return(quantity, original_cost, f"ret-{n}")
                posted.append(post_return_restocked(*args, original_cost))
            else:
                written_off[shipment.sku] += original_cost
                posted.append(post_return_written_off(*args, original_cost))
        elif roll < 0.9:
            cost = valuation.write_off(rng.randint(1, valuation.quantity)).cost
            written_off[sku] += cost
            posted.append(post_adjustment(cause, occurred_at, sku, -cost))
        else:
            value = valuation.receive_found(rng.randint(1, 5), f"found-{n}")
            written_off[sku] -= value
            posted.append(post_adjustment(cause, occurred_at, sku, value))

        for entry in posted:
            entries.append(calendar.place(entry))
            placements.append((entry.period, calendar))

        if rng.random() < 0.05:  # month-end close of everything before last month
            calendar = calendar.close(period_of(now - timedelta(days=31)))
        if rng.random() < 0.1:  # the store persists and reloads the valuation
            valuations[sku] = SkuValuation.from_dict(valuations[sku].to_dict())

    return Books(entries, valuations, shipments, written_off, placements)


@pytest.fixture(scope="module", params=SEEDS)
def books(request: pytest.FixtureRequest) -> Books:
    return trade(request.param)


def account_balance_by_sku(entries: list[JournalEntry], account: Account) -> dict[str, Money]:
    balances: dict[str, Money] = {}
    for entry in entries:
        for line in entry.lines:
            if line.account is account and line.sku is not None:
                balances[line.sku] = balances.get(line.sku, Money.zero(entry.currency)) + (
                    line.net_debit
                )
    return balances


def test_the_sequence_exercises_every_rule(books: Books) -> None:
    assert len(books.entries) > EVENTS
    for currency in ("USD", "KWD", "JPY"):
        touched = {row.account for row in trial_balance(books.entries) if row.currency == currency}
        assert touched == set(Account)
    assert any(s.quantity_kept == 0 for s in books.shipments)  # fully returned lines
    assert sum(entry.note is not None for entry in books.entries) > 10  # late, closed periods


def test_every_entry_balances(books: Books) -> None:
    for entry in books.entries:
        debits = total((line.debit for line in entry.lines), entry.currency)
        assert debits == total((line.credit for line in entry.lines), entry.currency)


def test_trial_balance_nets_to_zero_per_currency(books: Books) -> None:
    net: dict[str, Money] = {}
    for row in trial_balance(books.entries):
        net[row.currency] = net.get(row.currency, Money.zero(row.currency)) + row.debit - row.credit
    assert set(net) == {"USD", "KWD", "JPY"}
    assert all(amount.amount == 0 for amount in net.values())


def test_inventory_account_equals_open_cost_layers(books: Books) -> None:
    inventory = account_balance_by_sku(books.entries, Account.INVENTORY)
    layers = {row.sku: row.value for row in inventory_valuation(books.valuations.values())}
    assert inventory == layers
    assert layers == {
        sku: total((layer.value for layer in v.layers), v.currency)
        for sku, v in books.valuations.items()
    }
    assert inventory_value_as_of(books.entries, datetime.max.replace(tzinfo=UTC)) == layers


def test_cogs_is_the_cost_of_what_was_shipped_and_kept(books: Books) -> None:
    cogs = account_balance_by_sku(books.entries, Account.COST_OF_GOODS_SOLD)
    for sku, valuation in books.valuations.items():
        kept = [s.cost_kept for s in books.shipments if s.sku == sku]
        assert cogs[sku] == total(kept, valuation.currency)
    by_sku = {(row.group, row.currency): row for row in profitability(books.entries, by="sku")}
    assert set(by_sku) == {(sku, currency) for sku, (currency, _) in SKUS.items()}
    assert {sku: row.cost_of_goods_sold for (sku, _), row in by_sku.items()} == cogs


def test_shrinkage_is_what_was_written_off_net_of_found_stock(books: Books) -> None:
    assert account_balance_by_sku(books.entries, Account.INVENTORY_SHRINKAGE) == books.written_off


def test_order_profits_add_up_to_the_margin(books: Books) -> None:
    per_order = profitability(books.entries, by="order")
    per_period = profitability(books.entries, by="period")
    for currency in ("USD", "KWD", "JPY"):
        orders = [row.gross_margin for row in per_order if row.currency == currency]
        periods = [row.gross_margin for row in per_period if row.currency == currency]
        assert total(orders, currency) == total(periods, currency)


def test_entries_post_only_into_open_periods_and_never_earlier(books: Books) -> None:
    for entry, (event_period, calendar) in zip(books.entries, books.placements, strict=True):
        assert calendar.is_open(entry.period)
        assert entry.period == calendar.first_open_period(event_period)
        assert (entry.note is not None) == (entry.period != event_period)


@pytest.mark.parametrize("seed", SEEDS)
def test_replaying_the_same_events_gives_identical_books(seed: int) -> None:
    first, replay = trade(seed), trade(seed)
    assert [e.to_dict() for e in first.entries] == [e.to_dict() for e in replay.entries]
    assert first.entries == replay.entries
    assert len({e.entry_id for e in first.entries}) == len(first.entries)
    assert {s: v.to_dict() for s, v in first.valuations.items()} == {
        s: v.to_dict() for s, v in replay.valuations.items()
    }
