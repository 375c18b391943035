"""The reservation use cases (reserve, release, commit) against an in-memory store: the rules of
the command batch, fast and without Kafka or PostgreSQL. The same rules run end to end in
test_service.py."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from stockflow.contracts.events import stock as wire
from stockflow.stock import store
from stockflow.stock.domain import (
    BUCKETS,
    Backorder,
    BackorderFill,
    BundleBackorder,
    BundleComponent,
    HeldUnits,
    Movement,
    MovementKind,
)
from stockflow.stock.ledger import LevelBook
from stockflow.stock.usecases.backorders import Arrivals, serve_waiting_backorders
from stockflow.stock.usecases.reservations import CommandBatch, OrderHolds, ShipmentCommit


class RecordingUnitOfWork:
    """Collects what a use case publishes; it has no connection (the store is in memory)."""

    conn = None

    def __init__(self) -> None:
        self.published: list[Any] = []

    def publish(self, event: Any, *, subject: str | None = None) -> None:
        self.published.append(event)

    def last(self, kind: type) -> Any:
        return [event for event in self.published if isinstance(event, kind)][-1]


class InMemoryReservations(store.ReservationStore):
    """`ReservationStore` over dicts; the ledger it checks for shipments is the book's."""

    def __init__(self, book: LevelBook) -> None:
        super().__init__(conn=None)
        self.book = book
        self.status: dict[str, str] = {}
        self.held: dict[store.HoldKey, int] = defaultdict(int)
        self.backorders: list[dict[str, Any]] = []
        self.bundles: dict[store.LineKey, BundleBackorder] = {}

    async def insert_answers(self, answers: Sequence[store.StoredAnswer]) -> None:
        self.status |= {answer.order_id: answer.status for answer in answers}

    async def set_reservation_status(self, order_id: str, status: str) -> None:
        self.status[order_id] = status

    async def add_holds(self, holds: dict[store.HoldKey, int]) -> None:
        for key, quantity in holds.items():
            self.held[key] += quantity

    async def release_holds(self, order_id: str) -> None:
        for key in self.held:
            if key[0] == order_id:
                self.held[key] = 0

    async def commit_hold(self, order_id: str, hold: HeldUnits, quantity: int) -> None:
        self.held[(order_id, hold.line_id, hold.sku, hold.location)] -= quantity

    async def release_hold(self, order_id: str, hold: HeldUnits, quantity: int) -> None:
        self.held[(order_id, hold.line_id, hold.sku, hold.location)] -= quantity

    async def queue_again(self, order_id: str, units: HeldUnits) -> str:
        for row in self.backorders:
            if (row["order_id"], row["line_id"], row["sku"]) == (
                order_id,
                units.line_id,
                units.sku,
            ):
                row["quantity"] += units.quantity
                row["open"] += units.quantity
                return row["location"]
        new = store.NewBackorder(
            order_id, units.line_id, units.sku, units.location, units.quantity, 0
        )
        await self.insert_backorders([new])
        return units.location

    async def insert_backorders(self, backorders: Sequence[store.NewBackorder]) -> None:
        for new in backorders:
            row = new.__dict__ | {"id": len(self.backorders) + 1, "open": new.quantity}
            self.backorders.append(row)

    async def has_open_backorders(self, order_id: str) -> bool:
        return any(b["order_id"] == order_id and b["open"] for b in self.backorders)

    async def close_backorders(self, order_id: str) -> list[tuple[str, str, int]]:
        closed = [b for b in self.backorders if b["order_id"] == order_id and b["open"]]
        result = [(b["sku"], b["location"], b["open"]) for b in closed]
        for b in closed:
            b["open"] = 0
        return result

    async def lock_backorder_queue(self, sku: str) -> list[store.WaitingBackorder]:
        waiting = [b for b in self.backorders if b["sku"] == sku and b["open"]]
        waiting.sort(key=lambda b: (-b["priority"], b["id"]))
        return [
            store.WaitingBackorder(
                Backorder(b["order_id"], b["line_id"], sku, b["open"], b["id"], b["priority"]),
                b["location"],
                (b["order_id"], b["line_id"]) in self.bundles,
            )
            for b in waiting
        ]

    async def insert_bundle_backorders(self, bundles: Sequence[BundleBackorder]) -> None:
        self.bundles |= {(b.order_id, b.line_id): b for b in bundles}

    async def queue_bundle_again(self, bundle: BundleBackorder) -> None:
        key = (bundle.order_id, bundle.line_id)
        known = self.bundles.get(key)
        self.bundles[key] = (
            bundle if known is None else replace(known, quantity=known.quantity + bundle.quantity)
        )

    async def lock_bundle_backorders(self, lines: Iterable[store.LineKey]) -> list[BundleBackorder]:
        return [self.bundles[key] for key in sorted(set(lines)) if key in self.bundles]

    async def filled_components(
        self, lines: Iterable[store.LineKey]
    ) -> dict[store.LineKey, dict[str, int]]:
        filled: dict[store.LineKey, dict[str, int]] = defaultdict(dict)
        for b in self.backorders:
            key = (b["order_id"], b["line_id"])
            if key in set(lines):
                filled[key][b["sku"]] = b["quantity"] - b["open"]
        return filled

    async def set_bundles_allocated(self, allocated: dict[store.LineKey, int]) -> None:
        for key, units in allocated.items():
            self.bundles[key] = replace(self.bundles[key], allocated=units)

    async def fill_backorders(self, location: str, fills: Sequence[BackorderFill]) -> None:
        for fill in fills:
            row = next(b for b in self.backorders if b["id"] == fill.backorder.sequence)
            row["open"] -= fill.quantity
            key = (row["order_id"], row["line_id"], row["sku"], location)
            self.held[key] += fill.quantity

    async def shipment_committed(self, order_id: str, shipment_id: str) -> bool:
        return any(
            r.movement.kind is MovementKind.SHIPMENT
            and r.order_id == order_id
            and r.movement.reference == shipment_id
            for r in self.book.recorded
        )


