"""Use cases: one function per warehouse step or incoming fact, inside the caller's unit of work.

The HTTP API, the message handlers and the autopilot all call these. Each loads what it needs
(locked for update), lets the domain decide, saves, and stages the contract events; the
caller's unit of work commits, so state and events land together or not at all. Refusals are
the domain's `FulfillmentError`s (plus `NotFound` and `PickListClosed` from here).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from stockflow.contracts.events import fulfillment as contract
from stockflow.contracts.events.catalog import CatalogVariantRemoved, CatalogVariantUpserted
from stockflow.contracts.events.orders import (
    OrderBackorderAllocated,
    OrderConfirmed,
    OrderLinesCancelRequested,
)
from stockflow.fulfillment import domain, store
from stockflow.fulfillment.domain import (
    Address,
    CarrierReach,
    Dimensions,
    FulfillmentError,
    PackingError,
    ParcelLimits,
    Shipment,
    ShipmentStatus,
    StockflowPost,
    Tariff,
    TrackingStatus,
    TrackingUpdate,
)
from stockflow.fulfillment.labels import render_label
from stockflow.fulfillment.settings import FulfillmentSettings
from stockflow.runtime.logging import get_logger
from stockflow.runtime.outbox import UnitOfWork

log = get_logger(__name__)

UNKNOWN_BIN = "unassigned"
"""What a stock discrepancy names as the bin when none is on record for the sku."""


class NotFound(Exception):
    """The shipment, pick list, return or order does not exist (here)."""


class PickListClosed(FulfillmentError):
    """The pick list was confirmed already."""


def label_ref(shipment_id: str) -> str:
    return f"/shipments/{shipment_id}/label.pdf"


# --- carriers -------------------------------------------------------------------------------


def ship_from(location: str, settings: FulfillmentSettings) -> Address:
    """The return address printed on labels for `location`."""
    return Address(
        name=f"stockflow warehouse {location}",
        line1="Unit 4, Distribution Park",
        city="Leeds",
        postal_code="LS11 5AA",
        country=settings.carrier_country,
    )


def configured_carriers(settings: FulfillmentSettings, serial: int) -> list[StockflowPost]:
    """The carriers to shop between; `serial` is the tracking serial the winner will use.

    stockflow-post is quick and cheap for light parcels; stockflow-freight is slower with a
    lower price per kilogram and takes heavier, larger parcels.
    """

    reach = CarrierReach(
        country=settings.carrier_country,
        currency=settings.carrier_currency,
        destinations=frozenset(settings.destinations),
    )

    def carrier(name: str, **offer: Any) -> StockflowPost:
        return StockflowPost(
            name=name, next_serial=lambda: serial, render_label=render_label, reach=reach, **offer
        )

    freight_tariffs = {
        domain.ServiceLevel.STANDARD: Tariff(Decimal("6.50"), Decimal("0.40"), transit_days=4)
    }
    return [
        carrier("stockflow-post"),
        carrier(
            "stockflow-freight",
            tariffs=freight_tariffs,
            limits=ParcelLimits(max_weight_grams=70_000, max_side_mm=2_000),
        ),
    ]


# --- orders.events.v1 -----------------------------------------------------------------------


async def plan_confirmed_order(uow: UnitOfWork, event: OrderConfirmed) -> list[Shipment]:
    """One shipment per location holding the order's reserved units; announce each."""
    order = store.OrderInfo(
        order_id=event.order_id,
        currency=event.currency,
        ship_to=Address.from_dict(event.shipping_address.model_dump()),
        lines={
            line.line_id: store.OrderLineInfo(line.sku, line.unit_price) for line in event.lines
        },
        status="open",
    )
    if not await store.insert_order(uow.conn, order, event.confirmed_at):
        log.info("order already planned", order_id=event.order_id)
        return []
    for line in event.lines:
        allocated = sum(allocation.quantity for allocation in line.allocations)
        if allocated != line.reserved and not getattr(line, "untracked", False):
            log.warning(
                "reserved units without a location are not shipped",
                order_id=event.order_id,
                line_id=line.line_id,
                reserved=line.reserved,
                allocated=allocated,
            )
    plan = domain.plan_confirmed_order(
        event.order_id,
        order.ship_to,
        [
            domain.ConfirmedLine(
                line.line_id,
                line.sku,
                tuple(domain.LocationQuantity(a.location, a.quantity) for a in line.allocations),
                line.backordered,
            )
            for line in event.lines
        ],
    )
    await _create(uow, plan.shipments, first_sequence=1)
    return list(plan.shipments)


