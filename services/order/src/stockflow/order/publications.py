"""The contract events the order service sends: each built here, from a saga effect.

The saga keeps only what it decides on; the order facts (customer, address), the time and
the fulfillment event that caused a shipment or return fill in the rest.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from stockflow.contracts import Event
from stockflow.contracts import events as wire
from stockflow.order import domain
from stockflow.order.domain import OrderEventType, OrderSaga
from stockflow.order.store import OrderFacts


def to_wire(
    effect: domain.Effect,
    saga: OrderSaga,
    facts: OrderFacts,
    source: Event | None,
    note: str,
    now: datetime,
) -> Event:
    """The contract event for a command or publication the saga asked for."""
    if isinstance(effect, domain.ReserveStock):
        return wire.ReserveStock(
            order_id=effect.order_id,
            lines=[
                wire.ReserveLine(line_id=line.line_id, sku=line.sku, quantity=line.quantity)
                for line in effect.lines
            ],
            backorder_policy=effect.backorder_policy.wire,
            priority=facts.priority or 0,
            attempt=effect.attempt,
        )
    if isinstance(effect, domain.ReleaseReservation):
        return wire.ReleaseReservation(order_id=effect.order_id, reason=effect.reason)
    if isinstance(effect, domain.PublishEvent):
        return _PUBLICATIONS[effect.type](effect.data, facts, source, note, now)
    raise TypeError(f"not an outgoing effect: {effect!r}")


Build = Callable[[dict[str, Any], OrderFacts, Any, str, datetime], Event]


def _accepted(data: dict, facts: OrderFacts, _source: Any, _note: str, now: datetime) -> Event:
    return wire.OrderAccepted.model_validate(
        {**data, "customer_id": facts.customer_id, "accepted_at": now}
    )


def _confirmed(data: dict, facts: OrderFacts, _source: Any, _note: str, now: datetime) -> Event:
    return wire.OrderConfirmed.model_validate(
        {**data, "shipping_address": facts.shipping_address, "confirmed_at": now}
    )


def _rejected(data: dict, _facts: OrderFacts, _source: Any, note: str, _now: datetime) -> Event:
    violations = [
        {"field": v["field"][:200], "message": v["message"][:2000]} for v in data["violations"]
    ]
    return wire.OrderRejected(
        order_id=data["order_id"],
        reason=data["reason"],
        field=violations[0]["field"] if violations else None,
        detail=note[:2000],
        lines=[{**line, "sku": line["sku"][:200]} for line in data["lines"]],
        violations=violations,
    )


def _shipped(data: dict, _facts: OrderFacts, source: Any, _note: str, _now: datetime) -> Event:
    assert isinstance(source, wire.ShipmentShipped)
    return wire.OrderShipped.model_validate(
        {
            **data,
            "lines": [{**line, "location": source.location} for line in data["lines"]],
        }
    )


def _delivered(data: dict, _facts: OrderFacts, source: Any, _note: str, now: datetime) -> Event:
    if not isinstance(source, wire.ShipmentDelivered):  # nothing to ship: delivered on confirm
        return wire.OrderDelivered.model_validate({**data, "delivered_at": now})
    return wire.OrderDelivered.model_validate(
        {**data, "shipment_id": source.shipment_id, "delivered_at": source.delivered_at}
    )


def _returned(data: dict, _facts: OrderFacts, source: Any, _note: str, _now: datetime) -> Event:
    assert isinstance(source, wire.ReturnReceived)
    # The return as fulfillment reported it: per location and condition, not summed per line.
    return wire.OrderReturned(
        order_id=data["order_id"],
        rma_id=data["rma_id"],
        lines=source.lines,
        fully_returned=data["fully_returned"],
    )


def _stuck(data: dict, _facts: OrderFacts, _source: Any, note: str, _now: datetime) -> Event:
    return wire.OrderStuck.model_validate({**data, "detail": note[:2000]})


def _as_is(model: type[Event]) -> Build:
    def build(data: dict, _facts: OrderFacts, _source: Any, _note: str, _now: datetime) -> Event:
        return model.model_validate(data)

    return build


_PUBLICATIONS: dict[OrderEventType, Build] = {
    OrderEventType.ACCEPTED: _accepted,
    OrderEventType.CONFIRMED: _confirmed,
    OrderEventType.REJECTED: _rejected,
    OrderEventType.CANCELLED: _as_is(wire.OrderCancelled),
    OrderEventType.CANCEL_REFUSED: _as_is(wire.OrderCancelRefused),
    OrderEventType.BACKORDER_ALLOCATED: _as_is(wire.OrderBackorderAllocated),
    OrderEventType.SHIPPED: _shipped,
    OrderEventType.DELIVERED: _delivered,
    OrderEventType.RETURNED: _returned,
    OrderEventType.STUCK: _stuck,
}
