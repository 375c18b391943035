"""The reservation saga as an explicit state machine: `submit` (or `reject_invalid`) starts
it, `decide` moves it.

Both are pure and total: every (state, input) pair yields a `Decision` with exactly one
timeline entry. The transitions (anything not listed changes nothing and is noted as ignored
or refused):

    RECEIVED          submit                 -> RESERVING
    RECEIVED          reject_invalid         -> REJECTED (invalid_order)
    RESERVING         StockHeld              -> CONFIRMED, or AWAITING_PAYMENT if still pending
    RESERVING         StockRefused           -> REJECTED
    RESERVING         StockReplyTimedOut     -> RESERVING (re-send; then order.stuck, no timer)
    RESERVING         PaymentConfirmed       -> RESERVING (remembered)
    AWAITING_PAYMENT  PaymentConfirmed       -> CONFIRMED
    RESERVING, AWAITING_PAYMENT  PaymentDeadlinePassed -> CANCELLED (payment_timeout, release)
    RESERVING, AWAITING_PAYMENT, CONFIRMED  CancelRequested -> CANCELLED (release)
    AWAITING_PAYMENT, CONFIRMED, PARTIALLY_SHIPPED  BackorderFilled -> same state
    CONFIRMED, PARTIALLY_SHIPPED  ShipmentPlanned -> same (the shipment's units remembered)
    CONFIRMED, PARTIALLY_SHIPPED  Shipped    -> PARTIALLY_SHIPPED, or SHIPPED once all units left
    CONFIRMED, PARTIALLY_SHIPPED  ShipmentShortened, ShipmentCancelled (by the warehouse)
                                  -> by the order's exception policy; cancel_remainder: the
                                     units cancelled (line_cancelled, partial release), then
                                     as `_settle` says; reallocate: same state, the units
                                     released and backordered again (BackorderFilled later)
    CONFIRMED, PARTIALLY_SHIPPED  LinesCancelRequested (units waiting in planned shipments)
                                  -> same (order.lines_cancel_requested to fulfillment); the
                                     ShipmentShortened / ShipmentCancelled that answer it
                                     cancel the units dropped, then as `_settle` says
    any other state               LinesCancelRequested -> refused (order.cancel_refused)
    PARTIALLY_SHIPPED, SHIPPED    Delivered  -> same, or DELIVERED once every shipment arrived
    PARTIALLY_SHIPPED, SHIPPED    CarrierException -> same (order.stuck once per shipment: a
                                     person decides to reship or refund; delivery may follow)
    PARTIALLY_SHIPPED, SHIPPED, DELIVERED  Returned -> same, or RETURNED once all came back

`_settle` ends an order once no unit is left to ship: CANCELLED when every unit was
cancelled, DELIVERED when every shipment (possibly none) arrived, else SHIPPED. An order never
waits in CONFIRMED or PARTIALLY_SHIPPED with nothing left to ship.

Two no-change inputs still have effects: a cancel after shipping publishes
order.cancel_refused, and stock reserved for a cancelled or rejected order is released.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import assert_never

from stockflow.contracts.events.checkout import CheckoutOrderSubmitted
from stockflow.order.domain.intake import backorder_policy, fingerprint_of
from stockflow.order.domain.messages import (
    AnnounceAccepted,
    AnnounceBackorderFilled,
    AnnounceCancelled,
    AnnounceCancelRefused,
    AnnounceConfirmed,
    AnnounceDelivered,
    AnnounceLineCancelled,
    AnnounceLinesCancelRequested,
    AnnounceRejected,
    AnnounceReturned,
    AnnounceShipped,
    AnnounceStuck,
    BackorderFilled,
    CancelRequested,
    CancelTimer,
    CarrierException,
    Decision,
    Delivered,
    Effect,
    InvalidSubmission,
    LinesCancelRequested,
    Outcome,
    PaymentConfirmed,
    PaymentDeadlinePassed,
    ReleaseUnits,
    RequestRelease,
    RequestReservation,
    ReservationLine,
    Returned,
    SagaInput,
    SetTimer,
    ShipmentCancelled,
    ShipmentPlanned,
    ShipmentShortened,
    Shipped,
    ShippedUnits,
    StockHeld,
    StockRefused,
    StockReplyTimedOut,
    TimelineEntry,
    TimerKind,
)
from stockflow.order.domain.model import (
    SHIPPING_STARTED,
    BackorderPolicy,
    FulfillmentExceptionPolicy,
    HeldAtLocation,
    LineQuantity,
    OrderSaga,
    OrderState,
    PaymentStatus,
    PlannedShipment,
    SagaLine,
    SagaShipment,
)

INVALID_ORDER = "invalid_order"
PAYMENT_TIMEOUT = "payment_timeout"
ALREADY_SHIPPED = "already_shipped"
NOT_CANCELLABLE = "not_cancellable"
"""A lines-cancel refused: the units are not in a shipment that waits to leave (yet)."""
NO_STOCK_REPLY = "no_stock_reply"
CARRIER_EXCEPTION = "carrier_exception"
SHORT_PICK = "short_pick"
WAREHOUSE_CANCELLED = "warehouse_cancelled"
SUBMISSION = "OrderSubmitted"
"""The timeline's name for a checkout submission, valid or not."""