async def plan_backorder_shipment(
    uow: UnitOfWork, event: OrderBackorderAllocated
) -> list[Shipment]:
    """Backordered units stock has now allocated become a later shipment of the order."""
    order = await store.get_order(uow.conn, event.order_id, for_update=True)
    if order is None:
        raise NotFound(
            f"Order {event.order_id} was never confirmed here; cannot ship its backorder."
        )
    if order.status == "cancelled":
        log.info("backorder of a cancelled order not shipped", order_id=event.order_id)
        return []
    so_far = await store.count_shipments(uow.conn, event.order_id)
    shipments = domain.plan_backorder_shipments(
        event.order_id,
        order.ship_to,
        [domain.AllocatedUnits(event.line_id, event.sku, event.location, event.quantity)],
        shipments_so_far=so_far,
    )
    await _create(uow, shipments, first_sequence=so_far + 1)
    return list(shipments)


async def _create(uow: UnitOfWork, shipments: Sequence[Shipment], *, first_sequence: int) -> None:
    for sequence, shipment in enumerate(shipments, start=first_sequence):
        if not await store.insert_shipment(uow.conn, shipment, sequence):
            continue
        uow.publish(
            contract.ShipmentCreated(
                shipment_id=shipment.shipment_id,
                order_id=shipment.order_id,
                location=shipment.location,
                lines=[_line(line) for line in shipment.lines],
            )
        )


async def cancel_order(uow: UnitOfWork, order_id: str, reason: str) -> list[str]:
    """The order was cancelled: cancel every shipment that has not left; return their ids."""
    await store.mark_order_cancelled(uow.conn, order_id)
    cancelled = []
    for shipment in await store.shipments_of_order(uow.conn, order_id, for_update=True):
        if shipment.status.has_left_the_building:
            log.warning(
                "order cancelled after a shipment left",
                order_id=order_id,
                shipment_id=shipment.shipment_id,
                status=shipment.status.value,
            )
            continue
        if await _cancel(uow, shipment, reason):
            cancelled.append(shipment.shipment_id)
    return cancelled


# --- catalog.products.v1 --------------------------------------------------------------------


async def learn_variants(
    uow: UnitOfWork, events: Sequence[CatalogVariantUpserted | CatalogVariantRemoved]
) -> None:
    """Keep each variant's weight and size for packing defaults, and a bundle's components for
    picking (newest catalog version wins)."""
    rows = []
    for event in events:
        if isinstance(event, CatalogVariantUpserted):
            size = event.dimensions_mm
            rows.append(
                (
                    event.sku,
                    event.weight_grams,
                    size.length if size else None,
                    size.width if size else None,
                    size.height if size else None,
                    event.version,
                    False,
                    [{"sku": c.sku, "quantity": c.quantity} for c in event.bundle_components],
                )
            )
        else:
            rows.append((event.sku, None, None, None, None, event.version, True, []))
    await store.upsert_variants(uow.conn, rows)


# --- picking --------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreatedPickList:
    pick_list_id: str
    pick_list: domain.PickList