def batch_over(
    on_hand: dict[tuple[str, str], int], catalog: Sequence[store.CatalogSku] = ()
) -> tuple[CommandBatch, InMemoryReservations]:
    """A command batch over levels with `on_hand` units, and its in-memory store; every sku with
    units is an active catalog variant unless `catalog` says otherwise."""
    book = LevelBook(
        {"sku": sku, "location": location, **dict.fromkeys(BUCKETS, 0), "on_hand": units}
        | {"reorder_point": None, "alert_state": "ok"}
        for (sku, location), units in on_hand.items()
    )
    rows = InMemoryReservations(book)
    skus = {sku: store.CatalogSku(sku, True, False, "active", ()) for sku, _ in on_hand}
    skus |= {sku.sku: sku for sku in catalog}
    bundles = {sku.sku: sku.components for sku in catalog if sku.components}
    batch = CommandBatch(
        holds=OrderHolds(book, {}, {}, bundles, rows),
        catalog=skus,
        priority=sorted({location for _, location in on_hand}),
        arrivals=Arrivals({}, {}),
    )
    return batch, rows


def reserve_command(order_id: str, *lines: tuple[str, int], **options: Any) -> wire.ReserveStock:
    return wire.ReserveStock(
        order_id=order_id,
        lines=[
            {"line_id": str(number), "sku": sku, "quantity": quantity}
            for number, (sku, quantity) in enumerate(lines, 1)
        ],
        **options,
    )


async def reserve(batch: CommandBatch, uow: RecordingUnitOfWork, command: wire.ReserveStock):
    batch.reserve(uow, command, f"reserve-{command.order_id}")
    await batch.pending.write(batch.holds.rows)
    return uow.published[-1]


def shipment(order_id: str, shipment_id: str, *lines: tuple[str, str, int]) -> ShipmentCommit:
    return ShipmentCommit(
        order_id,
        shipment_id,
        tuple(
            wire.LocatedLine(line_id=str(n), sku=sku, location=location, quantity=quantity)
            for n, (sku, location, quantity) in enumerate(lines, 1)
        ),
    )