@dataclass(frozen=True)
class SagaPolicy:
    """Tunables: how long to wait for stock and how many reservation requests to make."""

    stock_reply_timeout: timedelta = timedelta(seconds=30)
    max_reserve_attempts: int = 3
    exception_policy: FulfillmentExceptionPolicy = FulfillmentExceptionPolicy.CANCEL_REMAINDER
    """The merchant's default for units the warehouse cannot ship; an order may override it."""


DEFAULT_POLICY = SagaPolicy()


def submit(
    existing: OrderSaga | None,
    order: CheckoutOrderSubmitted,
    cause_id: str,
    now: datetime,
    policy: SagaPolicy = DEFAULT_POLICY,
) -> Decision:
    """Take a valid checkout submission (the contract model) for a new or known order.

    New: RESERVING, with order.accepted, the reservation request and timers. Known with the
    same payload: a duplicate, ignored. Known with a different payload: refused, never merged.
    """
    fingerprint = fingerprint_of(order)
    if existing is not None:
        return _resubmitted(_Step(existing, SUBMISSION, cause_id, now, policy), fingerprint)
    received = OrderSaga(order_id=order.order_id, fingerprint=fingerprint)
    return _start(_Step(received, SUBMISSION, cause_id, now, policy), order)


def reject_invalid(
    existing: OrderSaga | None,
    submission: InvalidSubmission,
    now: datetime,
    policy: SagaPolicy = DEFAULT_POLICY,
) -> Decision:
    """Answer a submission the contract refused: REJECTED with reason invalid_order and every
    violation, unless the order is known (then a duplicate or a conflict, as in `submit`)."""
    if existing is not None:
        step = _Step(existing, SUBMISSION, submission.cause_id, now, policy)
        return _resubmitted(step, submission.fingerprint)
    received = OrderSaga(order_id=submission.order_id, fingerprint=submission.fingerprint)
    step = _Step(received, SUBMISSION, submission.cause_id, now, policy)
    rejected = replace(
        received, state=OrderState.REJECTED, reason=INVALID_ORDER, currency=submission.currency
    )
    event = AnnounceRejected(submission.order_id, INVALID_ORDER, violations=submission.violations)
    note = "invalid order: " + "; ".join(f"{v.field} {v.message}" for v in submission.violations)
    return step.apply(rejected, note, event)


def _resubmitted(step: _Step, fingerprint: str) -> Decision:
    if step.saga.fingerprint == fingerprint:
        return step.ignore("duplicate submission")
    return step.refuse("a different payload was already submitted under this order id")


def decide(
    saga: OrderSaga, event: SagaInput, now: datetime, policy: SagaPolicy = DEFAULT_POLICY
) -> Decision:
    """Apply one input to a saga that `submit` started."""
    step = _Step(saga, event.cause_type, event.cause_id, now, policy)
    match event:
        case StockHeld():
            return _on_stock_reserved(step, event)
        case StockRefused():
            return _on_reservation_rejected(step, event)
        case CancelRequested():
            return _on_cancel_requested(step, event)
        case PaymentConfirmed():
            return _on_payment_confirmed(step)
        case PaymentDeadlinePassed():
            return _on_payment_deadline_passed(step)
        case StockReplyTimedOut():
            return _on_stock_reply_timed_out(step, event)
        case BackorderFilled():
            return _on_backorder_allocated(step, event)
        case Shipped():
            return _on_shipped(step, event)
        case Delivered() | CarrierException():
            return _on_carrier_report(step, event)
        case Returned():
            return _on_returned(step, event)
        case ShipmentPlanned() | ShipmentShortened() | ShipmentCancelled() | LinesCancelRequested():
            return _on_plan_changed(step, event)
        case _:
            assert_never(event)


@dataclass(frozen=True)
class _Step:
    """One input being decided: builds the Decision and its timeline entry."""

    saga: OrderSaga
    cause_type: str
    cause_id: str
    now: datetime
    policy: SagaPolicy

    def apply(self, after: OrderSaga, note: str, *effects: Effect) -> Decision:
        if after.state is not OrderState.RESERVING:
            # A stock reply is only awaited while reserving.
            after = replace(after, stock_reply_due_at=None)
        after = replace(after, version=self.saga.version + 1)
        timers = _timer_changes(_armed_timers(self.saga), _armed_timers(after))
        return self._decision(after, Outcome.APPLIED, note, (*effects, *timers))

    def ignore(self, note: str, *effects: Effect) -> Decision:
        return self._decision(self.saga, Outcome.IGNORED, note, effects)

    def refuse(self, note: str, *effects: Effect) -> Decision:
        return self._decision(self.saga, Outcome.REFUSED, note, effects)

    def _decision(
        self, after: OrderSaga, outcome: Outcome, note: str, effects: tuple[Effect, ...]
    ) -> Decision:
        entry = TimelineEntry(
            at=self.now,
            from_state=self.saga.state,
            to_state=after.state,
            cause_type=self.cause_type,
            cause_id=self.cause_id,
            outcome=outcome,
            note=note,
        )
        return Decision(saga=after, timeline=entry, effects=effects)