async def create_pick_list(
    uow: UnitOfWork,
    location: str,
    *,
    shipment_ids: Sequence[str] | None = None,
    max_shipments: int = 20,
    older_than_s: float = 0.0,
) -> CreatedPickList:
    """Batch the oldest waiting shipments of `location` (or the ones named) into one walk."""
    if shipment_ids is not None:
        ids = await store.pickable_shipment_ids(
            uow.conn, location, limit=len(shipment_ids), shipment_ids=shipment_ids
        )
        if missing := [sid for sid in shipment_ids if sid not in ids]:
            raise domain.InvalidPick(
                f"Not waiting to be picked at {location} (or on another pick list): "
                f"{', '.join(missing)}."
            )
        ids = list(shipment_ids)
    else:
        ids = await store.pickable_shipment_ids(
            uow.conn, location, limit=max_shipments, older_than_s=older_than_s
        )
    if not ids:
        raise NotFound(f"No shipments are waiting to be picked at {location}.")
    loaded = await store.load_shipments(uow.conn, ids)
    shipments = [loaded[sid] for sid in ids]
    skus = {line.sku for shipment in shipments for line in shipment.lines}
    bundles = await store.bundles_among(uow.conn, skus)
    parts = {part.sku for bundle in bundles.values() for part in bundle}
    bins = await store.bins_for(uow.conn, location, skus | parts)
    pick_list = domain.build_pick_list(shipments, bins, bundles)
    pick_list_id = f"PL-{uuid.uuid4().hex[:12].upper()}"
    await store.insert_pick_list(uow.conn, pick_list_id, pick_list)
    for shipment in shipments:
        if shipment.status is ShipmentStatus.CREATED:
            shipment.start_picking()
        await store.save_shipment(uow.conn, shipment, pick_list_id=pick_list_id)
    return CreatedPickList(pick_list_id, pick_list)


@dataclass(frozen=True)
class PickOutcome:
    picked: list[str]
    on_hold: list[str]
    skipped: list[str]
    discrepancies: list[domain.StockDiscrepancy]


async def confirm_pick_list(
    uow: UnitOfWork, pick_list_id: str, found: Mapping[str, int]
) -> PickOutcome:
    """Record units found per sku; short bins raise stock discrepancies, short shipments hold."""
    loaded = await store.load_pick_list(uow.conn, pick_list_id, for_update=True)
    if loaded is None:
        raise NotFound(f"There is no pick list {pick_list_id}.")
    pick_list, status, _, _ = loaded
    if status != "open":
        raise PickListClosed(f"Pick list {pick_list_id} was already confirmed.")
    confirmation = pick_list.confirm(found)
    shipments = await store.load_shipments(uow.conn, pick_list.shipment_ids, for_update=True)
    outcome = PickOutcome([], [], [], list(confirmation.discrepancies))
    for shipment_id in pick_list.shipment_ids:
        shipment = shipments[shipment_id]
        if shipment.status is not ShipmentStatus.PICKING:
            outcome.skipped.append(shipment_id)  # cancelled while on the list: goods go back
            continue
        short = shipment.record_picks(confirmation.picked[shipment_id])
        (outcome.on_hold if short else outcome.picked).append(shipment_id)
        await store.save_shipment(uow.conn, shipment)
    await store.close_pick_list(uow.conn, pick_list_id, dict(found))
    for discrepancy in confirmation.discrepancies:
        shorted = _first_shorted(pick_list, confirmation, discrepancy.sku)
        uow.publish(
            contract.StockDiscrepancyFound(
                order_id=shipments[shorted].order_id,
                shipment_id=shorted,
                sku=discrepancy.sku,
                location=discrepancy.location,
                bin=discrepancy.bin or UNKNOWN_BIN,
                expected=discrepancy.expected,
                found=discrepancy.found,
            )
        )
    return outcome


def _first_shorted(
    pick_list: domain.PickList, confirmation: domain.PickConfirmation, sku: str
) -> str:
    """The first shipment that got fewer units of `sku` than it needed (the bin's report)."""
    line = next(line for line in pick_list.lines if line.sku == sku)
    for a in line.assignments:
        if confirmation.picked[a.shipment_id][a.line_id] * a.per_unit < a.quantity:
            return a.shipment_id
    return line.assignments[-1].shipment_id