async def test_a_reserve_holds_units_and_a_repeat_gets_the_first_answer_holding_nothing_more():
    batch, rows = batch_over({("A", "WH-1"): 5})
    uow = RecordingUnitOfWork()
    first = await reserve(batch, uow, reserve_command("O1", ("A", 3)))
    again = await reserve(batch, uow, reserve_command("O1", ("A", 3)))
    assert isinstance(first, wire.StockReserved) and first.complete
    assert again == first
    assert batch.book.level("A", "WH-1").reserved == 3
    assert rows.held == {("O1", "1", "A", "WH-1"): 3}


async def test_an_unknown_sku_rejects_the_order_and_holds_nothing():
    batch, rows = batch_over({("A", "WH-1"): 5})
    uow = RecordingUnitOfWork()
    answer = await reserve(batch, uow, reserve_command("O1", ("A", 1), ("NOPE", 1)))
    assert isinstance(answer, wire.ReservationRejected) and answer.reason == "unknown_sku"
    assert [line.sku for line in answer.lines] == ["NOPE"]
    assert batch.book.level("A", "WH-1").reserved == 0
    assert rows.status == {"O1": "rejected"}


async def test_a_short_order_is_rejected_unless_it_may_wait_and_then_it_is_backordered():
    batch, rows = batch_over({("A", "WH-1"): 2})
    uow = RecordingUnitOfWork()
    rejected = await reserve(batch, uow, reserve_command("O1", ("A", 5)))
    assert isinstance(rejected, wire.ReservationRejected)
    assert rejected.reason == "insufficient_stock" and rejected.lines[0].available == 2
    waiting = await reserve(batch, uow, reserve_command("O2", ("A", 5), backorder_policy="allow"))
    assert isinstance(waiting, wire.StockReserved) and not waiting.complete
    assert (waiting.lines[0].reserved, waiting.lines[0].backordered) == (2, 3)
    level = batch.book.level("A", "WH-1")
    assert (level.reserved, level.backordered) == (2, 3)
    assert [(b["order_id"], b["open"]) for b in rows.backorders] == [("O2", 3)]


@pytest.mark.parametrize("status", ["discontinued", "draft"])
async def test_a_draft_or_discontinued_variant_is_not_sold_even_with_units_on_hand(status):
    not_for_sale = store.CatalogSku("A", True, True, status, ())
    batch, rows = batch_over({("A", "WH-1"): 5, ("B", "WH-1"): 5}, [not_for_sale])
    answer = await reserve(batch, RecordingUnitOfWork(), reserve_command("O1", ("A", 2), ("B", 1)))
    assert isinstance(answer, wire.ReservationRejected) and answer.reason == "not_sellable"
    assert [(line.sku, line.reason, line.available) for line in answer.lines] == [
        ("A", "not_sellable", 5)
    ]
    assert batch.book.level("B", "WH-1").reserved == 0 and rows.status == {"O1": "rejected"}


async def test_units_of_a_sku_the_catalog_never_announced_are_held_not_sold():
    batch, _ = batch_over({("A", "WH-1"): 5})
    del batch.catalog["A"]  # received, but never in the catalog
    answer = await reserve(batch, RecordingUnitOfWork(), reserve_command("O1", ("A", 1)))
    assert isinstance(answer, wire.ReservationRejected) and answer.reason == "unknown_sku"
    assert [(line.reason, line.available) for line in answer.lines] == [("unknown_sku", 5)]
    assert batch.book.level("A", "WH-1").reserved == 0


async def test_a_preorder_is_accepted_as_a_backorder_dated_by_its_availability():
    ships_on = datetime.now(UTC) + timedelta(days=30)
    preorder = store.CatalogSku("A", True, False, "active", (), preorder_available_at=ships_on)
    batch, rows = batch_over({("A", "WH-1"): 1}, [preorder])
    command = reserve_command("O1", ("A", 3), backorder_policy="reject")
    answer = await reserve(batch, RecordingUnitOfWork(), command)
    assert isinstance(answer, wire.StockReserved) and not answer.complete
    line = answer.lines[0]
    assert (line.reserved, line.backordered, line.expected_date) == (1, 2, ships_on)
    assert [(b["order_id"], b["open"]) for b in rows.backorders] == [("O1", 2)]