def _start(step: _Step, order: CheckoutOrderSubmitted) -> Decision:
    lines = tuple(
        SagaLine(line.line_id, line.sku, line.quantity, line.unit_price) for line in order.lines
    )
    reserving = replace(
        step.saga,
        state=OrderState.RESERVING,
        currency=order.currency,
        lines=lines,
        payment=PaymentStatus(order.payment.status),
        payment_deadline=order.payment.deadline,
        backorder_policy=backorder_policy(order),
        exception_policy=FulfillmentExceptionPolicy(
            order.fulfillment_exception_policy or step.policy.exception_policy
        ),
        reserve_attempts=1,
        stock_reply_due_at=step.now + step.policy.stock_reply_timeout,
    )
    accepted = AnnounceAccepted(
        order.order_id, reserving.currency, reserving.payment, reserving.backorder_policy, lines
    )
    return step.apply(reserving, "order accepted; reserving stock", accepted, _reserve(reserving))


def _on_stock_reserved(step: _Step, event: StockHeld) -> Decision:
    saga = step.saga
    if saga.state is OrderState.RESERVING:
        mismatch = _reservation_mismatch(saga, event)
        if mismatch:
            return step.refuse(f"stock reply does not match the order: {mismatch}")
        answers = {answer.line_id: answer for answer in event.lines}
        reserved = replace(
            saga,
            lines=tuple(
                replace(
                    line,
                    allocations=answers[line.line_id].allocations,
                    backordered=answers[line.line_id].backordered,
                    untracked=answers[line.line_id].untracked,
                )
                for line in saga.lines
            ),
        )
        note = f"stock reserved{_backorder_note(reserved)}"
        if saga.payment is PaymentStatus.PENDING:
            waiting = replace(reserved, state=OrderState.AWAITING_PAYMENT)
            return step.apply(waiting, f"{note}; waiting for payment")
        return _confirm(step, reserved, note)
    if saga.state in (OrderState.CANCELLED, OrderState.REJECTED):
        # Stock held units for an order that has ended: give them back.
        release = RequestRelease(saga.order_id, reason=saga.reason or saga.state.value)
        return step.ignore(f"stock reserved after the order was {saga.state}; released", release)
    return step.ignore(f"duplicate stock reply ignored in state {saga.state}")


def _on_reservation_rejected(step: _Step, event: StockRefused) -> Decision:
    saga = step.saga
    if saga.state is not OrderState.RESERVING:
        return step.ignore(f"late stock rejection ({event.reason}) ignored in state {saga.state}")
    rejected = replace(saga, state=OrderState.REJECTED, reason=event.reason)
    published = AnnounceRejected(saga.order_id, event.reason, shortfalls=event.lines)
    return step.apply(rejected, f"stock rejected the order: {event.reason}", published)


def _on_cancel_requested(step: _Step, event: CancelRequested) -> Decision:
    saga = step.saga
    if saga.state in (OrderState.RESERVING, OrderState.AWAITING_PAYMENT, OrderState.CONFIRMED):
        return _cancel(step, event.reason)
    if saga.state in SHIPPING_STARTED:
        refused = AnnounceCancelRefused(saga.order_id, ALREADY_SHIPPED, event.reason)
        return step.refuse("cancel refused: already shipped", refused)
    return step.ignore(f"cancel ignored: order is {saga.state}")


def _on_payment_confirmed(step: _Step) -> Decision:
    saga = step.saga
    if saga.payment is PaymentStatus.AUTHORIZED:
        return step.ignore("duplicate payment confirmation")
    if saga.state is OrderState.RESERVING:
        paid = replace(saga, payment=PaymentStatus.AUTHORIZED)
        return step.apply(paid, "payment confirmed; confirming once stock answers")
    if saga.state is OrderState.AWAITING_PAYMENT:
        return _confirm(step, replace(saga, payment=PaymentStatus.AUTHORIZED), "payment confirmed")
    # A payment that arrives after its deadline never revives the order.
    return step.ignore(f"late payment ignored: order is {saga.state} ({saga.reason})")


def _on_payment_deadline_passed(step: _Step) -> Decision:
    saga = step.saga
    waiting = saga.state in (OrderState.RESERVING, OrderState.AWAITING_PAYMENT)
    if waiting and saga.payment is PaymentStatus.PENDING:
        return _cancel(step, PAYMENT_TIMEOUT)
    return step.ignore(f"stale payment deadline ignored in state {saga.state}")