async def repick(uow: UnitOfWork, shipment_id: str) -> Shipment:
    """A held shipment goes back to picking (the missing units turned up); it needs a new list."""
    shipment = await _shipment(uow, shipment_id)
    shipment.repick()
    await store.save_shipment(uow.conn, shipment, pick_list_id=None)
    return shipment


async def ship_what_was_picked(uow: UnitOfWork, shipment_id: str) -> Shipment:
    """A held shipment is re-planned down to what was picked; the order learns what is missing."""
    shipment = await _shipment(uow, shipment_id)
    shortened = shipment.ship_what_was_picked()
    await store.save_shipment(uow.conn, shipment)
    uow.publish(
        contract.ShipmentShortened(
            shipment_id=shortened.shipment_id,
            order_id=shortened.order_id,
            location=shortened.location,
            removed=[_line(line) for line in shortened.removed],
        )
    )
    return shipment


# --- packing and shipping -------------------------------------------------------------------


@dataclass(frozen=True)
class PackageSpec:
    """A package as the packer measured it; what is left out comes from catalog data."""

    weight_grams: int | None = None
    dimensions: Dimensions | None = None


async def pack(uow: UnitOfWork, shipment_id: str, specs: Sequence[PackageSpec] = ()) -> Shipment:
    """Put a picked shipment into packages (one, from catalog data, unless told otherwise)."""
    shipment = await _shipment(uow, shipment_id)
    if shipment.status is not ShipmentStatus.PICKED:
        shipment.pack(())  # refused with the domain's message saying where the shipment stands
    specs = list(specs) or [PackageSpec()]
    if len(specs) > 1 and any(s.weight_grams is None or s.dimensions is None for s in specs):
        raise PackingError(
            f"Shipment {shipment_id} goes in {len(specs)} packages; give each package its "
            "weight and dimensions (catalog defaults only work for a single package)."
        )
    variants = await store.variants_for(uow.conn, [line.sku for line in shipment.lines])
    packages = [
        domain.build_package(
            shipment.lines, variants, weight_grams=spec.weight_grams, dimensions=spec.dimensions
        )
        for spec in specs
    ]
    shipment.pack(packages)
    await store.save_shipment(uow.conn, shipment)
    return shipment


async def ship(
    uow: UnitOfWork, shipment_id: str, settings: FulfillmentSettings, at: datetime
) -> Shipment:
    """Buy the label from the cheapest carrier meeting the service level, then hand over."""
    shipment = await _shipment(uow, shipment_id)
    if shipment.status is ShipmentStatus.PACKED:
        serial = await store.next_serial(uow.conn)
        choice = domain.shop_rates(
            configured_carriers(settings, serial),
            shipment.packages,
            shipment.service_level,
            shipment.ship_to,
        )
        label = choice.carrier.create_label(
            domain.LabelRequest(
                order_id=shipment.order_id,
                shipment_id=shipment.shipment_id,
                ship_from=ship_from(shipment.location, settings),
                ship_to=shipment.ship_to,
                packages=shipment.packages,
                service_level=shipment.service_level,
            )
        )
        shipment.record_label(label)
        await store.save_label(uow.conn, shipment_id, label, choice.total, choice.currency)
    shipped = shipment.ship(at)
    await store.save_shipment(uow.conn, shipment)
    rate = await store.label_rate(uow.conn, shipment_id)
    order = await store.get_order(uow.conn, shipment.order_id)
    prices = order.lines if order else {}
    lines = [
        contract.ShipmentLine(
            line_id=line.line_id,
            sku=line.sku,
            quantity=line.quantity,
            unit_price=prices[line.line_id].unit_price if line.line_id in prices else None,
        )
        for line in shipped.lines
    ]
    uow.publish(
        contract.ShipmentShipped(
            shipment_id=shipped.shipment_id,
            order_id=shipped.order_id,
            location=shipped.location,
            lines=lines,
            currency=order.currency if order else None,
            carrier=shipped.carrier,
            service_level=shipped.service_level.value,
            tracking_number=shipped.tracking_number,
            label_ref=label_ref(shipped.shipment_id),
            shipped_at=shipped.shipped_at,
            shipping_cost=rate[0] if rate else None,
            shipping_currency=rate[1] if rate else None,
        )
    )
    return shipment