async def test_a_preorder_date_in_the_past_is_an_ordinary_variant():
    passed = datetime.now(UTC) - timedelta(days=1)
    released = store.CatalogSku("A", True, False, "active", (), preorder_available_at=passed)
    batch, _ = batch_over({("A", "WH-1"): 1}, [released])
    answer = await reserve(batch, RecordingUnitOfWork(), reserve_command("O1", ("A", 3)))
    assert isinstance(answer, wire.ReservationRejected) and answer.reason == "insufficient_stock"


async def test_release_frees_the_units_and_repeats_or_unknown_orders_change_nothing():
    batch, rows = batch_over({("A", "WH-1"): 5})
    uow = RecordingUnitOfWork()
    await reserve(batch, uow, reserve_command("O1", ("A", 3)))
    await batch.holds.release(uow, "O1", "cancel-1")
    released = uow.last(wire.StockReleased)
    assert released.outcome == "released" and released.lines[0].quantity == 3
    assert batch.book.level("A", "WH-1").available == 5
    assert rows.status["O1"] == "released" and rows.held[("O1", "1", "A", "WH-1")] == 0
    await batch.holds.release(uow, "O1", "cancel-2")
    assert uow.last(wire.StockReleased).outcome == "already_released"
    await batch.holds.release(uow, "NEVER", "cancel-3")
    assert uow.last(wire.StockReleased).outcome == "unknown_reservation"


async def test_released_units_serve_a_waiting_backorder_before_anyone_else():
    batch, rows = batch_over({("A", "WH-1"): 3})
    uow = RecordingUnitOfWork()
    await reserve(batch, uow, reserve_command("HOLDER", ("A", 3)))
    await reserve(batch, uow, reserve_command("WAITER", ("A", 2), backorder_policy="allow"))
    await batch.holds.release(uow, "HOLDER", "cancel-1")
    allocated = uow.last(wire.BackorderAllocated)
    assert (allocated.order_id, allocated.quantity, allocated.remaining_backordered) == (
        "WAITER",
        2,
        0,
    )
    level = batch.book.level("A", "WH-1")
    assert (level.reserved, level.backordered, level.available) == (2, 0, 1)
    assert rows.held[("WAITER", "1", "A", "WH-1")] == 2


def release_lines(*lines: tuple[str, str, str, int, bool]) -> list[wire.ReleaseLine]:
    return [
        wire.ReleaseLine(
            line_id=line_id, sku=sku, location=location, quantity=quantity, not_found=not_found
        )
        for line_id, sku, location, quantity, not_found in lines
    ]


async def test_a_partial_release_frees_only_the_lines_units_and_the_rest_stays_held():
    batch, rows = batch_over({("A", "WH-1"): 5, ("B", "WH-1"): 5})
    uow = RecordingUnitOfWork()
    await reserve(batch, uow, reserve_command("O1", ("A", 3), ("B", 2)))
    wanted = release_lines(("1", "A", "WH-1", 1, False))
    await batch.holds.release_lines(uow, "O1", wanted, "cancel-line")
    released = uow.last(wire.StockReleased)
    assert released.outcome == "released"
    assert [(line.line_id, line.quantity) for line in released.lines] == [("1", 1)]
    assert (batch.book.level("A", "WH-1").reserved, batch.book.level("B", "WH-1").reserved) == (
        2,
        2,
    )
    assert rows.held[("O1", "1", "A", "WH-1")] == 2 and rows.status["O1"] == "held"
    await batch.holds.commit(uow, shipment("O1", "S1", ("A", "WH-1", 2), ("B", "WH-1", 2)), "s")
    assert rows.status["O1"] == "committed"
    assert batch.book.level("A", "WH-1").on_hand == 3