def _on_stock_reply_timed_out(step: _Step, event: StockReplyTimedOut) -> Decision:
    saga = step.saga
    current = (
        saga.state is OrderState.RESERVING
        and not saga.stuck
        and event.attempt == saga.reserve_attempts
    )
    if not current:
        return step.ignore(f"stale stock reply timer (attempt {event.attempt}) ignored")
    if saga.reserve_attempts < step.policy.max_reserve_attempts:
        retry = replace(
            saga,
            reserve_attempts=saga.reserve_attempts + 1,
            stock_reply_due_at=step.now + step.policy.stock_reply_timeout,
        )
        note = f"no stock reply; ReserveStock re-sent (attempt {retry.reserve_attempts})"
        return step.apply(retry, note, _reserve(retry))
    stuck = replace(saga, stuck=True, stock_reply_due_at=None)
    alert = AnnounceStuck(saga.order_id, saga.state, saga.reserve_attempts, NO_STOCK_REPLY)
    return step.apply(stuck, f"no stock reply after {saga.reserve_attempts} attempts", alert)


def _on_backorder_allocated(step: _Step, event: BackorderFilled) -> Decision:
    saga = step.saga
    allowed = (OrderState.AWAITING_PAYMENT, OrderState.CONFIRMED, OrderState.PARTIALLY_SHIPPED)
    if saga.state not in allowed:
        return step.refuse(f"backorder allocation not expected in state {saga.state}")
    line = saga.line(event.line_id)
    if line is None:
        return step.refuse(f"backorder allocation for unknown line {event.line_id}")
    if not 0 < event.quantity <= line.backordered:
        return step.refuse(
            f"allocation of {event.quantity} exceeds the {line.backordered} backordered "
            f"on line {line.line_id}"
        )
    allocated = replace(
        line,
        backordered=line.backordered - event.quantity,
        allocations=_add_allocation(line.allocations, event.location, event.quantity),
    )
    after = _with_line(saga, allocated)
    note = f"backorder allocated: {event.quantity} of line {line.line_id} at {event.location}"
    if saga.state is OrderState.AWAITING_PAYMENT:
        # order.confirmed will carry the allocation once payment arrives.
        return step.apply(after, note)
    published = AnnounceBackorderFilled(
        saga.order_id, line.line_id, line.sku, event.location, event.quantity, allocated.backordered
    )
    return step.apply(after, note, published)


def _on_shipped(step: _Step, event: Shipped) -> Decision:
    saga = step.saga
    if saga.shipment(event.shipment_id) is not None:
        return step.ignore(f"duplicate shipment {event.shipment_id}")
    if saga.state not in (OrderState.CONFIRMED, OrderState.PARTIALLY_SHIPPED):
        return step.refuse(f"shipment {event.shipment_id} not expected in state {saga.state}")
    quantities = _sum_by_line(event.lines)
    # Bounded by the ordered quantity, not by what is reserved: fulfillment may hear of a
    # backorder allocation before the order does.
    problem = _quantity_problem(
        saga, quantities, lambda line: line.quantity - line.shipped - line.cancelled
    )
    if problem:
        return step.refuse(f"shipment {event.shipment_id} refused: {problem}")
    lines = tuple(
        replace(line, shipped=line.shipped + quantities.get(line.line_id, 0)) for line in saga.lines
    )
    # Untracked lines (digital goods, services) are never shipped.
    fully_shipped = all(line.outstanding == 0 for line in lines)
    after = replace(
        saga,
        lines=lines,
        planned=tuple(s for s in saga.planned if s.shipment_id != event.shipment_id),
        shipments=(
            *saga.shipments,
            SagaShipment(event.shipment_id, _as_line_quantities(quantities)),
        ),
        state=OrderState.SHIPPED if fully_shipped else OrderState.PARTIALLY_SHIPPED,
    )
    published = AnnounceShipped(
        saga.order_id, event.shipment_id, _shipped_units(saga, quantities), fully_shipped
    )
    return step.apply(after, f"shipment {event.shipment_id} shipped", published)


def _on_carrier_report(step: _Step, event: Delivered | CarrierException) -> Decision:
    match event:
        case Delivered():
            return _on_delivered(step, event)
        case CarrierException():
            return _on_carrier_exception(step, event)
        case _:
            assert_never(event)


def _on_carrier_exception(step: _Step, event: CarrierException) -> Decision:
    """The goods left stock and the books already hold them as sold: whether to reship or
    refund is a person's call, so the order waits for delivery and calls an operator once."""
    saga = step.saga
    shipment = saga.shipment(event.shipment_id)
    if shipment is None:
        return step.refuse(f"carrier exception on unknown shipment {event.shipment_id}")
    key = f"exception:{event.shipment_id}"
    if shipment.delivered or key in saga.handled:
        return step.ignore(
            f"carrier exception on {event.shipment_id} already known: {event.detail}"
        )
    if saga.state not in (OrderState.PARTIALLY_SHIPPED, OrderState.SHIPPED):
        return step.ignore(f"carrier exception on {event.shipment_id} in state {saga.state}")
    alert = AnnounceStuck(saga.order_id, saga.state, 0, CARRIER_EXCEPTION)
    noted = replace(saga, handled=(*saga.handled, key))
    note = f"carrier exception on {event.shipment_id}: {event.detail}; an operator decides"
    return step.apply(noted, note, alert)