async def cancel_shipment(uow: UnitOfWork, shipment_id: str, reason: str) -> Shipment:
    """Cancel before it ships; after, the domain refuses and points to a return."""
    shipment = await _shipment(uow, shipment_id)
    await _cancel(uow, shipment, reason)
    return shipment


async def drop_cancelled_units(uow: UnitOfWork, event: OrderLinesCancelRequested) -> list[str]:
    """The order asked to cancel units of lines: drop them from its shipments that have not
    left (`domain.plan_unit_drops`), reporting each with the request id; return the ids of the
    shipments changed. Units already on their way ship; the order hears nothing for them."""
    wanted: dict[str, int] = {}
    for line in event.lines:
        wanted[line.line_id] = wanted.get(line.line_id, 0) + line.quantity
    shipments = await store.shipments_of_order(uow.conn, event.order_id, for_update=True)
    plan = domain.plan_unit_drops(shipments, wanted)
    reason = event.reason[:200]
    for shipment in shipments:
        units = plan.get(shipment.shipment_id)
        if units is None:
            continue
        if sum(units.values()) == sum(line.quantity for line in shipment.lines):
            await _cancel(uow, shipment, reason, cancel_request_id=event.request_id)
            continue
        shortened = shipment.drop_units(units)
        await store.save_shipment(uow.conn, shipment)
        uow.publish(
            contract.ShipmentShortened(
                shipment_id=shortened.shipment_id,
                order_id=shortened.order_id,
                location=shortened.location,
                removed=[_line(line) for line in shortened.removed],
                reason=reason,
                cancel_request_id=event.request_id,
            )
        )
    if sum(wanted.values()) > sum(sum(units.values()) for units in plan.values()):
        log.info("cancelled units already being picked ship", order_id=event.order_id)
    return [shipment_id for shipment_id in plan]


async def _cancel(
    uow: UnitOfWork, shipment: Shipment, reason: str, cancel_request_id: str | None = None
) -> bool:
    cancelled = shipment.cancel(reason)
    if cancelled is None:
        return False
    await store.save_shipment(uow.conn, shipment)
    if cancelled.void_tracking_number:
        log.info(
            "label voided",
            shipment_id=shipment.shipment_id,
            tracking_number=cancelled.void_tracking_number,
        )
    uow.publish(
        contract.ShipmentCancelled(
            shipment_id=cancelled.shipment_id,
            order_id=cancelled.order_id,
            reason=reason[:200],
            cancel_request_id=cancel_request_id,
        )
    )
    return True


async def record_tracking(uow: UnitOfWork, update: TrackingUpdate) -> Shipment:
    """A carrier scan: kept in the history; moves the shipment if it is new and newer."""
    shipment = await store.shipment_by_tracking(uow.conn, update.tracking_number, for_update=True)
    if shipment is None:
        raise NotFound(f"No shipment has tracking number {update.tracking_number}.")
    changed = shipment.apply_tracking(update)
    await store.record_tracking_event(
        uow.conn, shipment.shipment_id, update, applied=changed is not None
    )
    await store.save_shipment(uow.conn, shipment)
    if changed is not None and changed.status is ShipmentStatus.DELIVERED:
        uow.publish(
            contract.ShipmentDelivered(
                shipment_id=shipment.shipment_id,
                order_id=shipment.order_id,
                delivered_at=changed.occurred_at,
            )
        )
    elif changed is not None and changed.status is ShipmentStatus.EXCEPTION:
        uow.publish(
            contract.ShipmentException(
                shipment_id=shipment.shipment_id,
                order_id=shipment.order_id,
                detail=(changed.detail or "The carrier reported a problem.")[:2000],
            )
        )
    return shipment


