"""Message handlers: wire events in, saga decisions, rows and outbox events out.

Every consumer and the timer task go through one `SagaBatch`: lock the batch's orders with one
query, decide message by message in order (a later message for the same order sees the saga the
earlier one left), then write sagas, timeline, timers and shipments with one statement each.
All of it runs in the runtime's batch transaction, so state, outbox and inbox commit together.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from aiokafka.structs import ConsumerRecord
from pydantic import TypeAdapter, ValidationError

from stockflow.contracts import CloudEvent, Event, InvalidMessage
from stockflow.contracts import events as wire
from stockflow.contracts.types import Identifier, Timestamp
from stockflow.order import domain, store
from stockflow.order.domain import Decision, OrderEventType, OrderSaga, SagaPolicy
from stockflow.order.store import OrderFacts, SagaWrite, StoredOrder
from stockflow.runtime.consumer import Inbound
from stockflow.runtime.logging import get_logger
from stockflow.runtime.outbox import UnitOfWork

log = get_logger(__name__)

CHECKOUT_EVENTS = {
    wire.CheckoutOrderSubmitted.event_type,
    wire.CheckoutOrderCancelRequested.event_type,
    wire.CheckoutPaymentConfirmed.event_type,
}
STOCK_EVENTS = {
    wire.StockReserved.event_type,
    wire.ReservationRejected.event_type,
    wire.BackorderAllocated.event_type,
}
FULFILLMENT_EVENTS = {
    wire.ShipmentShipped.event_type,
    wire.ShipmentDelivered.event_type,
    wire.ReturnReceived.event_type,
}
# The events each consumer receives, as its event_types above guarantee.
CheckoutEvent = (
    wire.CheckoutOrderSubmitted | wire.CheckoutOrderCancelRequested | wire.CheckoutPaymentConfirmed
)
StockEvent = wire.StockReserved | wire.ReservationRejected | wire.BackorderAllocated
FulfillmentEvent = wire.ShipmentShipped | wire.ShipmentDelivered | wire.ReturnReceived
TIMER_RETRY_DELAY = timedelta(minutes=1)

_IDENTIFIER = TypeAdapter(Identifier)
_TIMESTAMP = TypeAdapter(Timestamp)
_ADDRESS = TypeAdapter(wire.Address)


class OrderHandlers:
    """The order service's consumers and timer firing, sharing one saga policy."""

    def __init__(self, policy: SagaPolicy = domain.DEFAULT_POLICY) -> None:
        self.policy = policy

    async def on_checkout(self, uow: UnitOfWork, batch: list[Inbound]) -> None:
        """Submissions, cancel requests and payment confirmations from checkout.orders.v1."""
        order_ids = (cast(CheckoutEvent, i.event).order_id for i in batch)
        saga_batch = await SagaBatch.open(uow, self.policy, order_ids)
        for item in batch:
            event, cause = item.event, item.cloud
            if isinstance(event, wire.CheckoutOrderSubmitted):
                saga_batch.submit(cause, cloud_data(cause), facts_of(event))
            elif isinstance(event, wire.CheckoutOrderCancelRequested):
                cancel = domain.CancelRequested(cause.id, event.reason)
                saga_batch.decide(cause, event.order_id, cancel)
            elif isinstance(event, wire.CheckoutPaymentConfirmed):
                saga_batch.decide(cause, event.order_id, domain.PaymentConfirmed(cause.id))
        await saga_batch.flush()

    async def on_invalid_checkout(
        self,
        uow: UnitOfWork,
        record: ConsumerRecord,
        cloud: CloudEvent | None,
        error: InvalidMessage,
    ) -> bool:
        """Reject a malformed submission that still names its order; dead-letter the rest.

        The upstream checkout must hear back (order.rejected.v1, reason invalid_order, the
        fields at fault); only a record without a usable order id goes to orders.dlq.v1.
        """
        if cloud is None or cloud.type != wire.CheckoutOrderSubmitted.event_type:
            return False
        try:
            payload = cloud_data(cloud)
        except ValueError:
            return False
        order_id = domain.usable_order_id(payload)
        if order_id is None or not _valid(_IDENTIFIER, order_id):
            return False
        saga_batch = await SagaBatch.open(uow, self.policy, [order_id])
        saga_batch.submit(cloud, payload, loose_facts(payload), schema_violations(payload))
        await saga_batch.flush()
        log.info("invalid order rejected", order_id=order_id, error=error.reason[:500])
        return True

    async def on_stock(self, uow: UnitOfWork, batch: list[Inbound]) -> None:
        """Stock's replies to ReserveStock and its backorder allocations."""
        order_ids = (cast(StockEvent, i.event).order_id for i in batch)
        saga_batch = await SagaBatch.open(uow, self.policy, order_ids)
        for item in batch:
            event = cast(StockEvent, item.event)
            saga_input = stock_input(event, item.cloud.id)
            saga_batch.decide(item.cloud, event.order_id, saga_input)
        await saga_batch.flush()

    async def on_fulfillment(self, uow: UnitOfWork, batch: list[Inbound]) -> None:
        """Shipments leaving and arriving, and returns."""
        order_ids = (cast(FulfillmentEvent, i.event).order_id for i in batch)
        saga_batch = await SagaBatch.open(uow, self.policy, order_ids)
        for item in batch:
            event = cast(FulfillmentEvent, item.event)
            saga_input = fulfillment_input(event, item.cloud.id)
            decision = saga_batch.decide(item.cloud, event.order_id, saga_input, source=event)
            if decision is not None and decision.changed:
                saga_batch.note_shipment(event)
        await saga_batch.flush()

    async def fire_due_timers(self, uow: UnitOfWork, limit: int) -> int:
        """Fire up to `limit` due timers in this transaction; return how many were due."""
        now = datetime.now(UTC)
        due = await store.claim_due_timers(uow.conn, now, limit)
        if not due:
            return 0
        saga_batch = await SagaBatch.open(uow, self.policy, (t.order_id for t in due))
        for timer in due:
            cause_id = f"timer:{timer.kind}:{timer.order_id}:{timer.attempt}"
            saga_input: domain.SagaInput
            if timer.kind == domain.TimerKind.PAYMENT_DEADLINE:
                saga_input = domain.PaymentDeadlinePassed(cause_id)
            else:
                saga_input = domain.StockReplyTimedOut(cause_id, timer.attempt)
            try:
                saga_batch.decide(None, timer.order_id, saga_input)
            except Exception:  # one bad timer must not hold back the others
                log.exception(
                    "timer could not be fired; retrying later",
                    order_id=timer.order_id,
                    kind=timer.kind,
                )
                saga_batch.arm(
                    timer.order_id,
                    domain.SetTimer(
                        domain.TimerKind(timer.kind), now + TIMER_RETRY_DELAY, timer.attempt
                    ),
                )
        await saga_batch.flush()
        return len(due)