def _on_delivered(step: _Step, event: Delivered) -> Decision:
    saga = step.saga
    shipment = saga.shipment(event.shipment_id)
    if shipment is None:
        return step.refuse(f"delivery of unknown shipment {event.shipment_id}")
    if shipment.delivered:
        return step.ignore(f"duplicate delivery of shipment {event.shipment_id}")
    if saga.state not in (OrderState.PARTIALLY_SHIPPED, OrderState.SHIPPED):
        return step.refuse(f"delivery not expected in state {saga.state}")
    shipments = tuple(
        replace(s, delivered=True) if s.shipment_id == event.shipment_id else s
        for s in saga.shipments
    )
    after = replace(saga, shipments=shipments)
    note = f"shipment {event.shipment_id} delivered"
    if saga.state is OrderState.SHIPPED and all(s.delivered for s in shipments):
        published = AnnounceDelivered(saga.order_id, tuple(s.shipment_id for s in shipments))
        return step.apply(replace(after, state=OrderState.DELIVERED), note, published)
    return step.apply(after, note)


def _on_returned(step: _Step, event: Returned) -> Decision:
    saga = step.saga
    if event.rma_id in saga.return_ids:
        return step.ignore(f"duplicate return {event.rma_id}")
    allowed = (OrderState.PARTIALLY_SHIPPED, OrderState.SHIPPED, OrderState.DELIVERED)
    if saga.state not in allowed:
        return step.refuse(f"return {event.rma_id} not expected in state {saga.state}")
    quantities = _sum_by_line(event.lines)
    problem = _quantity_problem(saga, quantities, lambda line: line.shipped - line.returned)
    if problem:
        return step.refuse(f"return {event.rma_id} refused: {problem}")
    lines = tuple(
        replace(line, returned=line.returned + quantities.get(line.line_id, 0))
        for line in saga.lines
    )
    fully_returned = saga.state is not OrderState.PARTIALLY_SHIPPED and all(
        line.returned == line.quantity - line.cancelled for line in lines
    )
    after = replace(
        saga,
        lines=lines,
        return_ids=(*saga.return_ids, event.rma_id),
        state=OrderState.RETURNED if fully_returned else saga.state,
    )
    published = AnnounceReturned(saga.order_id, event.rma_id, fully_returned)
    return step.apply(after, f"return {event.rma_id} received", published)


def _on_plan_changed(
    step: _Step,
    event: ShipmentPlanned | ShipmentShortened | ShipmentCancelled | LinesCancelRequested,
) -> Decision:
    """What will ship changes before it leaves: a shipment created, shortened or cancelled;
    a customer asks to cancel units."""
    match event:
        case ShipmentPlanned():
            return _on_shipment_planned(step, event)
        case ShipmentShortened():
            return _on_shipment_shortened(step, event)
        case ShipmentCancelled():
            return _on_shipment_cancelled(step, event)
        case LinesCancelRequested():
            return _on_lines_cancel_requested(step, event)
        case _:
            assert_never(event)


def _on_shipment_planned(step: _Step, event: ShipmentPlanned) -> Decision:
    saga = step.saga
    if saga.planned_shipment(event.shipment_id) or saga.shipment(event.shipment_id):
        return step.ignore(f"duplicate shipment {event.shipment_id} created")
    if saga.state not in (OrderState.CONFIRMED, OrderState.PARTIALLY_SHIPPED):
        return step.ignore(f"shipment {event.shipment_id} created in state {saga.state}")
    planned = PlannedShipment(event.shipment_id, event.location, event.lines)
    after = replace(saga, planned=(*saga.planned, planned))
    return step.apply(after, f"shipment {event.shipment_id} created at {event.location}")


def _on_shipment_shortened(step: _Step, event: ShipmentShortened) -> Decision:
    saga = step.saga
    what = f"units dropped from {event.shipment_id}"
    key = f"shortened:{event.shipment_id}"
    if event.cancel_request_id:
        key += f":{event.cancel_request_id}"
    if key in saga.handled:
        return step.ignore(f"duplicate report of {what}")
    if saga.state not in (OrderState.CONFIRMED, OrderState.PARTIALLY_SHIPPED):
        return step.ignore(f"{what} ignored in state {saga.state}")
    quantities = _sum_by_line(event.removed)
    problem = _quantity_problem(saga, quantities, lambda line: line.outstanding)
    if problem:
        return step.refuse(f"{what} refused: {problem}")
    planned = tuple(
        replace(s, lines=_less(s.lines, quantities)) if s.shipment_id == event.shipment_id else s
        for s in saga.planned
    )
    noted = replace(saga, planned=planned, handled=(*saga.handled, key))
    if event.cancel_request_id:
        dropped = _Dropped(event.location, quantities, not_found=False, reason=event.reason)
        return _cancel_units(step, noted, dropped)
    dropped = _Dropped(event.location, quantities, not_found=True, reason=SHORT_PICK)
    return _drop_units(step, noted, dropped)


