"""The contract events the order service sends: each one built here, from a saga effect.

The saga's effects carry what it decides on; the order facts (customer, address, priority),
the time, the timeline note and the fulfillment event that caused a shipment or return fill
in the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from stockflow.contracts import Event
from stockflow.contracts import events as wire
from stockflow.order import domain
from stockflow.order.store import OrderFacts


@dataclass(frozen=True)
class PublicationContext:
    """What an outgoing event needs besides its effect."""

    facts: OrderFacts
    source: Event | None
    """The fulfillment event behind a shipment, delivery or return (None for the rest)."""
    note: str
    now: datetime


def contract_event(effect: domain.Effect, context: PublicationContext) -> Event:
    """The contract event for a command or announcement the saga asked for."""
    build = _BUILDERS.get(type(effect))
    if build is None:
        raise TypeError(f"not an outgoing effect: {effect!r}")
    return build(effect, context)


def reserve_stock(
    effect: domain.RequestReservation, context: PublicationContext
) -> wire.ReserveStock:
    return wire.ReserveStock(
        order_id=effect.order_id,
        lines=[
            wire.ReserveLine(line_id=line.line_id, sku=line.sku, quantity=line.quantity)
            for line in effect.lines
        ],
        backorder_policy=effect.backorder_policy.wire,
        priority=context.facts.priority or 0,
        attempt=effect.attempt,
    )


def release_reservation(
    effect: domain.RequestRelease, _context: PublicationContext
) -> wire.ReleaseReservation:
    lines = [
        wire.ReleaseLine(
            line_id=unit.line_id,
            sku=unit.sku,
            location=unit.location,
            quantity=unit.quantity,
            not_found=unit.not_found,
            backorder=unit.backorder,
        )
        for unit in effect.lines
    ]
    return wire.ReleaseReservation(
        order_id=effect.order_id, reason=effect.reason, lines=lines or None
    )


def lines_cancel_requested(
    effect: domain.AnnounceLinesCancelRequested, _context: PublicationContext
) -> wire.OrderLinesCancelRequested:
    return wire.OrderLinesCancelRequested(
        order_id=effect.order_id,
        request_id=effect.request_id,
        lines=[
            wire.LineItem(line_id=unit.line_id, sku=unit.sku, quantity=unit.quantity)
            for unit in effect.lines
        ],
        reason=effect.reason,
    )


def line_cancelled(
    effect: domain.AnnounceLineCancelled, _context: PublicationContext
) -> wire.OrderLineCancelled:
    return wire.OrderLineCancelled(
        order_id=effect.order_id,
        line_id=effect.line_id,
        sku=effect.sku,
        quantity=effect.quantity,
        reason=effect.reason,
        remaining=effect.remaining,
    )


def order_accepted(
    effect: domain.AnnounceAccepted, context: PublicationContext
) -> wire.OrderAccepted:
    return wire.OrderAccepted(
        order_id=effect.order_id,
        customer_id=context.facts.customer_id,
        currency=effect.currency,
        lines=[
            wire.OrderLine(
                line_id=line.line_id,
                sku=line.sku,
                quantity=line.quantity,
                unit_price=line.unit_price,
            )
            for line in effect.lines
        ],
        accepted_at=context.now,
        payment_status=effect.payment.value,
        backorder_policy=effect.backorder_policy.wire,
    )


def order_confirmed(
    effect: domain.AnnounceConfirmed, context: PublicationContext
) -> wire.OrderConfirmed:
    return wire.OrderConfirmed.model_validate(
        {
            "order_id": effect.order_id,
            "currency": effect.currency,
            "lines": [_confirmed_line(line, context.facts.backorder_etas) for line in effect.lines],
            "shipping_address": context.facts.shipping_address,
            "confirmed_at": context.now,
        }
    )


def _confirmed_line(
    line: domain.SagaLine, etas: Mapping[str, datetime | None]
) -> wire.ConfirmedLine:
    return wire.ConfirmedLine(
        expected_date=etas.get(line.line_id) if line.backordered else None,
        line_id=line.line_id,
        sku=line.sku,
        quantity=line.quantity,
        unit_price=line.unit_price,
        reserved=line.reserved,
        backordered=line.backordered,
        untracked=line.untracked,
        allocations=[
            wire.Allocation(location=held.location, quantity=held.quantity)
            for held in line.allocations
        ],
    )


def order_rejected(
    effect: domain.AnnounceRejected, context: PublicationContext
) -> wire.OrderRejected:
    return wire.OrderRejected(
        order_id=effect.order_id,
        reason=effect.reason,
        field=effect.violations[0].field if effect.violations else None,
        detail=context.note[:2000],
        lines=[
            # Loose on purpose (see RejectedLine): a shortfall is reported whatever its sku.
            wire.RejectedLine(sku=s.sku[:200], requested=s.requested, available=s.available)
            for s in effect.shortfalls
        ],
        violations=list(effect.violations),
    )


def order_cancelled(
    effect: domain.AnnounceCancelled, _context: PublicationContext
) -> wire.OrderCancelled:
    return wire.OrderCancelled(order_id=effect.order_id, reason=effect.reason)


def cancel_refused(
    effect: domain.AnnounceCancelRefused, _context: PublicationContext
) -> wire.OrderCancelRefused:
    return wire.OrderCancelRefused(
        order_id=effect.order_id, reason=effect.reason, requested_reason=effect.requested_reason
    )


def backorder_allocated(
    effect: domain.AnnounceBackorderFilled, context: PublicationContext
) -> wire.OrderBackorderAllocated:
    etas = context.facts.backorder_etas
    return wire.OrderBackorderAllocated(
        expected_date=etas.get(effect.line_id) if effect.backordered else None,
        order_id=effect.order_id,
        line_id=effect.line_id,
        sku=effect.sku,
        location=effect.location,
        quantity=effect.quantity,
        backordered=effect.backordered,
    )


def order_shipped(effect: domain.AnnounceShipped, context: PublicationContext) -> wire.OrderShipped:
    source = context.source
    assert isinstance(source, wire.ShipmentShipped), "a shipment is announced from its event"
    return wire.OrderShipped(
        order_id=effect.order_id,
        shipment_id=effect.shipment_id,
        lines=[
            wire.LocatedLine(
                line_id=line.line_id, sku=line.sku, location=source.location, quantity=line.quantity
            )
            for line in effect.lines
        ],
        fully_shipped=effect.fully_shipped,
    )


def order_delivered(
    effect: domain.AnnounceDelivered, context: PublicationContext
) -> wire.OrderDelivered:
    source = context.source
    if not isinstance(source, wire.ShipmentDelivered):  # nothing to ship: delivered on confirm
        return wire.OrderDelivered(
            order_id=effect.order_id, delivered_at=context.now, shipment_ids=[]
        )
    return wire.OrderDelivered(
        order_id=effect.order_id,
        shipment_id=source.shipment_id,
        delivered_at=source.delivered_at,
        shipment_ids=list(effect.shipment_ids),
    )


def order_returned(
    effect: domain.AnnounceReturned, context: PublicationContext
) -> wire.OrderReturned:
    source = context.source
    assert isinstance(source, wire.ReturnReceived), "a return is announced from its event"
    # The return as fulfillment reported it: per location and condition, not summed per line.
    return wire.OrderReturned(
        order_id=effect.order_id,
        rma_id=effect.rma_id,
        lines=source.lines,
        fully_returned=effect.fully_returned,
    )


def order_stuck(effect: domain.AnnounceStuck, context: PublicationContext) -> wire.OrderStuck:
    return wire.OrderStuck(
        order_id=effect.order_id,
        state=effect.state.value,
        attempts=effect.attempts,
        detail=context.note[:2000],
        reason=effect.reason,
    )


_BUILDERS: dict[type[Any], Callable[[Any, PublicationContext], Event]] = {
    domain.RequestReservation: reserve_stock,
    domain.RequestRelease: release_reservation,
    domain.AnnounceAccepted: order_accepted,
    domain.AnnounceConfirmed: order_confirmed,
    domain.AnnounceRejected: order_rejected,
    domain.AnnounceCancelled: order_cancelled,
    domain.AnnounceCancelRefused: cancel_refused,
    domain.AnnounceLineCancelled: line_cancelled,
    domain.AnnounceLinesCancelRequested: lines_cancel_requested,
    domain.AnnounceBackorderFilled: backorder_allocated,
    domain.AnnounceShipped: order_shipped,
    domain.AnnounceDelivered: order_delivered,
    domain.AnnounceReturned: order_returned,
    domain.AnnounceStuck: order_stuck,
}