async def test_units_not_found_at_a_short_pick_leave_on_hand_and_are_never_offered_again():
    batch, _ = batch_over({("A", "WH-1"): 3})
    uow = RecordingUnitOfWork()
    await reserve(batch, uow, reserve_command("O1", ("A", 3)))
    await reserve(batch, uow, reserve_command("WAITER", ("A", 1), backorder_policy="allow"))
    wanted = release_lines(("1", "A", "WH-1", 1, True))
    await batch.holds.release_lines(uow, "O1", wanted, "short-pick")
    level = batch.book.level("A", "WH-1")
    assert (level.on_hand, level.reserved, level.available, level.backordered) == (2, 2, 0, 1)
    [adjustment] = [r.movement for r in batch.book.recorded if r.movement.kind == "adjustment"]
    assert (adjustment.quantity, adjustment.reason) == (-1, "not_found_at_pick")
    assert not [e for e in uow.published if isinstance(e, wire.BackorderAllocated)]


def release_again(line_id: str, sku: str, location: str, quantity: int) -> list[wire.ReleaseLine]:
    return [
        wire.ReleaseLine(
            line_id=line_id,
            sku=sku,
            location=location,
            quantity=quantity,
            not_found=True,
            backorder=True,
        )
    ]


async def test_units_not_found_and_queued_again_are_served_at_once_from_another_location():
    batch, rows = batch_over({("A", "WH-1"): 3, ("A", "WH-2"): 5})
    uow = RecordingUnitOfWork()
    await reserve(batch, uow, reserve_command("O1", ("A", 3)))
    await batch.holds.release_lines(uow, "O1", release_again("1", "A", "WH-1", 1), "short")
    allocated = uow.last(wire.BackorderAllocated)
    assert (allocated.line_id, allocated.location, allocated.quantity) == ("1", "WH-2", 1)
    assert allocated.remaining_backordered == 0
    one, two = batch.book.level("A", "WH-1"), batch.book.level("A", "WH-2")
    assert (one.on_hand, one.reserved, one.backordered) == (2, 2, 0)
    assert (two.on_hand, two.reserved, two.available) == (5, 1, 4)
    assert rows.held[("O1", "1", "A", "WH-2")] == 1


async def test_units_queued_again_with_no_stock_anywhere_wait_on_the_lines_backorder():
    batch, rows = batch_over({("A", "WH-1"): 3})
    uow = RecordingUnitOfWork()
    await reserve(batch, uow, reserve_command("O1", ("A", 3)))
    await batch.holds.release_lines(uow, "O1", release_again("1", "A", "WH-1", 1), "short")
    assert not [e for e in uow.published if isinstance(e, wire.BackorderAllocated)]
    level = batch.book.level("A", "WH-1")
    assert (level.on_hand, level.reserved, level.backordered, level.available) == (2, 2, 1, 0)
    assert [(b["order_id"], b["line_id"], b["open"]) for b in rows.backorders] == [("O1", "1", 1)]


async def test_a_partial_release_never_frees_more_than_the_line_holds_there():
    batch, _ = batch_over({("A", "WH-1"): 5})
    uow = RecordingUnitOfWork()
    await reserve(batch, uow, reserve_command("O1", ("A", 2), ("A", 2)))
    await batch.holds.release_lines(
        uow, "O1", release_lines(("1", "A", "WH-1", 5, False)), "cancel-line"
    )
    assert [line.quantity for line in uow.last(wire.StockReleased).lines] == [2]
    assert batch.book.level("A", "WH-1").reserved == 2
    await batch.holds.release_lines(
        uow, "O1", release_lines(("1", "A", "WH-1", 1, False)), "cancel-again"
    )
    assert uow.last(wire.StockReleased).lines == []
    assert batch.book.level("A", "WH-1").reserved == 2