def _on_shipment_cancelled(step: _Step, event: ShipmentCancelled) -> Decision:
    saga = step.saga
    key = f"cancelled:{event.shipment_id}"
    if key in saga.handled:
        return step.ignore(f"duplicate cancel of shipment {event.shipment_id}")
    if saga.state not in (OrderState.CONFIRMED, OrderState.PARTIALLY_SHIPPED):
        # The order's own cancel cancels its shipments: nothing more to do.
        return step.ignore(f"shipment {event.shipment_id} cancelled; order is {saga.state}")
    planned = saga.planned_shipment(event.shipment_id)
    if planned is None:
        return step.refuse(f"cancel of shipment {event.shipment_id}, which is not waiting")
    noted = replace(
        saga,
        planned=tuple(s for s in saga.planned if s.shipment_id != event.shipment_id),
        handled=(*saga.handled, key),
    )
    quantities = _sum_by_line(planned.lines)
    problem = _quantity_problem(saga, quantities, lambda line: line.outstanding)
    if problem:
        return step.refuse(f"cancel of shipment {event.shipment_id} refused: {problem}")
    if event.cancel_request_id:
        dropped = _Dropped(planned.location, quantities, not_found=False, reason=event.reason)
        return _cancel_units(step, noted, dropped)
    dropped = _Dropped(planned.location, quantities, not_found=False, reason=WAREHOUSE_CANCELLED)
    return _drop_units(step, noted, dropped)


def _on_lines_cancel_requested(step: _Step, event: LinesCancelRequested) -> Decision:
    """Units that wait in a planned shipment may be cancelled: fulfillment drops them from
    shipments that have not left and reports it (shortened or cancelled, with the request id),
    and only then are they cancelled. Units fulfillment could not drop ship as planned."""
    saga = step.saga
    key = f"cancel:{event.request_id}"
    if key in saga.handled:
        return step.ignore(f"duplicate lines cancel request {event.request_id}")
    if saga.state not in (OrderState.CONFIRMED, OrderState.PARTIALLY_SHIPPED):
        reason = ALREADY_SHIPPED if saga.state in SHIPPING_STARTED else NOT_CANCELLABLE
        refused = AnnounceCancelRefused(saga.order_id, reason, event.reason)
        return step.refuse(f"lines cancel refused: order is {saga.state}", refused)
    quantities = _sum_by_line(event.lines)
    problem = _quantity_problem(saga, quantities, lambda line: _waiting_to_ship(saga, line))
    if problem:
        refused = AnnounceCancelRefused(saga.order_id, NOT_CANCELLABLE, event.reason)
        return step.refuse(f"lines cancel refused: {problem} in a waiting shipment", refused)
    asked = AnnounceLinesCancelRequested(
        saga.order_id, event.request_id, _shipped_units(saga, quantities), event.reason
    )
    noted = replace(saga, handled=(*saga.handled, key))
    return step.apply(noted, f"lines cancel {event.request_id} sent to fulfillment", asked)


def _waiting_to_ship(saga: OrderSaga, line: SagaLine) -> int:
    """Units of `line` in shipments fulfillment created that have not left."""
    return sum(q.quantity for s in saga.planned for q in s.lines if q.line_id == line.line_id)


@dataclass(frozen=True)
class _Dropped:
    """Units per line the warehouse will not ship from `location`, and why."""

    location: str
    quantities: dict[str, int]
    not_found: bool
    reason: str


def _drop_units(step: _Step, saga: OrderSaga, dropped: _Dropped) -> Decision:
    """Units the warehouse will not ship, handled by the order's exception policy."""
    match saga.exception_policy:
        case FulfillmentExceptionPolicy.CANCEL_REMAINDER:
            return _cancel_units(step, saga, dropped)
        case FulfillmentExceptionPolicy.REALLOCATE:
            return _reallocate_units(step, saga, dropped)
        case _:
            assert_never(saga.exception_policy)


