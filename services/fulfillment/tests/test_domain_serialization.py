"""Stored state: shipments, returns and pick lists survive a JSON round trip unchanged."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from stockflow.fulfillment.domain import (
    Address,
    Dimensions,
    Inspection,
    Label,
    Package,
    PickList,
    ReturnAuthorization,
    ReturnCondition,
    ServiceLevel,
    Shipment,
    ShipmentLine,
    TrackingStatus,
    TrackingUpdate,
    build_pick_list,
)

NOW = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
HOME = Address("Ada Lovelace", "12 St James's Square", "London", "SW1Y 4JH", "GB", "Flat 2")
LABEL = Label("stockflow-post", "CP000000014GB", ServiceLevel.EXPRESS, b"%PDF-1.4 label")


def through_json(data: dict) -> dict:
    return json.loads(json.dumps(data))


def new_shipment() -> Shipment:
    return Shipment(
        "ORD-1-S1",
        "ORD-1",
        "LEEDS",
        HOME,
        (ShipmentLine("L1", "MUG-RED", 2), ShipmentLine("L2", "TEA-1KG", 1)),
        service_level=ServiceLevel.EXPRESS,
    )


def test_a_new_shipment_round_trips() -> None:
    shipment = new_shipment()
    assert Shipment.from_dict(through_json(shipment.to_dict())) == shipment


def test_a_shipment_in_transit_round_trips_with_its_label_document_kept_apart() -> None:
    shipment = new_shipment()
    shipment.start_picking()
    shipment.record_picks({"L1": 2, "L2": 1})
    shipment.pack([Package(900, Dimensions(300, 200, 100)), Package(400, Dimensions(10, 20, 30))])
    shipment.record_label(LABEL)
    shipment.ship(NOW)
    shipment.apply_tracking(
        TrackingUpdate(LABEL.tracking_number, TrackingStatus.IN_TRANSIT, NOW + timedelta(hours=2))
    )

    data = through_json(shipment.to_dict())

    assert "document" not in json.dumps(data)
    restored = Shipment.from_dict(data, label_document=LABEL.document)
    assert restored == shipment
    assert restored.label is not None and restored.label.document == LABEL.document


def test_a_cancelled_shipment_keeps_its_reason() -> None:
    shipment = new_shipment()
    shipment.cancel("customer changed their mind")
    restored = Shipment.from_dict(through_json(shipment.to_dict()))
    assert restored.cancel_reason == "customer changed their mind"
    assert restored.status == shipment.status


def test_a_return_round_trips_at_every_step() -> None:
    rma = ReturnAuthorization(
        "RMA-1", "ORD-1", (ShipmentLine("L1", "MUG-RED", 2),), reason="arrived chipped"
    )
    assert ReturnAuthorization.from_dict(through_json(rma.to_dict())) == rma
    rma.receive("LEEDS", NOW)
    assert ReturnAuthorization.from_dict(through_json(rma.to_dict())) == rma
    rma.inspect(
        [
            Inspection("L1", 1, ReturnCondition.RESTOCK),
            Inspection("L1", 1, ReturnCondition.WRITE_OFF),
        ]
    )
    assert ReturnAuthorization.from_dict(through_json(rma.to_dict())) == rma


def test_a_pick_list_round_trips_in_walking_order() -> None:
    first, second = new_shipment(), new_shipment()
    second.shipment_id = "ORD-2-S1"
    pick_list = build_pick_list([first, second], {"MUG-RED": "B-02-1", "TEA-1KG": "A-01-1"})
    restored = PickList.from_dict(through_json(pick_list.to_dict()))
    assert restored == pick_list
    assert [line.sku for line in restored.lines] == ["TEA-1KG", "MUG-RED"]