async def test_commits_ship_held_units_until_the_order_is_committed_and_repeats_change_nothing():
    batch, rows = batch_over({("A", "WH-1"): 5})
    uow = RecordingUnitOfWork()
    await reserve(batch, uow, reserve_command("O1", ("A", 3)))
    await batch.holds.commit(uow, shipment("O1", "S1", ("A", "WH-1", 1)), "ship-1")
    assert uow.last(wire.StockCommitted).outcome == "committed"
    assert rows.status["O1"] == "held"  # two units still held
    await batch.holds.commit(uow, shipment("O1", "S2", ("A", "WH-1", 2)), "ship-2")
    assert rows.status["O1"] == "committed"
    level = batch.book.level("A", "WH-1")
    assert (level.on_hand, level.reserved) == (2, 0)
    await batch.holds.commit(uow, shipment("O1", "S2", ("A", "WH-1", 2)), "ship-2-again")
    assert uow.last(wire.StockCommitted).outcome == "already_committed"
    assert batch.book.level("A", "WH-1").on_hand == 2
    await batch.holds.release(uow, "O1", "late-cancel")
    assert uow.last(wire.StockReleased).outcome == "already_committed"


async def test_a_commit_after_release_or_without_reservation_ships_nothing():
    batch, _ = batch_over({("A", "WH-1"): 5})
    uow = RecordingUnitOfWork()
    await reserve(batch, uow, reserve_command("O1", ("A", 3)))
    await batch.holds.release(uow, "O1", "cancel-1")
    await batch.holds.commit(uow, shipment("O1", "S1", ("A", "WH-1", 3)), "ship-1")
    assert uow.last(wire.StockCommitted).outcome == "already_released"
    await batch.holds.commit(uow, shipment("NEVER", "S2", ("A", "WH-1", 1)), "ship-2")
    assert uow.last(wire.StockCommitted).outcome == "unknown_reservation"
    assert batch.book.level("A", "WH-1").on_hand == 5


async def test_a_bundle_holds_and_ships_as_its_components():
    kit = store.CatalogSku("KIT", True, False, "active", (BundleComponent("A", 2),))
    batch, rows = batch_over({("A", "WH-1"): 5}, [kit])
    uow = RecordingUnitOfWork()
    answer = await reserve(batch, uow, reserve_command("O1", ("KIT", 2)))
    assert isinstance(answer, wire.StockReserved) and answer.lines[0].reserved == 2
    assert batch.book.level("A", "WH-1").reserved == 4
    await batch.holds.commit(uow, shipment("O1", "S1", ("KIT", "WH-1", 2)), "ship-1")
    [shipped] = [r.movement for r in batch.book.recorded if r.movement.kind == "shipment"]
    assert (shipped.sku, shipped.quantity, shipped.bundle) == ("A", 4, "KIT")  # the kit sold
    level = batch.book.level("A", "WH-1")
    assert (level.on_hand, level.reserved) == (1, 0)
    assert rows.status["O1"] == "committed"


async def receive(batch: CommandBatch, uow: RecordingUnitOfWork, where: tuple[str, str], n: int):
    """`n` units of (sku, location) arrive and serve the sku's waiting backorders."""
    sku, location = where
    batch.book.move(Movement(MovementKind.RECEIPT, sku, location, n), cause_event_id=f"r-{sku}")
    await serve_waiting_backorders(uow, batch.book, where, f"r-{sku}", batch.holds.rows)


async def test_a_backordered_bundle_is_allocated_in_whole_units_once_every_component_is_in():
    kit = store.CatalogSku(
        "KIT", True, False, "active", (BundleComponent("A", 1), BundleComponent("B", 2))
    )
    batch, rows = batch_over({("A", "WH-1"): 0, ("B", "WH-1"): 0}, [kit])
    uow = RecordingUnitOfWork()
    answer = await reserve(batch, uow, reserve_command("O1", ("KIT", 2), backorder_policy="allow"))
    assert isinstance(answer, wire.StockReserved) and answer.lines[0].backordered == 2

    await receive(batch, uow, ("A", "WH-1"), 3)
    assert not [e for e in uow.published if isinstance(e, wire.BackorderAllocated)]
    assert batch.book.level("A", "WH-1").reserved == 2  # held for the kit, not yet announced
    await receive(batch, uow, ("B", "WH-1"), 3)  # 1 kit is whole (B is 2 per kit)
    first = uow.last(wire.BackorderAllocated)
    assert (first.sku, first.quantity, first.remaining_backordered) == ("KIT", 1, 1)
    await receive(batch, uow, ("B", "WH-1"), 5)
    allocated = [e for e in uow.published if isinstance(e, wire.BackorderAllocated)]
    assert [(e.sku, e.quantity, e.remaining_backordered) for e in allocated] == [
        ("KIT", 1, 1),
        ("KIT", 1, 0),
    ]
    level_b = batch.book.level("B", "WH-1")
    assert (level_b.reserved, level_b.backordered, level_b.available) == (4, 0, 4)
    assert rows.held[("O1", "1", "B", "WH-1")] == 4


