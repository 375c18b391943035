"""The stock service's topics: commands, replies, levels, movements and alerts."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, StrictBool, StringConstraints, model_validator

from stockflow.contracts.base import Event, register
from stockflow.contracts.events._shared import (
    MAX_ALLOCATIONS,
    MAX_LINES,
    Allocation,
    Attempt,
    BackorderPolicy,
    Count,
    LineItem,
    LocatedLine,
    Part,
    Priority,
    Reference,
    RejectionReason,
    Version,
    require_unique_lines,
)
from stockflow.contracts.types import (
    Currency,
    DecimalString,
    Identifier,
    LocationCode,
    LongText,
    NonNegativeMoney,
    NonNegativeQuantity,
    Quantity,
    ShortText,
    SignedQuantity,
    Sku,
    StockCount,
    Timestamp,
)

COMMANDS = "stock.commands.v1"
EVENTS = "stock.events.v1"
LEVELS = "stock.levels.v1"
MOVEMENTS = "stock.movements.v1"
ALERTS = "stock.alerts.v1"

# --- stock.commands.v1 (key order_id) -------------------------------------------------------


class ReserveLine(LineItem):
    """A line to reserve."""


@register
class ReserveStock(Event):
    """Reserve every line of an order in one transaction (idempotent per order_id)."""

    event_type: ClassVar[str] = "stock.reserve.requested.v1"
    topic: ClassVar[str] = COMMANDS
    key_field: ClassVar[str] = "order_id"

    order_id: Identifier
    lines: list[ReserveLine] = Field(min_length=1, max_length=MAX_LINES)
    backorder_policy: BackorderPolicy | None = Field(
        default=None, description="None follows each sku's catalog backorderable flag."
    )
    priority: Priority = 0
    attempt: Attempt = 1

    @model_validator(mode="after")
    def _unique_lines(self) -> ReserveStock:
        require_unique_lines(self.lines)
        return self


class ReleaseLine(LocatedLine):
    """Units of one order line to release at one location.

    `not_found`: the picker did not find them on the shelf (a short pick). Stock takes them off
    on hand as well (an `adjustment`, until a count says otherwise), so units that are not
    there are never offered for sale again. `backorder`: the line still wants them; stock
    queues them as a backorder of the line, served at once from any location that has them
    (`stock.backorder.allocated.v1`), else when goods arrive.
    """

    not_found: StrictBool = False
    backorder: StrictBool = False


@register
class ReleaseReservation(Event):
    """Release what an order holds: everything (cancellation, payment timeout), or only
    `lines` (units of a line cancelled, or lost at a short pick)."""

    event_type: ClassVar[str] = "stock.release.requested.v1"
    topic: ClassVar[str] = COMMANDS
    key_field: ClassVar[str] = "order_id"

    order_id: Identifier
    reason: ShortText
    lines: list[ReleaseLine] | None = Field(
        default=None,
        max_length=MAX_LINES,
        description="Only these units (at most what the line holds there); none: everything.",
    )


@register
class CommitReservation(Event):
    """Turn the reserved units of a shipment into a shipment out of stock (on hand falls)."""

    event_type: ClassVar[str] = "stock.commit.requested.v1"
    topic: ClassVar[str] = COMMANDS
    key_field: ClassVar[str] = "order_id"

    order_id: Identifier
    shipment_id: Identifier
    lines: list[LocatedLine] = Field(min_length=1, max_length=MAX_LINES)


# --- stock.events.v1 (key order_id) ---------------------------------------------------------


class ReservedLine(Part):
    """How one line was served: reserved now, backordered for later, or untracked."""

    line_id: Identifier
    sku: Sku
    requested: Quantity
    reserved: NonNegativeQuantity
    backordered: NonNegativeQuantity
    untracked: StrictBool = False
    allocations: list[Allocation] = Field(default_factory=list, max_length=MAX_ALLOCATIONS)
    expected_date: Timestamp | None = None

    @model_validator(mode="after")
    def _adds_up(self) -> ReservedLine:
        if self.reserved + self.backordered != self.requested:
            raise ValueError("reserved + backordered must equal requested")
        return self


class ShortLine(Part):
    """A sku that could not be served: requested versus available."""

    sku: Sku
    requested: Quantity
    available: Count
    reason: RejectionReason | None = Field(
        default=None, description="Why this sku refused the order (absent in older records)."
    )


@register
class StockReserved(Event):
    """Every line is reserved or backordered; `complete` when nothing is backordered."""

    event_type: ClassVar[str] = "stock.reserved.v1"
    topic: ClassVar[str] = EVENTS
    key_field: ClassVar[str] = "order_id"

    order_id: Identifier
    lines: list[ReservedLine] = Field(min_length=1, max_length=MAX_LINES)
    complete: StrictBool

    @model_validator(mode="after")
    def _complete_means_no_backorder(self) -> StockReserved:
        if self.complete != all(line.backordered == 0 for line in self.lines):
            raise ValueError("complete must be true exactly when no line is backordered")
        return self


@register
class ReservationRejected(Event):
    """Nothing was reserved for the order; `lines` names the skus at fault."""

    event_type: ClassVar[str] = "stock.reservation.rejected.v1"
    topic: ClassVar[str] = EVENTS
    key_field: ClassVar[str] = "order_id"

    order_id: Identifier
    reason: RejectionReason
    lines: list[ShortLine] = Field(default_factory=list, max_length=MAX_LINES)


@register
class StockReleased(Event):
    """The order's reservation was released (or there was nothing to release)."""

    event_type: ClassVar[str] = "stock.released.v1"
    topic: ClassVar[str] = EVENTS
    key_field: ClassVar[str] = "order_id"

    order_id: Identifier
    outcome: Literal["released", "already_released", "already_committed", "unknown_reservation"]
    lines: list[LocatedLine] = Field(default_factory=list, max_length=MAX_LINES)


