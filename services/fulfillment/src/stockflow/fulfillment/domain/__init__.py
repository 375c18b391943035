"""The fulfillment domain: plain Python, no I/O. Handlers translate messages to these calls.

- planning: a confirmed order → one shipment per location; backorder fills → later shipments
- shipment: the shipment's steps (pick, pack, label, ship, track, cancel) and their events
- picking: pick lists in aisle-walking order, batch picking, bundles picked as their
  components, short picks → stock discrepancies
- packing: packages, defaults from variant data, dimensional weight
- carriers: the carrier protocol, rate shopping, the built-in carrier "stockflow-post"
- s10: UPU S10 tracking numbers and their check digit
- returns: RMA authorize → receive → inspect (restock or write off)
"""

from stockflow.fulfillment.domain.carriers import (
    Carrier,
    CarrierChoice,
    CarrierReach,
    Label,
    LabelContent,
    LabelRenderer,
    LabelRequest,
    ParcelLimits,
    Rate,
    StockflowPost,
    Tariff,
    shop_rates,
)
from stockflow.fulfillment.domain.common import Address, ServiceLevel, ShipmentLine
from stockflow.fulfillment.domain.errors import (
    CancelRefused,
    FulfillmentError,
    IllegalShipmentStep,
    InvalidPick,
    NoCarrierAvailable,
    PackingError,
    ReturnRefused,
)
from stockflow.fulfillment.domain.packing import Dimensions, Package, VariantSpec, build_package
from stockflow.fulfillment.domain.picking import (
    BundlePart,
    PickAssignment,
    PickConfirmation,
    PickList,
    PickListLine,
    StockDiscrepancy,
    bin_walk_key,
    build_pick_list,
)
from stockflow.fulfillment.domain.planning import (
    AllocatedUnits,
    ConfirmedLine,
    LocationQuantity,
    ShipmentPlan,
    plan_backorder_shipments,
    plan_confirmed_order,
    shipment_id_for,
)
from stockflow.fulfillment.domain.returns import (
    InspectedLine,
    Inspection,
    ReturnAuthorization,
    ReturnCondition,
    ReturnReceived,
    ReturnStatus,
    authorize_return,
    returnable,
)
from stockflow.fulfillment.domain.s10 import format_s10, is_valid_s10, s10_check_digit
from stockflow.fulfillment.domain.shipment import (
    Shipment,
    ShipmentCancelled,
    ShipmentShipped,
    ShipmentShortened,
    ShipmentStatus,
    TrackingStatus,
    TrackingStatusChanged,
    TrackingUpdate,
    plan_unit_drops,
)

__all__ = [
    "Address",
    "AllocatedUnits",
    "BundlePart",
    "CancelRefused",
    "Carrier",
    "CarrierChoice",
    "CarrierReach",
    "ConfirmedLine",
    "Dimensions",
    "FulfillmentError",
    "IllegalShipmentStep",
    "InspectedLine",
    "Inspection",
    "InvalidPick",
    "Label",
    "LabelContent",
    "LabelRenderer",
    "LabelRequest",
    "LocationQuantity",
    "NoCarrierAvailable",
    "Package",
    "PackingError",
    "ParcelLimits",
    "PickAssignment",
    "PickConfirmation",
    "PickList",
    "PickListLine",
    "Rate",
    "ReturnAuthorization",
    "ReturnCondition",
    "ReturnReceived",
    "ReturnRefused",
    "ReturnStatus",
    "ServiceLevel",
    "Shipment",
    "ShipmentCancelled",
    "ShipmentLine",
    "ShipmentPlan",
    "ShipmentShipped",
    "ShipmentShortened",
    "ShipmentStatus",
    "StockDiscrepancy",
    "StockflowPost",
    "Tariff",
    "TrackingStatus",
    "TrackingStatusChanged",
    "TrackingUpdate",
    "VariantSpec",
    "authorize_return",
    "bin_walk_key",
    "build_package",
    "build_pick_list",
    "format_s10",
    "is_valid_s10",
    "plan_backorder_shipments",
    "plan_confirmed_order",
    "plan_unit_drops",
    "returnable",
    "s10_check_digit",
    "shipment_id_for",
    "shop_rates",
]