async def test_a_bundle_component_arriving_where_the_bundle_does_not_wait_stays_available():
    kit = store.CatalogSku("KIT", True, False, "active", (BundleComponent("A", 1),))
    batch, _ = batch_over({("A", "WH-1"): 0, ("A", "WH-2"): 0}, [kit])
    uow = RecordingUnitOfWork()
    await reserve(batch, uow, reserve_command("O1", ("KIT", 1), backorder_policy="allow"))
    await receive(batch, uow, ("A", "WH-2"), 1)
    assert batch.book.level("A", "WH-2").available == 1
    await receive(batch, uow, ("A", "WH-1"), 1)
    allocated = uow.last(wire.BackorderAllocated)
    assert (allocated.sku, allocated.location, allocated.quantity) == ("KIT", "WH-1", 1)


def kit_of_a_and_two_b() -> store.CatalogSku:
    return store.CatalogSku(
        "KIT", True, False, "active", (BundleComponent("A", 1), BundleComponent("B", 2))
    )


def kits_back_on_backorder(quantity: int) -> list[wire.ReleaseLine]:
    """A warehouse cancel under `reallocate`: the kits were on the shelf, the line wants them."""
    return [
        wire.ReleaseLine(line_id="1", sku="KIT", location="WH-1", quantity=quantity, backorder=True)
    ]


def kit_announcements(uow: RecordingUnitOfWork) -> list[tuple[str, int, int]]:
    return [
        (e.sku, e.quantity, e.remaining_backordered)
        for e in uow.published
        if isinstance(e, wire.BackorderAllocated)
    ]


async def test_kits_queued_again_are_announced_as_whole_kits_not_as_their_components():
    batch, rows = batch_over({("A", "WH-1"): 2, ("B", "WH-1"): 4}, [kit_of_a_and_two_b()])
    uow = RecordingUnitOfWork()
    await reserve(batch, uow, reserve_command("O1", ("KIT", 2)))
    await batch.holds.release_lines(uow, "O1", kits_back_on_backorder(1), "warehouse-cancel")
    assert kit_announcements(uow) == [("KIT", 1, 0)]
    assert rows.bundles[("O1", "1")].allocated == 1
    level_b = batch.book.level("B", "WH-1")
    assert (level_b.reserved, level_b.backordered) == (4, 0)


async def test_kits_already_announced_once_are_announced_again_after_a_warehouse_cancel():
    batch, rows = batch_over({("A", "WH-1"): 1, ("B", "WH-1"): 2}, [kit_of_a_and_two_b()])
    uow = RecordingUnitOfWork()
    await reserve(batch, uow, reserve_command("O1", ("KIT", 2), backorder_policy="allow"))
    await receive(batch, uow, ("A", "WH-1"), 1)
    await receive(batch, uow, ("B", "WH-1"), 2)
    assert kit_announcements(uow) == [("KIT", 1, 0)]
    # The late kit's shipment is cancelled by the warehouse: the kit waits, and is served again.
    await batch.holds.release_lines(uow, "O1", kits_back_on_backorder(1), "warehouse-cancel")
    assert kit_announcements(uow) == [("KIT", 1, 0), ("KIT", 1, 0)]
    assert (rows.bundles[("O1", "1")].quantity, rows.bundles[("O1", "1")].allocated) == (2, 2)