@dataclass
class SagaBatch:
    """The orders of one batch: loaded once, decided in order, written once."""

    uow: UnitOfWork
    policy: SagaPolicy
    orders: dict[str, StoredOrder]
    loaded_versions: dict[str, int]
    changed: dict[str, datetime] = field(default_factory=dict)
    timeline: list[tuple[str, domain.TimelineEntry]] = field(default_factory=list)
    timers: dict[tuple[str, str], domain.SetTimer | None] = field(default_factory=dict)
    shipped: list[dict[str, Any]] = field(default_factory=list)
    delivered: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    async def open(cls, uow: UnitOfWork, policy: SagaPolicy, order_ids: Iterable[str]) -> SagaBatch:
        orders = await store.lock_orders(uow.conn, sorted(set(order_ids)))
        versions = {order_id: order.saga.version for order_id, order in orders.items()}
        return cls(uow, policy, orders, versions)

    def submit(
        self,
        cause: CloudEvent,
        payload: Mapping[str, Any],
        facts: OrderFacts,
        violations: Iterable[domain.Violation] = (),
    ) -> Decision:
        order_id = domain.usable_order_id(payload)
        assert order_id is not None, "callers pass submissions with a usable order id"
        existing = self.orders.get(order_id)
        now = datetime.now(UTC)
        decision = domain.submit(
            existing.saga if existing else None,
            payload,
            cause.id,
            now,
            self.policy,
            tuple(violations),
        )
        self._record(cause, decision, existing.facts if existing else facts, None, now)
        return decision

    def decide(
        self,
        cause: CloudEvent | None,
        order_id: str,
        saga_input: domain.SagaInput,
        source: Event | None = None,
    ) -> Decision | None:
        """Apply one input; None when the order is unknown here (logged, nothing stored)."""
        existing = self.orders.get(order_id)
        if existing is None:
            log.warning(
                "input for an unknown order ignored",
                order_id=order_id,
                input=type(saga_input).__name__,
                cause_id=saga_input.cause_id,
            )
            return None
        now = datetime.now(UTC)
        decision = domain.decide(existing.saga, saga_input, now, self.policy)
        self._record(cause, decision, existing.facts, source, now)
        return decision

    def arm(self, order_id: str, timer: domain.SetTimer) -> None:
        self.timers[(order_id, timer.kind.value)] = timer

    def note_shipment(self, event: Event) -> None:
        if isinstance(event, wire.ShipmentShipped):
            self.shipped.append(
                {
                    "order_id": event.order_id,
                    "shipment_id": event.shipment_id,
                    "location": event.location,
                    "carrier": event.carrier,
                    "service_level": event.service_level,
                    "tracking_number": event.tracking_number,
                    "shipped_at": event.shipped_at,
                }
            )
        elif isinstance(event, wire.ShipmentDelivered):
            self.delivered.append(
                {
                    "order_id": event.order_id,
                    "shipment_id": event.shipment_id,
                    "delivered_at": event.delivered_at,
                }
            )

    def _record(
        self,
        cause: CloudEvent | None,
        decision: Decision,
        facts: OrderFacts,
        source: Event | None,
        now: datetime,
    ) -> None:
        saga = decision.saga
        # Build every outgoing event first: a failure leaves nothing half-recorded.
        outgoing = [
            to_wire(effect, saga, facts, source, decision.timeline.note, now)
            for effect in decision.effects
            if not isinstance(effect, domain.SetTimer | domain.CancelTimer)
        ]
        self.timeline.append((saga.order_id, decision.timeline))
        if decision.changed:
            self.orders[saga.order_id] = StoredOrder(saga, facts)
            self.changed[saga.order_id] = now
        for effect in decision.effects:
            if isinstance(effect, domain.SetTimer):
                self.arm(saga.order_id, effect)
            elif isinstance(effect, domain.CancelTimer):
                self.timers[(saga.order_id, effect.kind.value)] = None
        publisher = self.uow.with_cause(cause)
        for event in outgoing:
            publisher.publish(event)

    async def flush(self) -> None:
        conn = self.uow.conn
        await store.save_sagas(
            conn,
            [
                SagaWrite(
                    self.orders[order_id].saga,
                    self.orders[order_id].facts,
                    self.loaded_versions.get(order_id),
                    at,
                )
                for order_id, at in self.changed.items()
            ],
        )
        await store.append_timeline(conn, self.timeline)
        await store.set_timers(
            conn,
            armed=[
                (order_id, kind, timer.fire_at, timer.attempt)
                for (order_id, kind), timer in self.timers.items()
                if timer is not None
            ],
            cancelled=[key for key, timer in self.timers.items() if timer is None],
        )
        await store.record_shipments(conn, self.shipped, self.delivered)