async def _shipment(uow: UnitOfWork, shipment_id: str) -> Shipment:
    shipment = await store.load_shipment(uow.conn, shipment_id, for_update=True)
    if shipment is None:
        raise NotFound(f"There is no shipment {shipment_id}.")
    return shipment


# --- returns --------------------------------------------------------------------------------


async def authorize_return(
    uow: UnitOfWork, order_id: str, requested: Mapping[str, int], reason: str
) -> domain.ReturnAuthorization:
    """An RMA for shipped lines, at most shipped minus what earlier returns claim."""
    if await store.get_order(uow.conn, order_id, for_update=True) is None:
        raise NotFound(f"Order {order_id} has no shipments here.")
    rma = domain.authorize_return(
        f"RMA-{uuid.uuid4().hex[:10].upper()}",
        order_id,
        requested,
        await store.shipments_of_order(uow.conn, order_id),
        await store.returns_of_order(uow.conn, order_id),
        reason,
    )
    await store.insert_return(uow.conn, rma)
    return rma


async def receive_return(
    uow: UnitOfWork,
    rma_id: str,
    at: datetime,
    *,
    location: str | None = None,
    quantities: Mapping[str, int] | None = None,
) -> domain.ReturnAuthorization:
    """The parcel arrived; by default at the location the first returned line shipped from."""
    rma = await _return(uow, rma_id)
    if location is None:
        location = await _shipped_from(uow, rma)
    rma.receive(location, at, quantities)
    await store.save_return(uow.conn, rma)
    return rma


async def _shipped_from(uow: UnitOfWork, rma: domain.ReturnAuthorization) -> str:
    line_id = rma.lines[0].line_id
    for shipment in await store.shipments_of_order(uow.conn, rma.order_id):
        if shipment.status.has_left_the_building and any(
            line.line_id == line_id for line in shipment.lines
        ):
            return shipment.location
    raise FulfillmentError(f"Say where return {rma.rma_id} arrived (a location code).")


async def inspect_return(
    uow: UnitOfWork, rma_id: str, inspections: Sequence[domain.Inspection]
) -> domain.ReturnAuthorization:
    """Restock or write off every received unit; stock and accounting follow the event."""
    rma = await _return(uow, rma_id)
    received = rma.inspect(inspections)
    await store.save_return(uow.conn, rma)
    order = await store.get_order(uow.conn, rma.order_id)
    prices = order.lines if order else {}
    uow.publish(
        contract.ReturnReceived(
            rma_id=received.rma_id,
            order_id=received.order_id,
            lines=[
                contract.ReturnLine(
                    line_id=line.line_id,
                    sku=line.sku,
                    location=received.location,
                    quantity=line.quantity,
                    condition=line.condition.value,
                    unit_price=prices[line.line_id].unit_price if line.line_id in prices else None,
                )
                for line in received.lines
            ],
            currency=order.currency if order else None,
            received_at=received.received_at,
        )
    )
    return rma


async def _return(uow: UnitOfWork, rma_id: str) -> domain.ReturnAuthorization:
    rma = await store.load_return(uow.conn, rma_id, for_update=True)
    if rma is None:
        raise NotFound(f"There is no return {rma_id}.")
    return rma


def _line(line: domain.ShipmentLine) -> contract.ShipmentLine:
    return contract.ShipmentLine(line_id=line.line_id, sku=line.sku, quantity=line.quantity)


def tracking_update(
    tracking_number: str, status: str, occurred_at: datetime, detail: str = ""
) -> TrackingUpdate:
    return TrackingUpdate(tracking_number, TrackingStatus(status), occurred_at, detail)