@register
class StockCommitted(Event):
    """A shipment's reserved units left stock (or the commit was a repeat)."""

    event_type: ClassVar[str] = "stock.committed.v1"
    topic: ClassVar[str] = EVENTS
    key_field: ClassVar[str] = "order_id"

    order_id: Identifier
    shipment_id: Identifier
    outcome: Literal["committed", "already_committed", "already_released", "unknown_reservation"]
    lines: list[LocatedLine] = Field(default_factory=list, max_length=MAX_LINES)


@register
class BackorderAllocated(Event):
    """Received goods were allocated to a waiting backordered line."""

    event_type: ClassVar[str] = "stock.backorder.allocated.v1"
    topic: ClassVar[str] = EVENTS
    key_field: ClassVar[str] = "order_id"

    order_id: Identifier
    line_id: Identifier
    sku: Sku
    location: LocationCode
    quantity: Quantity
    remaining_backordered: NonNegativeQuantity


@register
class BackorderEtaChanged(Event):
    """The expected date of a waiting backordered line moved (incoming stock announced or
    arrived); None when no dated incoming stock covers it any more. For a bundle line, one event
    per component sku."""

    event_type: ClassVar[str] = "stock.backorder.eta_changed.v1"
    topic: ClassVar[str] = EVENTS
    key_field: ClassVar[str] = "order_id"

    order_id: Identifier
    line_id: Identifier
    sku: Sku
    expected_date: Timestamp | None = None
    previous_expected_date: Timestamp | None = None


# --- stock.levels.v1 (key sku@location, compacted) ------------------------------------------
# One record describes one level, so the key names the level: compaction keeps the last record
# of every (sku, location), and a reader from the beginning rebuilds every level. Records written
# before the key named the location (key = sku) are superseded by version, never by key.


@register
class StockLevelChanged(Event):
    """The levels of a sku at a location after a change; `version` grows with every change
    of that level (per key), so a reader keeps the highest version it saw."""

    event_type: ClassVar[str] = "stock.level.changed.v1"
    topic: ClassVar[str] = LEVELS
    key_field: ClassVar[str] = "sku@location"

    sku: Sku
    location: LocationCode
    on_hand: StockCount
    reserved: Count
    available: StockCount
    incoming: Count
    backordered: Count
    damaged: Count = 0
    quality_control: Count = 0
    safety_stock: Count = 0
    version: Version
    changed_at: Timestamp


# --- stock.movements.v1 (key sku) -----------------------------------------------------------

MovementKind = Literal[
    "receipt",
    "adjustment",
    "transfer_out",
    "transfer_in",
    "reservation",
    "release",
    "shipment",
    "return_restock",
    "write_off",
    "to_damaged",
    "from_damaged",
    "to_quality_control",
    "from_quality_control",
    "safety_stock_set",
    "backorder_opened",
    "backorder_allocated",
    "backorder_cancelled",
    "return_written_off",
    "incoming_announced",
    "incoming_closed",
]