# Wire → saga --------------------------------------------------------------------------------


def cloud_data(cloud: CloudEvent) -> Any:
    """The event's `data` as plain JSON (the fingerprint is taken over this, not a model)."""
    if isinstance(cloud.data, dict):
        return cloud.data
    try:
        return json.loads(cloud.data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError("data is not JSON") from exc


def facts_of(event: wire.CheckoutOrderSubmitted) -> OrderFacts:
    return OrderFacts(
        customer_id=event.customer_id,
        priority=event.priority,
        placed_at=event.placed_at,
        shipping_address=event.shipping_address.model_dump(mode="json", exclude_none=True),
    )


def loose_facts(payload: Mapping[str, Any]) -> OrderFacts:
    """Whatever facts of an invalid submission are themselves valid, for the record."""
    address = _valid(_ADDRESS, payload.get("shipping_address"))
    return OrderFacts(
        customer_id=_valid(_IDENTIFIER, payload.get("customer_id")),
        placed_at=_valid(_TIMESTAMP, payload.get("placed_at")),
        shipping_address=address.model_dump(mode="json", exclude_none=True) if address else None,
    )


def _valid(adapter: TypeAdapter, value: Any) -> Any:
    try:
        return adapter.validate_python(value)
    except ValidationError:
        return None


def schema_violations(payload: Mapping[str, Any]) -> list[domain.Violation]:
    """What the wire contract refuses in a submission, as violations with domain-style paths."""
    try:
        wire.CheckoutOrderSubmitted.model_validate(payload)
    except ValidationError as exc:
        return [
            domain.Violation(_path(error["loc"]) or "(root)", error["msg"])
            for error in exc.errors(include_url=False, include_input=False)[:20]
        ]
    return []


def _path(location: tuple[int | str, ...]) -> str:
    """('lines', 0, 'quantity') → 'lines[0].quantity', as the intake rules name fields."""
    path = ""
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def stock_input(event: Event, cause_id: str) -> domain.SagaInput:
    if isinstance(event, wire.StockReserved):
        return domain.StockReserved(
            cause_id,
            tuple(
                domain.LineReservation(
                    line.line_id,
                    allocations=tuple(
                        domain.Allocation(a.location, a.quantity) for a in line.allocations
                    ),
                    backordered=line.backordered,
                    untracked=line.untracked,
                )
                for line in event.lines
            ),
        )
    if isinstance(event, wire.ReservationRejected):
        return domain.ReservationRejected(
            cause_id,
            event.reason,
            tuple(domain.Shortfall(s.sku, s.requested, s.available) for s in event.lines),
        )
    if isinstance(event, wire.BackorderAllocated):
        return domain.BackorderAllocated(cause_id, event.line_id, event.location, event.quantity)
    raise TypeError(f"not a stock event the saga takes: {event.event_type}")


def fulfillment_input(event: Event, cause_id: str) -> domain.SagaInput:
    if isinstance(event, wire.ShipmentShipped):
        return domain.Shipped(cause_id, event.shipment_id, _quantities(event.lines))
    if isinstance(event, wire.ShipmentDelivered):
        return domain.Delivered(cause_id, event.shipment_id)
    if isinstance(event, wire.ReturnReceived):
        return domain.Returned(cause_id, event.rma_id, _quantities(event.lines))
    raise TypeError(f"not a fulfillment event the saga takes: {event.event_type}")


def _quantities(lines: Iterable[Any]) -> tuple[domain.LineQuantity, ...]:
    return tuple(domain.LineQuantity(line.line_id, line.quantity) for line in lines)


# Saga effects → wire ------------------------------------------------------------------------


def to_wire(
    effect: domain.Effect,
    saga: OrderSaga,
    facts: OrderFacts,
    source: Event | None,
    note: str,
    now: datetime,
) -> Event:
    """The contract event for a command or publication the saga asked for.

    The saga keeps only what it decides on; the order facts (customer, address), the time and
    the fulfillment event that caused a shipment or return fill in the rest.
    """
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
