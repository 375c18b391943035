"""Use cases of the order service: each runs inside the caller's unit of work (one transaction).

Every consumer batch and every timer sweep goes through one `LoadedOrders`: lock the batch's orders
with one query, decide message by message in order (a later message for the same order sees the
saga the earlier one left), then write sagas, timeline, timers and shipments with one statement
each and stage the outgoing events (built by `publications`) in the unit of work's outbox. State,
outbox and inbox commit together.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from pydantic import TypeAdapter, ValidationError

from stockflow.contracts import CloudEvent, Event
from stockflow.contracts import events as wire
from stockflow.contracts.types import Identifier, Timestamp
from stockflow.order import domain
from stockflow.order import store as sql
from stockflow.order.domain import Decision, SagaPolicy
from stockflow.order.publications import PublicationContext, contract_event
from stockflow.order.store import (
    ArmedTimer,
    DueTimer,
    OrderFacts,
    SagaStore,
    SagaWrite,
    SqlSagaStore,
    StoredOrder,
)
from stockflow.runtime.consumer import Inbound
from stockflow.runtime.logging import get_logger
from stockflow.runtime.outbox import UnitOfWork

log = get_logger(__name__)

# The events each consumer receives, as its event_types guarantee.
CheckoutEvent = (
    wire.CheckoutOrderSubmitted
    | wire.CheckoutOrderCancelRequested
    | wire.CheckoutOrderLinesCancelRequested
    | wire.CheckoutPaymentConfirmed
)
StockEvent = wire.StockReserved | wire.ReservationRejected | wire.BackorderAllocated
FulfillmentEvent = (
    wire.ShipmentCreated
    | wire.ShipmentShipped
    | wire.ShipmentShortened
    | wire.ShipmentCancelled
    | wire.ShipmentDelivered
    | wire.ShipmentException
    | wire.ReturnReceived
)
TIMER_RETRY_DELAY = timedelta(minutes=1)

_IDENTIFIER = TypeAdapter(Identifier)
_TIMESTAMP = TypeAdapter(Timestamp)
_ADDRESS = TypeAdapter(wire.Address)


async def take_checkout(
    uow: UnitOfWork, batch: Sequence[Inbound], policy: SagaPolicy, store: SagaStore | None = None
) -> None:
    """Submissions, cancel requests (whole orders or lines) and payment confirmations, in the
    order they came."""
    sagas = await LoadedOrders.open(
        uow, policy, store, (cast(CheckoutEvent, i.event).order_id for i in batch)
    )
    for item in batch:
        event, cause = item.event, item.cloud
        if isinstance(event, wire.CheckoutOrderSubmitted):
            sagas.submit(cause, event)
        elif isinstance(event, wire.CheckoutOrderCancelRequested):
            sagas.decide(cause, event.order_id, domain.CancelRequested(cause.id, event.reason))
        elif isinstance(event, wire.CheckoutOrderLinesCancelRequested):
            sagas.decide(cause, event.order_id, lines_cancel_input(event, cause.id))
        elif isinstance(event, wire.CheckoutPaymentConfirmed):
            sagas.decide(cause, event.order_id, domain.PaymentConfirmed(cause.id))
    await sagas.save()


async def request_lines_cancel(
    uow: UnitOfWork,
    order_id: str,
    request: wire.CheckoutOrderLinesCancelRequested,
    policy: SagaPolicy,
    store: SagaStore | None = None,
) -> Decision | None:
    """A lines-cancel request made over HTTP (support, the customer's account page): decided as
    the checkout's would be; None when the order is unknown."""
    sagas = await LoadedOrders.open(uow, policy, store, [order_id])
    decision = sagas.decide(
        None, order_id, lines_cancel_input(request, f"http:{request.request_id}")
    )
    await sagas.save()
    return decision


async def answer_invalid_submission(
    uow: UnitOfWork,
    cause: CloudEvent,
    payload: Any,
    policy: SagaPolicy,
    store: SagaStore | None = None,
) -> bool:
    """Reject a submission the contract refused, if it names a usable order id.

    The upstream checkout must hear back (order.rejected.v1, reason invalid_order, the fields
    at fault); False means there is nobody to answer and the record is a dead letter.
    """
    order_id = usable_order_id(payload)
    if order_id is None:
        return False
    sagas = await LoadedOrders.open(uow, policy, store, [order_id])
    try:
        order = wire.CheckoutOrderSubmitted.model_validate(payload)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        currency = payload.get("currency")
        invalid = domain.InvalidSubmission(
            cause_id=cause.id,
            order_id=order_id,
            fingerprint=domain.submission_fingerprint(payload),
            currency=currency if isinstance(currency, str) else "",
            violations=tuple(domain.violations(errors)),
        )
        sagas.reject_invalid(cause, invalid, loose_facts(payload))
    else:  # valid as JSON data after all (the record failed on something else): take it
        sagas.submit(cause, order)
    await sagas.save()
    return True


async def apply_stock_replies(
    uow: UnitOfWork, batch: Sequence[Inbound], policy: SagaPolicy, store: SagaStore | None = None
) -> None:
    """Stock's answers to the reservation request and its backorder allocations."""
    sagas = await LoadedOrders.open(
        uow, policy, store, (cast(StockEvent, i.event).order_id for i in batch)
    )
    for item in batch:
        event = cast(StockEvent, item.event)
        sagas.decide(item.cloud, event.order_id, stock_input(event, item.cloud.id))
    await sagas.save()


async def record_reply_etas(uow: UnitOfWork, batch: Sequence[Inbound]) -> None:
    """Keep when each backordered line of a reservation reply is expected (before the saga
    hears the reply, so that order.confirmed.v1 carries the dates)."""
    await sql.record_backorder_etas(
        uow.conn,
        [
            (item.event.order_id, line.line_id, line.expected_date)
            for item in batch
            if isinstance(item.event, wire.StockReserved)
            for line in item.event.lines
            if line.backordered
        ],
    )


async def apply_eta_changes(uow: UnitOfWork, batch: Sequence[Inbound]) -> None:
    """Stock moved the expected date of a backordered line: keep it, tell the customer.

    Beside the saga (it decides nothing on dates); a repeat, or a date already known, changes
    and announces nothing."""
    for item in batch:
        event = cast(wire.BackorderEtaChanged, item.event)
        moved = await sql.move_backorder_eta(
            uow.conn, event.order_id, event.line_id, event.expected_date
        )
        if moved is None:
            continue
        uow.with_cause(item.cloud).publish(
            wire.OrderBackorderEtaChanged(
                order_id=event.order_id,
                line_id=event.line_id,
                sku=event.sku,
                expected_date=event.expected_date,
                previous_expected_date=moved["previous"],
            )
        )


async def apply_fulfillment(
    uow: UnitOfWork, batch: Sequence[Inbound], policy: SagaPolicy, store: SagaStore | None = None
) -> None:
    """Shipments created, shortened, cancelled, leaving and arriving, and returns."""
    order_ids = (cast(FulfillmentEvent, i.event).order_id for i in batch)
    sagas = await LoadedOrders.open(uow, policy, store, order_ids)
    for item in batch:
        event = cast(FulfillmentEvent, item.event)
        saga_input = fulfillment_input(event, item.cloud.id)
        decision = sagas.decide(item.cloud, event.order_id, saga_input, source=event)
        if decision is not None and decision.changed:
            sagas.note_shipment(event)
    await sagas.save()


async def fire_due_timers(
    uow: UnitOfWork, limit: int, policy: SagaPolicy, store: SagaStore | None = None
) -> int:
    """Fire up to `limit` due timers in this transaction; return how many were due."""
    now = datetime.now(UTC)
    store = store or SqlSagaStore(uow.conn)
    due = await store.claim_due_timers(now, limit)
    if not due:
        return 0
    sagas = await LoadedOrders.open(uow, policy, store, (t.order_id for t in due))
    for timer in due:
        try:
            sagas.decide(None, timer.order_id, timer_input(timer))
        except Exception:  # one bad timer must not hold back the others
            log.exception(
                "timer could not be fired; retrying later",
                order_id=timer.order_id,
                kind=timer.kind,
            )
            retry = domain.SetTimer(
                domain.TimerKind(timer.kind), now + TIMER_RETRY_DELAY, timer.attempt
            )
            sagas.arm(timer.order_id, retry)
    await sagas.save()
    return len(due)


def usable_order_id(payload: Any) -> str | None:
    """The order id of a submission if it can be answered at all (a contract identifier)."""
    order_id = payload.get("order_id") if isinstance(payload, Mapping) else None
    return order_id if _valid(_IDENTIFIER, order_id) is not None else None


def timer_input(timer: DueTimer) -> domain.SagaInput:
    cause_id = f"timer:{timer.kind}:{timer.order_id}:{timer.attempt}"
    if timer.kind == domain.TimerKind.PAYMENT_DEADLINE:
        return domain.PaymentDeadlinePassed(cause_id)
    return domain.StockReplyTimedOut(cause_id, timer.attempt)


@dataclass
class LoadedOrders:
    """The orders a batch touches, locked and loaded once, decided in order, saved once.

    Not a transaction of its own: it works inside the caller's unit of work, and `save` writes
    the batch's changes (one statement per table) before that commits.
    """

    uow: UnitOfWork
    policy: SagaPolicy
    store: SagaStore
    orders: dict[str, StoredOrder]
    loaded_versions: dict[str, int]
    changed: dict[str, datetime] = field(default_factory=dict)
    timeline: list[tuple[str, domain.TimelineEntry]] = field(default_factory=list)
    timers: dict[tuple[str, str], domain.SetTimer | None] = field(default_factory=dict)
    shipped: list[wire.ShipmentShipped] = field(default_factory=list)
    delivered: list[wire.ShipmentDelivered] = field(default_factory=list)

    @classmethod
    async def open(
        cls,
        uow: UnitOfWork,
        policy: SagaPolicy,
        store: SagaStore | None,
        order_ids: Iterable[str],
    ) -> LoadedOrders:
        store = store or SqlSagaStore(uow.conn)
        orders = await store.lock_orders(sorted(set(order_ids)))
        versions = {order_id: order.saga.version for order_id, order in orders.items()}
        return cls(uow, policy, store, orders, versions)

    def submit(self, cause: CloudEvent, order: wire.CheckoutOrderSubmitted) -> Decision:
        existing = self.orders.get(order.order_id)
        now = datetime.now(UTC)
        decision = domain.submit(
            existing.saga if existing else None, order, cause.id, now, self.policy
        )
        self._record(cause, decision, existing.facts if existing else facts_of(order), None, now)
        return decision

    def reject_invalid(
        self, cause: CloudEvent, submission: domain.InvalidSubmission, facts: OrderFacts
    ) -> Decision:
        existing = self.orders.get(submission.order_id)
        now = datetime.now(UTC)
        decision = domain.reject_invalid(
            existing.saga if existing else None, submission, now, self.policy
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
        """Keep the carrier facts of a shipment the saga accepted, or its delivery time."""
        if isinstance(event, wire.ShipmentShipped):
            self.shipped.append(event)
        elif isinstance(event, wire.ShipmentDelivered):
            self.delivered.append(event)

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
        context = PublicationContext(facts, source, decision.timeline.note, now)
        outgoing = [
            contract_event(effect, context)
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

    async def save(self) -> None:
        await self.store.save_sagas(
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
        await self.store.append_timeline(self.timeline)
        await self.store.set_timers(
            armed=[
                ArmedTimer(order_id, kind, timer.fire_at, timer.attempt)
                for (order_id, kind), timer in self.timers.items()
                if timer is not None
            ],
            cancelled=[key for key, timer in self.timers.items() if timer is None],
        )
        await self.store.record_shipments(self.shipped, self.delivered)


# Wire → saga --------------------------------------------------------------------------------


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


def _valid(adapter: TypeAdapter[Any], value: Any) -> Any:
    try:
        return adapter.validate_python(value)
    except ValidationError:
        return None


def lines_cancel_input(
    event: wire.CheckoutOrderLinesCancelRequested, cause_id: str
) -> domain.LinesCancelRequested:
    return domain.LinesCancelRequested(
        cause_id, event.request_id, _quantities(event.lines), event.reason
    )


def stock_input(event: Event, cause_id: str) -> domain.SagaInput:
    if isinstance(event, wire.StockReserved):
        return domain.StockHeld(
            cause_id,
            tuple(
                domain.LineReservation(
                    line.line_id,
                    allocations=tuple(
                        domain.HeldAtLocation(a.location, a.quantity) for a in line.allocations
                    ),
                    backordered=line.backordered,
                    untracked=line.untracked,
                )
                for line in event.lines
            ),
        )
    if isinstance(event, wire.ReservationRejected):
        return domain.StockRefused(
            cause_id,
            event.reason,
            tuple(domain.Shortfall(s.sku, s.requested, s.available) for s in event.lines),
        )
    if isinstance(event, wire.BackorderAllocated):
        return domain.BackorderFilled(cause_id, event.line_id, event.location, event.quantity)
    raise TypeError(f"not a stock event the saga takes: {event.event_type}")


def fulfillment_input(event: Event, cause_id: str) -> domain.SagaInput:
    if isinstance(event, wire.ShipmentCreated):
        return domain.ShipmentPlanned(
            cause_id, event.shipment_id, event.location, _quantities(event.lines)
        )
    if isinstance(event, wire.ShipmentShortened):
        return domain.ShipmentShortened(
            cause_id,
            event.shipment_id,
            event.location,
            _quantities(event.removed),
            cancel_request_id=event.cancel_request_id,
            reason=event.reason or "",
        )
    if isinstance(event, wire.ShipmentCancelled):
        return domain.ShipmentCancelled(
            cause_id, event.shipment_id, event.reason or "", event.cancel_request_id
        )
    if isinstance(event, wire.ShipmentShipped):
        return domain.Shipped(cause_id, event.shipment_id, _quantities(event.lines))
    if isinstance(event, wire.ShipmentDelivered):
        return domain.Delivered(cause_id, event.shipment_id)
    if isinstance(event, wire.ShipmentException):
        return domain.CarrierException(cause_id, event.shipment_id, event.detail)
    if isinstance(event, wire.ReturnReceived):
        return domain.Returned(cause_id, event.rma_id, _quantities(event.lines))
    raise TypeError(f"not a fulfillment event the saga takes: {event.event_type}")


def _quantities(lines: Iterable[Any]) -> tuple[domain.LineQuantity, ...]:
    return tuple(domain.LineQuantity(line.line_id, line.quantity) for line in lines)
