"""The stock invariants against a real schema: a consistent state passes, and each corruption is
found by exactly the invariant it breaks."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from stockflow.runtime.db import migrate
from stockflow.runtime.invariants import Violation, find_violations
from stockflow.runtime.outbox import unit_of_work
from stockflow.stock import invariants
from stockflow.stock.domain import Movement, MovementKind
from stockflow.stock.ledger import LevelBook

pytestmark = pytest.mark.integration

MIGRATIONS = Path(invariants.__file__).parent / "migrations"
K = MovementKind


async def build_consistent_stock(pool) -> None:
    """Every kind of movement through LevelBook, with the rows the handlers keep beside them."""
    moves = [
        (Movement(K.RECEIPT, "SKU1", "WH-A", 20, reference="r1"), {}),
        (Movement(K.RESERVATION, "SKU1", "WH-A", 4, reference="O1"), {"order_id": "O1"}),
        (Movement(K.SHIPMENT, "SKU1", "WH-A", 1, reference="S1"), {"order_id": "O1"}),
        (Movement(K.BACKORDER_OPENED, "SKU1", "WH-A", 3, reference="O2"), {"order_id": "O2"}),
        (Movement(K.BACKORDER_ALLOCATED, "SKU1", "WH-A", 1, reference="O2"), {"order_id": "O2"}),
        (Movement(K.RESERVATION, "SKU1", "WH-A", 2, reference="O3"), {"order_id": "O3"}),
        (Movement(K.RELEASE, "SKU1", "WH-A", 2, reference="O3"), {"order_id": "O3"}),
        (Movement(K.TO_DAMAGED, "SKU1", "WH-A", 2), {}),
        (Movement(K.WRITE_OFF, "SKU1", "WH-A", 1), {}),
        (Movement(K.TO_QUALITY_CONTROL, "SKU1", "WH-A", 2), {}),
        (Movement(K.FROM_QUALITY_CONTROL, "SKU1", "WH-A", 1), {}),
        (Movement(K.SAFETY_STOCK_SET, "SKU1", "WH-A", 2), {}),
        (Movement(K.ADJUSTMENT, "SKU1", "WH-A", -1, reason="cycle_count"), {}),
        (
            Movement(K.TRANSFER_OUT, "SKU1", "WH-A", 3, reference="T1", destination="WH-B"),
            {"reference_type": "transfer"},
        ),
        (
            Movement(K.TRANSFER_IN, "SKU1", "WH-B", 1, reference="T1"),
            {"reference_type": "transfer"},
        ),
        # Business keys: a receipt, an announced receipt and a return line each recorded once.
        (Movement(K.RECEIPT, "SKU1", "WH-B", 5, reference="R2"), {"reference_type": "receipt"}),
        (
            Movement(K.INCOMING_ANNOUNCED, "SKU1", "WH-B", 4, reference="R3"),
            {"reference_type": "receipt"},
        ),
        (
            Movement(K.RETURN_WRITTEN_OFF, "SKU1", "WH-A", 1, reference="RMA1"),
            {"reference_type": "rma", "order_id": "O1"},
        ),
        (
            Movement(K.ADJUSTMENT, "SKU1", "WH-B", 1, reason="cycle_count", reference="C1"),
            {"reference_type": "count"},
        ),
        # O4's kit (see add_waiting_kit): its parts backordered, then partly received
        *(
            (Movement(kind, sku, "WH-A", n, reference=ref), extra)
            for sku, ordered, came in (("SKU2", 2, 2), ("SKU3", 4, 3))
            for kind, n, ref, extra in (
                (K.RECEIPT, came, "r2", {}),
                (K.BACKORDER_OPENED, ordered, "O4", {"order_id": "O4"}),
                (K.BACKORDER_ALLOCATED, came, "O4", {"order_id": "O4"}),
            )
        ),
    ]
    causes = {
        ("O1", K.RESERVATION): "reserve-O1",
        ("O1", K.SHIPMENT): "ship-S1",
        ("O2", K.BACKORDER_OPENED): "reserve-O2",
        ("O2", K.BACKORDER_ALLOCATED): "receipt-7",
        ("O3", K.RESERVATION): "reserve-O3",
        ("O3", K.RELEASE): "cancel-O3",
    }
    async with unit_of_work(pool, source="test") as uow:
        book = await LevelBook.load(uow.conn, ["SKU1"])
        for movement, extra in moves:
            reference_type = "shipment" if movement.kind is K.SHIPMENT else "order"
            book.move(
                movement,
                cause_event_id=causes.get((extra.get("order_id"), movement.kind), "c"),
                **{"reference_type": reference_type} | extra,
            )
        await book.flush(uow)
        await uow.conn.execute(
            "INSERT INTO reservations (order_id, line_id, sku, location, quantity, committed) "
            "VALUES ('O1', 'L1', 'SKU1', 'WH-A', 3, 1), ('O2', 'L1', 'SKU1', 'WH-A', 1, 0)"
        )
        await uow.conn.execute(
            "INSERT INTO reservations (order_id, line_id, sku, location, quantity, released) "
            "VALUES ('O3', 'L1', 'SKU1', 'WH-A', 0, 2)"
        )
        await uow.conn.execute(
            "INSERT INTO backorders (order_id, line_id, sku, location, quantity, open) "
            "VALUES ('O2', 'L1', 'SKU1', 'WH-A', 3, 2)"
        )
        await uow.conn.execute(
            "INSERT INTO transfers (transfer_id, sku, source, destination, quantity, received) "
            "VALUES ('T1', 'SKU1', 'WH-A', 'WH-B', 3, 1)"
        )
        await uow.conn.execute(
            "INSERT INTO applied_facts (kind, key, says, cause_event_id) VALUES "
            """('receipt', 'R2', '{"sku": "SKU1", "location": "WH-B", "quantity": 5}', 'c'), """
            """('return_line', 'RMA1:L1', '{"rma_id": "RMA1", "quantity": 1}', 'c'), """
            """('count', 'C1', '{"counted": 1}', 'c')"""
        )
        await add_waiting_kit(uow.conn)


async def add_waiting_kit(conn) -> None:
    """O4 waits for 2 kits of 1 SKU2 and 2 SKU3: 2 SKU2 and 3 SKU3 came, so 1 kit is whole
    and announced (the rows the fills wrote beside their movements)."""
    await conn.execute(
        "INSERT INTO bundle_backorders (order_id, line_id, sku, location, quantity, allocated, "
        "components) VALUES ('O4', 'L1', 'KIT', 'WH-A', 2, 1, "
        """'[{"sku": "SKU2", "quantity": 1}, {"sku": "SKU3", "quantity": 2}]')"""
    )
    await conn.execute(
        "INSERT INTO backorders (order_id, line_id, sku, location, quantity, open) "
        "VALUES ('O4', 'L1', 'SKU2', 'WH-A', 2, 0), ('O4', 'L1', 'SKU3', 'WH-A', 4, 1)"
    )
    await conn.execute(
        "INSERT INTO reservations (order_id, line_id, sku, location, quantity) "
        "VALUES ('O4', 'L1', 'SKU2', 'WH-A', 2), ('O4', 'L1', 'SKU3', 'WH-A', 3)"
    )


@pytest.fixture
async def stock(scratch_schema, infra):
    schema, pool = scratch_schema
    await migrate(infra.admin_database_url, schema, MIGRATIONS)
    await build_consistent_stock(pool)
    return schema, pool


async def violations(schema, pool) -> list[Violation]:
    async with pool.acquire() as conn:
        return await find_violations(conn, schema, invariants.INVARIANTS)


async def test_a_consistent_ledger_has_no_violation(stock):
    schema, pool = stock
    assert await violations(schema, pool) == []
    level = await pool.fetchrow("SELECT * FROM levels WHERE sku = 'SKU1' AND location = 'WH-A'")
    # The state exercises every bucket, so a wrong effect in the ledger replay would show.
    assert (level["on_hand"], level["reserved"], level["damaged"]) == (14, 4, 1)
    assert (level["quality_control"], level["safety_stock"], level["backordered"]) == (1, 2, 2)
    # In transit from T1 (2) and announced by R3 (4).
    assert await pool.fetchval("SELECT incoming FROM levels WHERE location = 'WH-B'") == 6


# Each corruption, as an operator's stray SQL would make it, and the one invariant it breaks.
CORRUPTIONS = {
    "reserved_is_open_reservations": [
        "UPDATE reservations SET quantity = quantity + 3 WHERE order_id = 'O1'"
    ],
    "backordered_is_open_backorders": ["UPDATE backorders SET open = open - 1 WHERE sku = 'SKU1'"],
    # The 4th SKU3 arrives and fills the kit, every row consistent, but no kit is announced.
    "bundle_backorder_allocated_whole": [
        "INSERT INTO movements (movement_id, sku, location, kind, quantity, cause_event_id) "
        "VALUES (gen_random_uuid(), 'SKU3', 'WH-A', 'receipt', 1, 'r3')",
        "INSERT INTO movements (movement_id, sku, location, kind, quantity, order_id, "
        "reference_type, reference_id, cause_event_id) VALUES (gen_random_uuid(), 'SKU3', "
        "'WH-A', 'backorder_allocated', 1, 'O4', 'order', 'O4', 'r3')",
        "UPDATE levels SET on_hand = on_hand + 1, reserved = reserved + 1, "
        "backordered = backordered - 1 WHERE sku = 'SKU3'",
        "UPDATE reservations SET quantity = quantity + 1 WHERE order_id = 'O4' AND sku = 'SKU3'",
        "UPDATE backorders SET open = 0 WHERE order_id = 'O4' AND sku = 'SKU3'",
    ],
    **{
        f"ledger_explains_levels:{bucket}": [
            f"UPDATE levels SET {bucket} = {bucket} + 1 WHERE sku = 'SKU1' AND location = 'WH-B'"
        ]
        for bucket in ("on_hand", "damaged", "quality_control", "safety_stock", "incoming")
    },
    "receipt_applied_once": [
        # The WMS retried receipt R2 under a new event id and it counted twice, consistently.
        "INSERT INTO movements (movement_id, sku, location, kind, quantity, reference_type, "
        "reference_id, cause_event_id) VALUES (gen_random_uuid(), 'SKU1', 'WH-B', 'receipt', "
        "5, 'receipt', 'R2', 'wms-retry')",
        "UPDATE levels SET on_hand = on_hand + 5 WHERE sku = 'SKU1' AND location = 'WH-B'",
    ],
    "return_applied_once": [
        "INSERT INTO movements (movement_id, sku, location, kind, quantity, order_id, "
        "reference_type, reference_id, cause_event_id) VALUES (gen_random_uuid(), 'SKU1', "
        "'WH-A', 'return_written_off', 1, 'O1', 'rma', 'RMA1', 'return-again')",
    ],
    "count_applied_once": [
        "INSERT INTO movements (movement_id, sku, location, kind, quantity, reason, "
        "reference_type, reference_id, cause_event_id) VALUES (gen_random_uuid(), 'SKU1', "
        "'WH-B', 'adjustment', 1, 'cycle_count', 'count', 'C1', 'count-again')",
        "UPDATE levels SET on_hand = on_hand + 1 WHERE sku = 'SKU1' AND location = 'WH-B'",
    ],
    "no_oversell": [
        # The database refuses an oversell itself; a bug that dropped the check would not.
        "ALTER TABLE levels DROP CONSTRAINT levels_available_never_negative",
        "INSERT INTO movements (movement_id, sku, location, kind, quantity, order_id, "
        "reference_type, cause_event_id) VALUES (gen_random_uuid(), 'SKU1', 'WH-A', "
        "'reservation', 100, 'O9', 'order', 'reserve-O9')",
        "INSERT INTO reservations (order_id, line_id, sku, location, quantity) "
        "VALUES ('O9', 'L1', 'SKU1', 'WH-A', 100)",
        "UPDATE levels SET reserved = reserved + 100 WHERE sku = 'SKU1' AND location = 'WH-A'",
    ],
    "reservation_applied_once": [
        # A second reserve command for O1, applied consistently everywhere.
        "INSERT INTO movements (movement_id, sku, location, kind, quantity, order_id, "
        "reference_type, cause_event_id) VALUES (gen_random_uuid(), 'SKU1', 'WH-A', "
        "'reservation', 2, 'O1', 'order', 'reserve-O1-again')",
        "UPDATE reservations SET quantity = quantity + 2 WHERE order_id = 'O1'",
        "UPDATE levels SET reserved = reserved + 2 WHERE sku = 'SKU1' AND location = 'WH-A'",
    ],
    "shipment_applied_once": [
        "INSERT INTO movements (movement_id, sku, location, kind, quantity, order_id, "
        "reference_type, reference_id, cause_event_id) VALUES (gen_random_uuid(), 'SKU1', "
        "'WH-A', 'shipment', -1, 'O1', 'shipment', 'S1', 'ship-S1-again')",
        "UPDATE reservations SET quantity = quantity - 1, committed = committed + 1 "
        "WHERE order_id = 'O1'",
        "UPDATE levels SET reserved = reserved - 1, on_hand = on_hand - 1 "
        "WHERE sku = 'SKU1' AND location = 'WH-A'",
    ],
}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
async def test_each_corruption_is_found_by_its_invariant_only(stock, case):
    schema, pool = stock
    for statement in CORRUPTIONS[case]:
        await pool.execute(statement)
    found = await violations(schema, pool)
    # Stray SQL on a level also changes it without a record on stock.levels.v1.
    unpublished = any(s.startswith("UPDATE levels") for s in CORRUPTIONS[case])
    expected = {case.split(":")[0]} | ({"level_changes_published"} if unpublished else set())
    assert {v.invariant for v in found} == expected, found


async def test_a_level_changed_outside_the_level_book_is_found_unpublished(stock):
    schema, pool = stock
    await pool.execute("UPDATE levels SET incoming = incoming + 1 WHERE location = 'WH-B'")
    await pool.execute("UPDATE levels SET reorder_point = 5 WHERE location = 'WH-A'")  # no bucket
    found = await violations(schema, pool)
    published = [v for v in found if v.invariant == "level_changes_published"]
    assert [(v.subject, v.detail) for v in published] == [
        ("SKU1@WH-B", "version 2, last published 1")
    ]


async def test_a_backorder_fill_is_not_a_second_reservation(stock):
    """Reservations a receipt makes for a waiting backorder come with a backorder movement of
    the same cause: reservation_applied_once must not count them as a reserve command."""
    schema, pool = stock
    async with unit_of_work(pool, source="test") as uow:
        book = await LevelBook.load(uow.conn, ["SKU1"])
        for movement in (
            Movement(K.BACKORDER_CANCELLED, "SKU1", "WH-A", 2, reference="O2"),
            Movement(K.RESERVATION, "SKU1", "WH-B", 1, reference="O2"),
        ):
            book.move(movement, cause_event_id="receipt-9", order_id="O2", reference_type="order")
        await book.flush(uow)
        await uow.conn.execute("UPDATE backorders SET open = 0 WHERE order_id = 'O2'")
        await uow.conn.execute(
            "INSERT INTO reservations (order_id, line_id, sku, location, quantity) "
            "VALUES ('O2', 'L1', 'SKU1', 'WH-B', 1)"
        )
    assert await violations(schema, pool) == []


def test_an_alert_names_the_level_when_the_subject_is_one():
    now = datetime.now(UTC)
    level = invariants.alert(Violation("no_oversell", "SKU1@WH-A", "available=-1"), now)
    assert (level.sku, level.location, level.invariant) == ("SKU1", "WH-A", "no_oversell")
    order = invariants.alert(Violation("reservation_applied_once", "O1", "2 commands"), now)
    assert (order.sku, order.location, order.detail) == ("*", None, "O1: 2 commands")
