"""Returns (RMA): authorize up to what shipped, receive, inspect into restock or write-off."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from stockflow.fulfillment.domain import (
    Address,
    Dimensions,
    InspectedLine,
    Inspection,
    Label,
    Package,
    ReturnAuthorization,
    ReturnCondition,
    ReturnReceived,
    ReturnRefused,
    ReturnStatus,
    ServiceLevel,
    Shipment,
    ShipmentLine,
    authorize_return,
    returnable,
)

NOW = datetime(2025, 3, 9, 14, 0, tzinfo=UTC)
HOME = Address("Ada Lovelace", "12 St James's Square", "London", "SW1Y 4JH", "GB")
RESTOCK = ReturnCondition.RESTOCK
WRITE_OFF = ReturnCondition.WRITE_OFF


def shipped(shipment_id: str, *lines: ShipmentLine) -> Shipment:
    shipment = Shipment(shipment_id, "ORD-1", "LEEDS", HOME, lines)
    shipment.start_picking()
    shipment.record_picks({line.line_id: line.quantity for line in lines})
    shipment.pack([Package(500, Dimensions(100, 100, 100))])
    shipment.record_label(Label("stockflow-post", "CP000000014GB", ServiceLevel.STANDARD, b""))
    shipment.ship(NOW)
    return shipment


SHIPMENTS = [
    shipped("ORD-1-S1", ShipmentLine("L1", "MUG", 2), ShipmentLine("L2", "TEA", 1)),
    shipped("ORD-1-S2", ShipmentLine("L1", "MUG", 1)),  # the backordered mug, shipped later
]


def authorize(
    requested: dict[str, int], earlier: list[ReturnAuthorization] | None = None
) -> ReturnAuthorization:
    return authorize_return("RMA-1", "ORD-1", requested, SHIPMENTS, earlier or [], "damaged")


def test_authorize_up_to_what_was_shipped_across_shipments() -> None:
    rma = authorize({"L1": 3, "L2": 1})

    assert rma.status is ReturnStatus.AUTHORIZED
    assert rma.lines == (ShipmentLine("L1", "MUG", 3), ShipmentLine("L2", "TEA", 1))
    assert (rma.rma_id, rma.order_id, rma.reason) == ("RMA-1", "ORD-1", "damaged")


def test_returning_more_than_shipped_is_refused_with_the_numbers() -> None:
    with pytest.raises(ReturnRefused) as refused:
        authorize({"L1": 4})
    assert str(refused.value) == (
        "Cannot return 4 × MUG (line L1): 3 shipped, 0 already returned or on an open return, "
        "so at most 3 can be returned."
    )


def test_earlier_returns_count_against_what_can_be_returned() -> None:
    first = authorize({"L1": 2})

    assert returnable(SHIPMENTS, [first])["L1"] == ShipmentLine("L1", "MUG", 1)
    with pytest.raises(ReturnRefused, match=r"3 shipped, 2 already returned .* at most 1"):
        authorize({"L1": 2}, [first])
    assert authorize({"L1": 1}, [first]).lines == (ShipmentLine("L1", "MUG", 1),)


def test_a_received_return_counts_what_actually_arrived() -> None:
    first = authorize({"L1": 3})
    first.receive("LEEDS", NOW, {"L1": 1})

    assert returnable(SHIPMENTS, [first])["L1"].quantity == 2


def test_unshipped_lines_cannot_be_returned() -> None:
    pending = Shipment("ORD-1-S3", "ORD-1", "LEEDS", HOME, (ShipmentLine("L3", "LAMP", 1),))

    with pytest.raises(ReturnRefused, match="Line L3 of order ORD-1 has not been shipped"):
        authorize_return("RMA-1", "ORD-1", {"L3": 1}, [*SHIPMENTS, pending], [], "unwanted")


@pytest.mark.parametrize("requested", [{}, {"L1": 0}, {"L1": -1}])
def test_a_return_needs_units(requested: dict[str, int]) -> None:
    with pytest.raises(ReturnRefused, match="at least one line"):
        authorize(requested)


def test_receive_and_inspect_one_restocked_and_one_written_off_line() -> None:
    rma = authorize({"L1": 1, "L2": 1})
    rma.receive("LEEDS", NOW)

    received = rma.inspect([Inspection("L1", 1, RESTOCK), Inspection("L2", 1, WRITE_OFF)])

    assert rma.status is ReturnStatus.INSPECTED
    assert received == ReturnReceived(
        rma_id="RMA-1",
        order_id="ORD-1",
        location="LEEDS",
        received_at=NOW,
        lines=(
            InspectedLine("L1", "MUG", 1, RESTOCK),
            InspectedLine("L2", "TEA", 1, WRITE_OFF),
        ),
    )


def test_one_line_can_be_split_between_restock_and_write_off() -> None:
    rma = authorize({"L1": 3})
    rma.receive("BRISTOL", NOW)

    received = rma.inspect([Inspection("L1", 2, RESTOCK), Inspection("L1", 1, WRITE_OFF)])

    assert received.location == "BRISTOL"
    assert received.lines == (
        InspectedLine("L1", "MUG", 2, RESTOCK),
        InspectedLine("L1", "MUG", 1, WRITE_OFF),
    )


def test_partial_receipt_inspects_only_what_arrived() -> None:
    rma = authorize({"L1": 2, "L2": 1})
    rma.receive("LEEDS", NOW, {"L1": 1})

    assert rma.received == (ShipmentLine("L1", "MUG", 1),)
    with pytest.raises(ReturnRefused, match="Line L2 was not received"):
        rma.inspect([Inspection("L1", 1, RESTOCK), Inspection("L2", 1, RESTOCK)])
    assert rma.inspect([Inspection("L1", 1, RESTOCK)]).lines == (
        InspectedLine("L1", "MUG", 1, RESTOCK),
    )


@pytest.mark.parametrize(
    ("quantities", "message"),
    [
        ({"L1": 3}, "authorizes 2 × MUG; 3 cannot be received"),
        ({"L9": 1}, "Line L9 is not on return RMA-1"),
        ({"L1": 0}, "Nothing was received for return RMA-1"),
    ],
)
def test_impossible_receipts_are_refused(quantities: dict[str, int], message: str) -> None:
    rma = authorize({"L1": 2})

    with pytest.raises(ReturnRefused, match=message):
        rma.receive("LEEDS", NOW, quantities)
    assert rma.status is ReturnStatus.AUTHORIZED


def test_every_received_unit_must_be_inspected_exactly_once() -> None:
    rma = authorize({"L1": 2})
    rma.receive("LEEDS", NOW)

    with pytest.raises(ReturnRefused, match="inspect exactly 2, not 1"):
        rma.inspect([Inspection("L1", 1, RESTOCK)])
    with pytest.raises(ReturnRefused, match="inspect exactly 2, not 3"):
        rma.inspect([Inspection("L1", 2, RESTOCK), Inspection("L1", 1, WRITE_OFF)])
    with pytest.raises(ReturnRefused, match="at least one unit"):
        rma.inspect([Inspection("L1", 0, RESTOCK), Inspection("L1", 2, RESTOCK)])
    assert rma.status is ReturnStatus.RECEIVED


def test_steps_out_of_order_are_refused() -> None:
    rma = authorize({"L1": 1})
    with pytest.raises(ReturnRefused, match="Cannot inspect return RMA-1: it is not received"):
        rma.inspect([Inspection("L1", 1, RESTOCK)])

    rma.receive("LEEDS", NOW)
    with pytest.raises(ReturnRefused, match="already received"):
        rma.receive("LEEDS", NOW)

    rma.inspect([Inspection("L1", 1, RESTOCK)])
    with pytest.raises(ReturnRefused, match="it is already inspected"):
        rma.inspect([Inspection("L1", 1, RESTOCK)])