# The ledger's sign: these kinds take units out of the bucket they name (negative quantity);
# adjustment and safety_stock_set carry their own sign; every other kind is positive.
OUTFLOW_KINDS = frozenset(
    {
        "transfer_out",
        "release",
        "shipment",
        "write_off",
        "from_damaged",
        "from_quality_control",
        "incoming_closed",
    }
)
SIGNED_KINDS = frozenset({"adjustment", "safety_stock_set"})


@register
class StockMovementRecorded(Event):
    """One entry of the stock ledger; receipts carry unit cost and currency."""

    event_type: ClassVar[str] = "stock.movement.recorded.v1"
    topic: ClassVar[str] = MOVEMENTS
    key_field: ClassVar[str] = "sku"

    movement_id: Identifier
    sku: Sku
    location: LocationCode
    kind: MovementKind
    quantity: SignedQuantity = Field(description="Signed as the ledger records it.")
    reason: ShortText | None = None
    reference: Reference | None = None
    order_id: Identifier | None = None
    unit_cost: NonNegativeMoney | None = None
    currency: Currency | None = None
    cause_event_id: Identifier
    occurred_at: Timestamp
    bundle_sku: Sku | None = Field(
        None,
        description="On the shipment of a bundle's component: the bundle SKU the order sold "
        "(the books put the component's cost on the bundle's margin).",
    )

    @model_validator(mode="after")
    def _cost_has_currency(self) -> StockMovementRecorded:
        if (self.unit_cost is None) != (self.currency is None):
            raise ValueError("unit_cost and currency go together")
        return self

    @model_validator(mode="after")
    def _sign_agrees_with_kind(self) -> StockMovementRecorded:
        if self.kind in SIGNED_KINDS:
            if self.quantity == 0:
                raise ValueError(f"quantity: a {self.kind} is never zero")
        elif (self.quantity < 0) != (self.kind in OUTFLOW_KINDS) or self.quantity == 0:
            sign = "negative" if self.kind in OUTFLOW_KINDS else "positive"
            raise ValueError(f"quantity: a {self.kind} is {sign}, got {self.quantity}")
        return self


# --- stock.alerts.v1 (key sku) --------------------------------------------------------------

SkuOrAll = Annotated[str, StringConstraints(pattern=r"^(\*|[A-Za-z0-9][A-Za-z0-9._-]{0,63})$")]


@register
class StockLow(Event):
    """Available stock fell to or below the reorder point."""

    event_type: ClassVar[str] = "stock.low.v1"
    topic: ClassVar[str] = ALERTS
    key_field: ClassVar[str] = "sku"

    sku: Sku
    location: LocationCode
    available: StockCount
    reorder_point: Count


@register
class StockOut(Event):
    """Nothing is available any more."""

    event_type: ClassVar[str] = "stock.out.v1"
    topic: ClassVar[str] = ALERTS
    key_field: ClassVar[str] = "sku"

    sku: Sku
    location: LocationCode


@register
class StockRecovered(Event):
    """Available stock rose above the reorder point again."""

    event_type: ClassVar[str] = "stock.recovered.v1"
    topic: ClassVar[str] = ALERTS
    key_field: ClassVar[str] = "sku"

    sku: Sku
    location: LocationCode
    available: StockCount
    reorder_point: Count


@register
class ReorderSuggested(Event):
    """A replenishment suggestion from the demand forecast."""

    event_type: ClassVar[str] = "stock.reorder.suggested.v1"
    topic: ClassVar[str] = ALERTS
    key_field: ClassVar[str] = "sku"

    sku: Sku
    location: LocationCode
    order_quantity: Quantity
    reorder_point: Count
    safety_stock: Count
    forecast_daily_demand: DecimalString
    lead_time_days: Count
    days_of_cover: DecimalString
    model: Identifier = Field(description="The forecasting model that produced the figures.")
    wape: DecimalString | None = None
    mase: DecimalString | None = None
    suggested_at: Timestamp


@register
class InvariantViolated(Event):
    """A stock invariant check failed; `sku` is "*" for a global invariant."""

    event_type: ClassVar[str] = "stock.invariant.violated.v1"
    topic: ClassVar[str] = ALERTS
    key_field: ClassVar[str] = "sku"

    sku: SkuOrAll
    location: LocationCode | None = None
    invariant: Identifier
    detail: LongText
    detected_at: Timestamp
