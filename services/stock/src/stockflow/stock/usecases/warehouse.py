"""Warehouse steps: goods in, returns, transfers, stock states, counts, safety stock, reorder
points, announced receipts and locations. Each changes levels only through ledger movements
(`LevelBook`); units that become sellable serve waiting backorders first.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from stockflow.contracts.events import stock as wire
from stockflow.runtime.logging import get_logger
from stockflow.runtime.outbox import UnitOfWork
from stockflow.stock import store
from stockflow.stock.domain import (
    Fact,
    FactKind,
    InsufficientStock,
    Level,
    Movement,
    MovementKind,
    canonical_money,
    conflict_with,
    count_adjustment,
)
from stockflow.stock.ledger import LevelBook
from stockflow.stock.usecases.backorders import EtaWatch, serve_waiting_backorders
from stockflow.stock.usecases.refusals import Conflict, NotFound

log = get_logger(__name__)


def level_json(level: Level) -> dict[str, Any]:
    """A level as the API shows it: every bucket and what is available."""
    return level.__dict__ | {"available": level.available}


# ----------------------------------------------------------------------------- goods in


@dataclass(frozen=True)
class Applied:
    """What applying a business fact answered; `again` when it was a repeat that changed nothing."""

    result: dict[str, Any]
    again: bool = False


async def _first_time(uow: UnitOfWork, fact: Fact, cause: str) -> Applied | None:
    """Claim `fact`'s business key: None when it is new (apply it now), else the first answer.

    Raises:
        Conflict: the key was applied with other values.
    """
    first = await store.claim_fact(uow.conn, fact, cause)
    if first is None:
        return None
    reason = conflict_with(first.says, fact)
    if reason is not None:
        raise Conflict(reason)
    return Applied(first.result, again=True)


@dataclass(frozen=True)
class GoodsReceipt:
    """Goods received at a location from a supplier; `cause` is the event or request id."""

    receipt_id: str
    sku: str
    location: str
    quantity: int
    unit_cost: Decimal
    currency: str
    cause: str

    @property
    def fact(self) -> Fact:
        says: dict[str, str | int] = {
            "sku": self.sku,
            "location": self.location,
            "quantity": self.quantity,
            "unit_cost": canonical_money(self.unit_cost),
            "currency": self.currency,
        }
        return Fact(FactKind.RECEIPT, self.receipt_id, says)


async def receive_goods(uow: UnitOfWork, receipt: GoodsReceipt) -> Applied:
    """Goods in, once per `receipt_id`: waiting backorders are served first, the rest becomes
    available, and the receipt's announcement (POST /incoming) leaves `incoming`.

    Raises:
        Conflict: the receipt_id was received with other values (nothing changes).
    """
    await store.ensure_location(uow.conn, receipt.location)
    announced = await store.announced_at(uow.conn, receipt.receipt_id)
    skus = sorted({receipt.sku} | ({announced[0]} if announced else set()))
    book = await LevelBook.load(uow.conn, skus)
    repeat = await _first_time(uow, receipt.fact, receipt.cause)
    if repeat is not None:
        return repeat
    etas = await EtaWatch.watch(uow.conn, skus)
    book.move(
        Movement(
            MovementKind.RECEIPT,
            receipt.sku,
            receipt.location,
            receipt.quantity,
            reference=receipt.receipt_id,
        ),
        cause_event_id=receipt.cause,
        reference_type="receipt",
        unit_cost=receipt.unit_cost,
        currency=receipt.currency,
    )
    await _close_announcement(uow, book, receipt)
    where = (receipt.sku, receipt.location)
    await serve_waiting_backorders(
        uow, book, where, receipt.cause, store.ReservationStore(uow.conn)
    )
    await book.flush(uow)
    await etas.announce_moves(uow)
    result = {"receipt_id": receipt.receipt_id, "level": level_json(book.level(*where))}
    await store.keep_fact_result(uow.conn, receipt.fact, result)
    return Applied(result)


async def _close_announcement(uow: UnitOfWork, book: LevelBook, receipt: GoodsReceipt) -> None:
    """The announced receipt has arrived: its units leave `incoming` and stop dating backorders
    (all of them: what did not come is no longer on its way)."""
    announced = await store.close_announced_receipt(uow.conn, receipt.receipt_id)
    if announced is None:
        return
    book.move(
        Movement(
            MovementKind.INCOMING_CLOSED,
            announced.sku,
            announced.location,
            announced.quantity,
            reference=receipt.receipt_id,
        ),
        cause_event_id=receipt.cause,
        reference_type="receipt",
    )


async def lock_levels_of(uow: UnitOfWork, skus: set[str], *, bundles_too: bool = False) -> None:
    """Lock every level of `skus` (and, with `bundles_too`, of their bundles' components) once,
    in (sku, location) order, before a batch's steps."""
    if bundles_too:
        catalog = await store.load_catalog_skus(uow.conn, skus)
        skus = skus | {c.sku for s in catalog.values() for c in s.components}
    await LevelBook.load(uow.conn, skus)


@dataclass(frozen=True)
class ReturnedUnits:
    """Units of one RMA line back at `location`: fit to sell again (`restock`) or `write_off`."""

    line_id: str
    sku: str
    location: str
    quantity: int
    condition: str


@dataclass(frozen=True)
class ReturnReceipt:
    rma_id: str
    order_id: str
    lines: tuple[ReturnedUnits, ...]
    cause: str

    def fact(self, line: ReturnedUnits) -> Fact:
        says: dict[str, str | int] = {
            "rma_id": self.rma_id,
            "order_id": self.order_id,
            "sku": line.sku,
            "location": line.location,
            "quantity": line.quantity,
            "condition": line.condition,
        }
        return Fact(FactKind.RETURN_LINE, f"{self.rma_id}:{line.line_id}", says)


async def receive_return(uow: UnitOfWork, returned: ReturnReceipt) -> None:
    """Each RMA line once: restocked units go back on hand (waiting backorders get them first);
    written-off units change no level but are recorded (`return_written_off`), so the ledger
    explains every unit that came back.

    Raises:
        Conflict: an RMA line was applied with other values (nothing changes).
    """
    book = await LevelBook.load(uow.conn, {line.sku for line in returned.lines})
    for line in returned.lines:
        if await _first_time(uow, returned.fact(line), returned.cause) is not None:
            continue
        restock = line.condition == "restock"
        book.move(
            Movement(
                MovementKind.RETURN_RESTOCK if restock else MovementKind.RETURN_WRITTEN_OFF,
                line.sku,
                line.location,
                line.quantity,
                reason=None if restock else "written off on return",
                reference=returned.rma_id,
            ),
            cause_event_id=returned.cause,
            order_id=returned.order_id,
            reference_type="rma",
        )
        if restock:
            await serve_waiting_backorders(
                uow,
                book,
                (line.sku, line.location),
                returned.cause,
                store.ReservationStore(uow.conn),
            )
    await book.flush(uow)


@dataclass(frozen=True)
class ShortPick:
    """A picker found fewer units in a bin than the records said."""

    sku: str
    location: str
    bin: str
    expected: int
    found: int


def report_short_pick(uow: UnitOfWork, pick: ShortPick) -> None:
    """Raise an invariant alert: a cycle count should follow (stock is not changed here)."""
    log.warning(
        "short pick reported; a cycle count should follow",
        sku=pick.sku,
        location=pick.location,
        expected=pick.expected,
        found=pick.found,
    )
    uow.publish(
        wire.InvariantViolated(
            sku=pick.sku,
            location=pick.location,
            invariant="bin_count_matches_ledger",
            detail=f"bin {pick.bin}: expected {pick.expected}, found {pick.found}; "
            "run a cycle count",
            detected_at=datetime.now(UTC),
        )
    )


# ----------------------------------------------------------------------------- transfers


@dataclass(frozen=True)
class Transfer:
    transfer_id: str
    sku: str
    source: str
    destination: str
    quantity: int
    expected_at: datetime | None = None


def transfer_json(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        **dict(row),
        "in_transit": row["quantity"] - row["received"],
        "status": "received" if row["received"] == row["quantity"] else "in_transit",
    }


async def ship_transfer(uow: UnitOfWork, transfer: Transfer) -> dict[str, Any]:
    """Units leave the source's on hand and are in transit (the destination's incoming)."""
    conn = uow.conn
    await store.ensure_location(conn, transfer.destination)
    book = await LevelBook.load(conn, [transfer.sku])
    etas = await EtaWatch.watch(conn, [transfer.sku])
    if await store.transfer_exists(conn, transfer.transfer_id):
        raise Conflict(f"transfer_id: {transfer.transfer_id} already exists")
    move = Movement(
        MovementKind.TRANSFER_OUT,
        transfer.sku,
        transfer.source,
        transfer.quantity,
        reference=transfer.transfer_id,
        destination=transfer.destination,
    )
    cause = f"http:transfer:{transfer.transfer_id}"
    _move_or_refuse(book, move, "quantity", cause_event_id=cause, reference_type="transfer")
    row = await store.insert_transfer(conn, transfer)
    in_transit = store.Incoming(
        transfer.sku,
        transfer.destination,
        transfer.quantity,
        transfer.expected_at,
        store.transfer_reference(transfer.transfer_id),
    )
    await store.insert_incoming(conn, in_transit)
    await book.flush(uow)
    await etas.announce_moves(uow)
    return transfer_json(row)


async def receive_transfer(
    uow: UnitOfWork, transfer_id: str, quantity: int | None
) -> dict[str, Any]:
    """Receive a transfer at its destination, in full (`quantity` None) or in part."""
    conn = uow.conn
    row = await store.lock_transfer(conn, transfer_id)
    if row is None:
        raise NotFound(f"transfer_id: no transfer {transfer_id}")
    in_transit = row["quantity"] - row["received"]
    quantity = quantity or in_transit
    if in_transit == 0 or quantity > in_transit:
        raise Conflict(f"quantity: {in_transit} in transit, {quantity} received")
    sku, destination = row["sku"], row["destination"]
    book = await LevelBook.load(conn, [sku])
    etas = await EtaWatch.watch(conn, [sku])
    cause = f"http:transfer:{transfer_id}:received:{row['received'] + quantity}"
    book.move(
        Movement(MovementKind.TRANSFER_IN, sku, destination, quantity, reference=transfer_id),
        cause_event_id=cause,
        reference_type="transfer",
    )
    updated = await store.add_transfer_received(conn, transfer_id, quantity)
    await store.reduce_incoming(conn, store.transfer_reference(transfer_id), quantity)
    await serve_waiting_backorders(
        uow, book, (sku, destination), cause, store.ReservationStore(uow.conn)
    )
    await book.flush(uow)
    await etas.announce_moves(uow)
    return transfer_json(updated)


# ----------------------------------------------------------------------------- states

# The movements that take units from one state to another (written off is final).
STATE_MOVES: dict[tuple[str, str], tuple[MovementKind, ...]] = {
    ("sellable", "damaged"): (MovementKind.TO_DAMAGED,),
    ("sellable", "quality_control"): (MovementKind.TO_QUALITY_CONTROL,),
    ("sellable", "written_off"): (MovementKind.TO_DAMAGED, MovementKind.WRITE_OFF),
    ("damaged", "sellable"): (MovementKind.FROM_DAMAGED,),
    ("damaged", "quality_control"): (
        MovementKind.FROM_DAMAGED,
        MovementKind.TO_QUALITY_CONTROL,
    ),
    ("damaged", "written_off"): (MovementKind.WRITE_OFF,),
    ("quality_control", "sellable"): (MovementKind.FROM_QUALITY_CONTROL,),
    ("quality_control", "damaged"): (
        MovementKind.FROM_QUALITY_CONTROL,
        MovementKind.TO_DAMAGED,
    ),
    ("quality_control", "written_off"): (
        MovementKind.FROM_QUALITY_CONTROL,
        MovementKind.TO_DAMAGED,
        MovementKind.WRITE_OFF,
    ),
}


@dataclass(frozen=True)
class StateMove:
    """Move units of a sku at a location from one state to another (a pair in STATE_MOVES)."""

    change_id: str
    sku: str
    location: str
    quantity: int
    from_state: str
    to_state: str
    reason: str


async def change_state(uow: UnitOfWork, change: StateMove) -> Level:
    """Move units between sellable, damaged and quality control, or write them off."""
    book = await LevelBook.load(uow.conn, [change.sku])
    cause = f"http:state:{change.change_id}"
    if await store.cause_applied(uow.conn, cause):
        raise Conflict(f"change_id: {change.change_id} was already applied")
    for kind in STATE_MOVES[(change.from_state, change.to_state)]:
        move = Movement(
            kind,
            change.sku,
            change.location,
            change.quantity,
            reason=change.reason,
            reference=change.change_id,
        )
        _move_or_refuse(book, move, "quantity", cause_event_id=cause, reference_type="state_change")
    if change.to_state == "sellable":
        await serve_waiting_backorders(
            uow, book, (change.sku, change.location), cause, store.ReservationStore(uow.conn)
        )
    await book.flush(uow)
    return book.level(change.sku, change.location)


def _move_or_refuse(book: LevelBook, movement: Movement, field: str, **recorded: Any) -> None:
    """Move, or refuse with a Conflict naming `field` when the units are not there."""
    try:
        book.move(movement, **recorded)
    except InsufficientStock as exc:
        raise Conflict(f"{field}: {exc}") from exc


# ----------------------------------------------------------------------------- counts, settings


@dataclass(frozen=True)
class CycleCount:
    """`counted` units found where the counter was told `expected` were on hand."""

    count_id: str
    sku: str
    location: str
    expected: int
    counted: int

    @property
    def fact(self) -> Fact:
        says: dict[str, str | int] = {
            "sku": self.sku,
            "location": self.location,
            "expected": self.expected,
            "counted": self.counted,
        }
        return Fact(FactKind.COUNT, self.count_id, says)


async def count_stock(uow: UnitOfWork, count: CycleCount) -> Applied:
    """Adjust on hand to a count, once per `count_id`; the result has the adjustment and the
    new on hand.

    Raises:
        Conflict: the count_id was applied with other values (nothing changes).
        StaleCount: stock moved while counting (nothing changes).
        InsufficientStock: the count would take on hand below what is reserved.
    """
    book = await LevelBook.load(uow.conn, [count.sku])
    cause = f"http:{count.count_id}"
    repeat = await _first_time(uow, count.fact, cause)
    if repeat is not None:
        return repeat
    level = book.level(count.sku, count.location)
    delta = count_adjustment(count.expected, count.counted, level.on_hand)
    if delta:
        book.move(
            Movement(
                MovementKind.ADJUSTMENT,
                count.sku,
                count.location,
                delta,
                reason="cycle_count",
                reference=count.count_id,
            ),
            cause_event_id=cause,
            reference_type="count",
        )
    await book.flush(uow)
    on_hand = book.level(count.sku, count.location).on_hand
    result = {"count_id": count.count_id, "adjusted_by": delta, "on_hand": on_hand}
    await store.keep_fact_result(uow.conn, count.fact, result)
    return Applied(result)


async def set_safety_stock(
    uow: UnitOfWork, where: tuple[str, str], target: int
) -> tuple[int, Level]:
    """Hold `target` units back from sale at `where` (sku, location); returns the change and
    the level. Lowering it frees units, which serve waiting backorders first."""
    sku, location = where
    book = await LevelBook.load(uow.conn, [sku])
    delta = target - book.level(sku, location).safety_stock
    cause = f"http:safety_stock:{uuid.uuid4()}"
    if delta:
        move = Movement(MovementKind.SAFETY_STOCK_SET, sku, location, delta, reason="safety_stock")
        _move_or_refuse(
            book, move, "safety_stock", cause_event_id=cause, reference_type="safety_stock"
        )
    if delta < 0:
        await serve_waiting_backorders(uow, book, where, cause, store.ReservationStore(uow.conn))
    await book.flush(uow)
    return delta, book.level(sku, location)


async def set_reorder_point(uow: UnitOfWork, where: tuple[str, str], reorder_point: int) -> None:
    """Where low-stock alerts start for a (sku, location)."""
    await store.set_reorder_point(uow.conn, *where, reorder_point)


@dataclass(frozen=True)
class AnnouncedReceipt:
    receipt_id: str
    sku: str
    location: str
    quantity: int
    expected_at: datetime


async def announce_receipt(uow: UnitOfWork, expected: AnnouncedReceipt) -> None:
    """Goods on their way from a supplier: the level's `incoming` grows (`incoming_announced`)
    until the receipt with the same `receipt_id` arrives; backorders take their dates from it
    (and hear when theirs moved).

    Raises:
        Conflict: the receipt_id was announced already.
    """
    await store.ensure_location(uow.conn, expected.location)
    book = await LevelBook.load(uow.conn, [expected.sku])
    etas = await EtaWatch.watch(uow.conn, [expected.sku])
    incoming = store.Incoming(
        expected.sku,
        expected.location,
        expected.quantity,
        expected.expected_at,
        store.receipt_reference(expected.receipt_id),
    )
    if not await store.insert_incoming(uow.conn, incoming):
        raise Conflict(f"receipt_id: {expected.receipt_id} already announced")
    book.move(
        Movement(
            MovementKind.INCOMING_ANNOUNCED,
            expected.sku,
            expected.location,
            expected.quantity,
            reference=expected.receipt_id,
        ),
        cause_event_id=f"http:incoming:{expected.receipt_id}",
        reference_type="receipt",
    )
    await book.flush(uow)
    await etas.announce_moves(uow)


@dataclass(frozen=True)
class LocationSpec:
    code: str
    name: str
    kind: str
    priority: int
    bins: Sequence[str]


async def put_location(uow: UnitOfWork, location: LocationSpec) -> dict[str, Any]:
    """Create or update a location: its kind, its shipping priority and its bins."""
    return await store.upsert_location(
        uow.conn,
        location.code,
        name=location.name,
        kind=location.kind,
        priority=location.priority,
        bins=sorted(set(location.bins)),
    )