def _reallocate_units(step: _Step, saga: OrderSaga, dropped: _Dropped) -> Decision:
    """Release the units where they were held and put them back on the line's backorder;
    stock's allocations (BackorderFilled) bring them back, and fulfillment ships each one."""
    held = {
        line_id: sum(
            a.quantity for a in _line(saga, line_id).allocations if a.location == dropped.location
        )
        for line_id in dropped.quantities
    }
    refuses_backorders = saga.backorder_policy is BackorderPolicy.REJECT
    if refuses_backorders or any(q > held[i] for i, q in dropped.quantities.items()):
        # Units the order never heard were allocated there cannot be moved: cancel them all.
        return _cancel_units(step, saga, dropped)
    after = saga
    released = []
    for line_id, quantity in dropped.quantities.items():
        line = _line(after, line_id)
        after = _with_line(
            after,
            replace(
                line,
                backordered=line.backordered + quantity,
                allocations=_less_held(line.allocations, dropped.location, quantity),
            ),
        )
        released.append(
            ReleaseUnits(
                line_id, line.sku, dropped.location, quantity, dropped.not_found, backorder=True
            )
        )
    release = RequestRelease(saga.order_id, dropped.reason, tuple(released))
    summary = ", ".join(f"{q} of line {line_id}" for line_id, q in dropped.quantities.items())
    return step.apply(after, f"{dropped.reason}: {summary} back on backorder", release)


def _line(saga: OrderSaga, line_id: str) -> SagaLine:
    line = saga.line(line_id)
    assert line is not None  # the caller checked every line id
    return line


def _cancel_units(step: _Step, saga: OrderSaga, dropped: _Dropped) -> Decision:
    """Cancel units of lines: release what they held, tell the customer, settle the order.

    Units the order does not hold at the location (fulfillment heard of a backorder fill
    before the order did) are cancelled all the same; stock releases what is there."""
    after = saga
    released: list[ReleaseUnits] = []
    announced: list[Effect] = []
    for line_id, quantity in dropped.quantities.items():
        line = after.line(line_id)
        assert line is not None  # the caller checked every line id
        held = sum(a.quantity for a in line.allocations if a.location == dropped.location)
        if min(held, quantity):
            released.append(
                ReleaseUnits(
                    line_id, line.sku, dropped.location, min(held, quantity), dropped.not_found
                )
            )
        changed = replace(
            line,
            cancelled=line.cancelled + quantity,
            allocations=_less_held(line.allocations, dropped.location, quantity),
        )
        after = _with_line(after, changed)
        remaining = changed.quantity - changed.cancelled
        announced.append(
            AnnounceLineCancelled(
                saga.order_id, line_id, line.sku, quantity, dropped.reason, remaining
            )
        )
    release = (RequestRelease(saga.order_id, dropped.reason, tuple(released)),) if released else ()
    summary = ", ".join(f"{q} of line {line_id}" for line_id, q in dropped.quantities.items())
    return _settle(step, after, f"{dropped.reason}: cancelled {summary}", (*release, *announced))


def _settle(step: _Step, after: OrderSaga, note: str, effects: tuple[Effect, ...]) -> Decision:
    """End the order once nothing is left to ship (see the module's table)."""
    if any(line.outstanding for line in after.lines):
        return step.apply(after, note, *effects)
    if all(line.cancelled == line.quantity for line in after.lines):
        ended = replace(after, state=OrderState.CANCELLED, reason="every unit cancelled")
        cancelled = AnnounceCancelled(after.order_id, "every unit cancelled")
        return step.apply(ended, f"{note}; nothing left: order cancelled", *effects, cancelled)
    if all(s.delivered for s in after.shipments):
        shipment_ids = tuple(s.shipment_id for s in after.shipments)
        delivered = AnnounceDelivered(after.order_id, shipment_ids)
        ended = replace(after, state=OrderState.DELIVERED)
        return step.apply(ended, f"{note}; everything else delivered", *effects, delivered)
    shipped = replace(after, state=OrderState.SHIPPED)
    return step.apply(shipped, f"{note}; everything else shipped", *effects)


def _less(lines: tuple[LineQuantity, ...], removed: dict[str, int]) -> tuple[LineQuantity, ...]:
    left = (LineQuantity(q.line_id, q.quantity - removed.get(q.line_id, 0)) for q in lines)
    return tuple(q for q in left if q.quantity > 0)


def _less_held(
    allocations: tuple[HeldAtLocation, ...], location: str, quantity: int
) -> tuple[HeldAtLocation, ...]:
    left = (
        HeldAtLocation(a.location, a.quantity - min(a.quantity, quantity))
        if a.location == location
        else a
        for a in allocations
    )
    return tuple(a for a in left if a.quantity > 0)


def _confirm(step: _Step, reserved: OrderSaga, note: str) -> Decision:
    confirmed = replace(reserved, state=OrderState.CONFIRMED)
    published = AnnounceConfirmed(confirmed.order_id, confirmed.currency, confirmed.lines)
    if all(line.untracked for line in confirmed.lines):
        # Digital goods and services only: nothing will ever be shipped, so it is delivered.
        delivered = AnnounceDelivered(confirmed.order_id, shipment_ids=())
        return step.apply(
            replace(confirmed, state=OrderState.DELIVERED),
            f"{note}; order confirmed and delivered (nothing to ship)",
            published,
            delivered,
        )
    return step.apply(confirmed, f"{note}; order confirmed", published)


def _cancel(step: _Step, reason: str) -> Decision:
    saga = step.saga
    cancelled = replace(saga, state=OrderState.CANCELLED, reason=reason)
    return step.apply(
        cancelled,
        f"cancelled: {reason}",
        RequestRelease(saga.order_id, reason=reason),
        AnnounceCancelled(saga.order_id, reason),
    )


def _reserve(saga: OrderSaga) -> RequestReservation:
    return RequestReservation(
        order_id=saga.order_id,
        lines=tuple(ReservationLine(line.line_id, line.sku, line.quantity) for line in saga.lines),
        backorder_policy=saga.backorder_policy,
        attempt=saga.reserve_attempts,
    )


def _armed_timers(saga: OrderSaga) -> dict[TimerKind, SetTimer]:
    """The timers a saga in this state needs; effects are the difference before → after."""
    timers: dict[TimerKind, SetTimer] = {}
    if saga.state is OrderState.RESERVING and saga.stock_reply_due_at is not None:
        timers[TimerKind.STOCK_REPLY] = SetTimer(
            TimerKind.STOCK_REPLY, saga.stock_reply_due_at, attempt=saga.reserve_attempts
        )
    awaiting = saga.state in (OrderState.RESERVING, OrderState.AWAITING_PAYMENT)
    if awaiting and saga.payment is PaymentStatus.PENDING and saga.payment_deadline is not None:
        timers[TimerKind.PAYMENT_DEADLINE] = SetTimer(
            TimerKind.PAYMENT_DEADLINE, saga.payment_deadline
        )
    return timers


def _timer_changes(
    before: dict[TimerKind, SetTimer], after: dict[TimerKind, SetTimer]
) -> list[Effect]:
    changes: list[Effect] = [CancelTimer(kind) for kind in before if kind not in after]
    changes += [timer for kind, timer in after.items() if before.get(kind) != timer]
    return changes


def _reservation_mismatch(saga: OrderSaga, event: StockHeld) -> str | None:
    answered = Counter(answer.line_id for answer in event.lines)
    expected = {line.line_id for line in saga.lines}
    if set(answered) != expected or any(count > 1 for count in answered.values()):
        return "lines answered do not match the lines ordered"
    ordered = {line.line_id: line.quantity for line in saga.lines}
    for answer in event.lines:
        held = sum(a.quantity for a in answer.allocations)
        if answer.untracked:
            if held or answer.backordered:
                return f"line {answer.line_id} is untracked yet has stock held or backordered"
        elif held + answer.backordered != ordered[answer.line_id]:
            return f"line {answer.line_id}: held plus backordered is not the ordered quantity"
        if answer.backordered and saga.backorder_policy is BackorderPolicy.REJECT:
            return f"line {answer.line_id} backordered although the order refuses backorders"
    return None


def _backorder_note(saga: OrderSaga) -> str:
    backordered = sum(line.backordered for line in saga.lines)
    return f" ({backordered} units backordered)" if backordered else ""


def _add_allocation(
    allocations: tuple[HeldAtLocation, ...], location: str, quantity: int
) -> tuple[HeldAtLocation, ...]:
    if any(a.location == location for a in allocations):
        return tuple(
            HeldAtLocation(a.location, a.quantity + quantity) if a.location == location else a
            for a in allocations
        )
    return (*allocations, HeldAtLocation(location, quantity))


def _with_line(saga: OrderSaga, changed: SagaLine) -> OrderSaga:
    return replace(
        saga,
        lines=tuple(changed if line.line_id == changed.line_id else line for line in saga.lines),
    )


def _sum_by_line(lines: tuple[LineQuantity, ...]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for item in lines:
        totals[item.line_id] = totals.get(item.line_id, 0) + item.quantity
    return totals


def _quantity_problem(
    saga: OrderSaga, quantities: dict[str, int], room: Callable[[SagaLine], int]
) -> str | None:
    """Why these per-line quantities do not fit; `room(line)` is how many units still fit."""
    if not quantities:
        return "no lines"
    for line_id, quantity in quantities.items():
        line = saga.line(line_id)
        if line is None:
            return f"unknown line {line_id}"
        if quantity <= 0:
            return f"quantity {quantity} on line {line_id} must be positive"
        if quantity > room(line):
            return f"{quantity} units on line {line_id} exceed the {room(line)} remaining"
    return None


def _as_line_quantities(quantities: dict[str, int]) -> tuple[LineQuantity, ...]:
    return tuple(LineQuantity(line_id, quantity) for line_id, quantity in quantities.items())


def _shipped_units(saga: OrderSaga, quantities: dict[str, int]) -> tuple[ShippedUnits, ...]:
    return tuple(
        ShippedUnits(line.line_id, line.sku, quantities[line.line_id])
        for line in saga.lines
        if line.line_id in quantities
    )
