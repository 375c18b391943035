"""The reservation saga, transition by transition, with fixed times."""

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import pytest
from pydantic import ValidationError

from stockflow.contracts.events.checkout import CheckoutOrderSubmitted
from stockflow.order.domain import (
    ALREADY_SHIPPED,
    DEFAULT_POLICY,
    INVALID_ORDER,
    NO_STOCK_REPLY,
    PAYMENT_TIMEOUT,
    SETTLED_STATES,
    TERMINAL_STATES,
    AnnounceAccepted,
    AnnounceBackorderFilled,
    AnnounceCancelled,
    AnnounceCancelRefused,
    AnnounceConfirmed,
    AnnounceDelivered,
    AnnounceLineCancelled,
    AnnounceLinesCancelRequested,
    Announcement,
    AnnounceRejected,
    AnnounceReturned,
    AnnounceShipped,
    AnnounceStuck,
    BackorderFilled,
    BackorderPolicy,
    CancelRequested,
    CancelTimer,
    CarrierException,
    Decision,
    Delivered,
    Effect,
    FulfillmentExceptionPolicy,
    HeldAtLocation,
    InvalidSubmission,
    LineQuantity,
    LineReservation,
    LinesCancelRequested,
    OrderSaga,
    OrderState,
    Outcome,
    PaymentConfirmed,
    PaymentDeadlinePassed,
    PaymentStatus,
    PlannedShipment,
    ReleaseUnits,
    RequestRelease,
    RequestReservation,
    ReservationLine,
    Returned,
    SagaInput,
    SagaLine,
    SagaPolicy,
    SetTimer,
    ShipmentCancelled,
    ShipmentPlanned,
    ShipmentShortened,
    Shipped,
    ShippedUnits,
    Shortfall,
    StockHeld,
    StockRefused,
    StockReplyTimedOut,
    TimerKind,
    decide,
    reject_invalid,
    submission_fingerprint,
    submit,
    violations,
)

A = TypeVar("A")
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
DEADLINE = T0 + timedelta(hours=1)
LATER = T0 + timedelta(minutes=5)
REPLY_TIMEOUT = DEFAULT_POLICY.stock_reply_timeout


def order_payload(**overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "order_id": "ord-1",
        "customer_id": "cust-1",
        "currency": "EUR",
        "placed_at": "2025-03-01T12:00:00Z",
        "lines": [
            {"line_id": "L1", "sku": "SKU-A", "quantity": 3, "unit_price": "10.00"},
            {"line_id": "L2", "sku": "SKU-B", "quantity": 1, "unit_price": "4.50"},
        ],
        "shipping_address": {
            "name": "Ada",
            "line1": "1 Main St",
            "city": "Springfield",
            "postal_code": "12345",
            "country": "US",
        },
        "payment": {"status": "authorized", "reference": "pay-1"},
    }
    payload.update(overrides)
    return payload


def order(**overrides: Any) -> CheckoutOrderSubmitted:
    """A valid submission as the consumer hands it to the saga: the contract model."""
    return CheckoutOrderSubmitted.model_validate(order_payload(**overrides))


def invalid(**overrides: Any) -> InvalidSubmission:
    """A submission the contract refuses, as the use case hands it to the saga."""
    payload = order_payload(**overrides)
    with pytest.raises(ValidationError) as refused:
        CheckoutOrderSubmitted.model_validate(payload)
    return InvalidSubmission(
        cause_id="evt-submit",
        order_id=payload["order_id"],
        fingerprint=submission_fingerprint(payload),
        currency=payload["currency"],
        violations=tuple(violations(refused.value.errors())),
    )


PENDING = {"status": "pending", "reference": "pay-1", "deadline": "2025-03-01T13:00:00Z"}


def started(**overrides: Any) -> OrderSaga:
    return submit(None, order(**overrides), "evt-submit", T0).saga


def held(line_id: str, quantity: int, location: str = "WH1") -> LineReservation:
    return LineReservation(line_id, allocations=(HeldAtLocation(location, quantity),))


ALL_HELD = StockHeld("evt-reserved", (held("L1", 3), held("L2", 1)))
L1_SHORT = StockHeld(
    "evt-reserved",
    (
        LineReservation("L1", allocations=(HeldAtLocation("WH1", 1),), backordered=2),
        held("L2", 1),
    ),
)


def run(saga: OrderSaga, *inputs: SagaInput) -> OrderSaga:
    for event in inputs:
        saga = decide(saga, event, LATER).saga
    return saga


def confirmed(**overrides: Any) -> OrderSaga:
    return run(started(**overrides), ALL_HELD)


def awaiting_payment() -> OrderSaga:
    return run(started(payment=PENDING), ALL_HELD)


def partially_shipped() -> OrderSaga:
    return run(confirmed(), Shipped("evt-s1", "S1", (LineQuantity("L1", 1),)))


def shipped() -> OrderSaga:
    return run(confirmed(), Shipped("evt-s1", "S1", (LineQuantity("L1", 3), LineQuantity("L2", 1))))


def delivered() -> OrderSaga:
    return run(shipped(), Delivered("evt-d1", "S1"))


def returned() -> OrderSaga:
    return run(
        delivered(), Returned("evt-r1", "R1", (LineQuantity("L1", 3), LineQuantity("L2", 1)))
    )


def cancelled() -> OrderSaga:
    return run(started(), CancelRequested("evt-cancel", "customer_request"))


def rejected() -> OrderSaga:
    return run(started(), StockRefused("evt-rej", "insufficient_stock"))


SAGA_IN_STATE = {
    OrderState.RESERVING: started,
    OrderState.AWAITING_PAYMENT: awaiting_payment,
    OrderState.CONFIRMED: confirmed,
    OrderState.PARTIALLY_SHIPPED: partially_shipped,
    OrderState.SHIPPED: shipped,
    OrderState.DELIVERED: delivered,
    OrderState.RETURNED: returned,
    OrderState.CANCELLED: cancelled,
    OrderState.REJECTED: rejected,
}


def events(decision: Decision) -> list[Announcement]:
    return [e for e in decision.effects if isinstance(e, Announcement)]


def the_event(decision: Decision, kind: type[A]) -> A:
    (event,) = [e for e in decision.effects if isinstance(e, kind)]
    return event


def non_events(decision: Decision) -> list[Effect]:
    return [e for e in decision.effects if not isinstance(e, Announcement)]


def assert_unchanged(before: OrderSaga, decision: Decision, outcome: Outcome) -> None:
    assert decision.saga is before
    assert decision.timeline.outcome is outcome
    assert decision.timeline.from_state is decision.timeline.to_state is before.state
    assert not decision.changed


# --- the saga's states ---------------------------------------------------------------------


def test_helpers_reach_the_state_they_name() -> None:
    for state, build in SAGA_IN_STATE.items():
        assert build().state is state


def test_settled_and_terminal_states() -> None:
    assert {
        OrderState.REJECTED,
        OrderState.CANCELLED,
        OrderState.DELIVERED,
        OrderState.RETURNED,
    } == TERMINAL_STATES
    assert (
        TERMINAL_STATES
        | {
            OrderState.CONFIRMED,
            OrderState.PARTIALLY_SHIPPED,
            OrderState.SHIPPED,
        }
        == SETTLED_STATES
    )
    assert OrderState.CONFIRMED.is_settled and not OrderState.CONFIRMED.is_terminal
    assert not OrderState.AWAITING_PAYMENT.is_settled
    assert OrderState.CANCELLED.is_terminal


# --- submit --------------------------------------------------------------------------------


def test_submit_starts_reserving() -> None:
    decision = submit(None, order(), "evt-submit", T0)
    saga = decision.saga
    assert (saga.order_id, saga.state, saga.version, saga.currency) == (
        "ord-1",
        OrderState.RESERVING,
        1,
        "EUR",
    )
    assert saga.reserve_attempts == 1
    assert decision.changed
    entry = decision.timeline
    assert (entry.from_state, entry.to_state) == (OrderState.RECEIVED, OrderState.RESERVING)
    assert (entry.cause_type, entry.cause_id, entry.at) == ("OrderSubmitted", "evt-submit", T0)
    assert the_event(decision, AnnounceAccepted) == AnnounceAccepted(
        "ord-1",
        "EUR",
        PaymentStatus.AUTHORIZED,
        BackorderPolicy.PER_SKU,  # not given: each SKU's catalog flag decides
        (
            SagaLine("L1", "SKU-A", 3, Decimal("10.00")),
            SagaLine("L2", "SKU-B", 1, Decimal("4.50")),
        ),
    )
    assert non_events(decision) == [
        RequestReservation(
            "ord-1",
            (ReservationLine("L1", "SKU-A", 3), ReservationLine("L2", "SKU-B", 1)),
            BackorderPolicy.PER_SKU,
            attempt=1,
        ),
        SetTimer(TimerKind.STOCK_REPLY, T0 + REPLY_TIMEOUT, attempt=1),
    ]


def test_submit_with_pending_payment_also_arms_the_deadline() -> None:
    decision = submit(None, order(payment=PENDING), "evt-submit", T0)
    assert decision.saga.payment is PaymentStatus.PENDING
    assert SetTimer(TimerKind.PAYMENT_DEADLINE, DEADLINE) in decision.effects
    assert any(isinstance(e, RequestReservation) for e in decision.effects)


def test_submit_passes_the_backorder_policy_to_stock() -> None:
    decision = submit(None, order(backorder_policy="reject"), "evt-submit", T0)
    (reserve,) = [e for e in decision.effects if isinstance(e, RequestReservation)]
    assert reserve.backorder_policy is BackorderPolicy.REJECT


def test_submit_of_an_invalid_order_rejects_it_with_the_fields_at_fault() -> None:
    decision = reject_invalid(None, invalid(lines=[], currency="XYZ"), T0)
    assert decision.saga.state is OrderState.REJECTED
    assert decision.saga.reason == INVALID_ORDER
    assert decision.timeline.to_state is OrderState.REJECTED
    assert "lines" in decision.timeline.note
    rejected = the_event(decision, AnnounceRejected)
    assert rejected.reason == INVALID_ORDER
    assert rejected.shortfalls == ()
    assert [v.field for v in rejected.violations] == ["currency", "lines"]
    assert non_events(decision) == []


def test_resubmitting_the_same_payload_is_a_duplicate() -> None:
    saga = started()
    reordered = CheckoutOrderSubmitted.model_validate(dict(reversed(list(order_payload().items()))))
    decision = submit(saga, reordered, "evt-again", LATER)
    assert_unchanged(saga, decision, Outcome.IGNORED)
    assert decision.effects == ()


def test_resubmitting_the_same_invalid_payload_is_a_duplicate() -> None:
    saga = reject_invalid(None, invalid(lines=[]), T0).saga
    assert_unchanged(saga, reject_invalid(saga, invalid(lines=[]), LATER), Outcome.IGNORED)


def test_an_invalid_payload_under_a_known_order_id_is_refused() -> None:
    saga = started()
    decision = reject_invalid(saga, invalid(lines=[]), LATER)
    assert_unchanged(saga, decision, Outcome.REFUSED)
    assert decision.effects == ()


def test_a_different_payload_under_the_same_id_is_refused() -> None:
    saga = confirmed()
    decision = submit(saga, order(currency="USD"), "evt-other", LATER)
    assert_unchanged(saga, decision, Outcome.REFUSED)
    assert decision.effects == ()
    assert "different payload" in decision.timeline.note


# --- RESERVING + StockHeld -------------------------------------------------------------


def test_all_lines_reserved_confirms() -> None:
    saga = started()
    decision = decide(saga, ALL_HELD, LATER)
    assert decision.saga.state is OrderState.CONFIRMED
    assert decision.saga.version == saga.version + 1
    assert decision.timeline.cause_id == "evt-reserved"
    assert decision.timeline.cause_type == "StockReserved"
    announced = the_event(decision, AnnounceConfirmed)
    assert (announced.order_id, announced.currency) == ("ord-1", "EUR")
    assert announced.lines[0] == SagaLine(
        "L1", "SKU-A", 3, Decimal("10.00"), allocations=(HeldAtLocation("WH1", 3),)
    )
    assert (announced.lines[0].reserved, announced.lines[0].backordered) == (3, 0)
    assert announced.lines == decision.saga.lines
    assert non_events(decision) == [CancelTimer(TimerKind.STOCK_REPLY)]
    assert decision.saga.stock_reply_due_at is None


def test_a_short_line_with_backorders_allowed_confirms_partly_backordered() -> None:
    decision = decide(started(), L1_SHORT, LATER)
    assert decision.saga.state is OrderState.CONFIRMED
    line = decision.saga.line("L1")
    assert line is not None and (line.reserved, line.backordered) == (1, 2)
    confirmed_lines = the_event(decision, AnnounceConfirmed).lines
    assert [(x.reserved, x.backordered) for x in confirmed_lines] == [(1, 2), (1, 0)]
    assert "2 units backordered" in decision.timeline.note


def test_untracked_goods_count_as_held() -> None:
    reply = StockHeld("evt-r", (LineReservation("L1", untracked=True), held("L2", 1)))
    decision = decide(started(), reply, LATER)
    assert decision.saga.state is OrderState.CONFIRMED
    first = the_event(decision, AnnounceConfirmed).lines[0]
    assert (first.reserved, first.untracked, first.allocations) == (3, True, ())


def test_an_order_of_untracked_goods_only_is_delivered_on_confirmation() -> None:
    reply = StockHeld(
        "evt-r", (LineReservation("L1", untracked=True), LineReservation("L2", untracked=True))
    )
    decision = decide(started(), reply, LATER)
    assert decision.saga.state is OrderState.DELIVERED
    assert the_event(decision, AnnounceDelivered) == AnnounceDelivered("ord-1", shipment_ids=())


def test_untracked_lines_never_hold_up_shipped() -> None:
    reply = StockHeld("evt-r", (LineReservation("L1", untracked=True), held("L2", 1)))
    confirmed = decide(started(), reply, LATER).saga
    shipped = decide(confirmed, Shipped("evt-s", "S1", (LineQuantity("L2", 1),)), LATER)
    assert shipped.saga.state is OrderState.SHIPPED


def test_reserved_with_payment_pending_waits_for_payment() -> None:
    decision = decide(started(payment=PENDING), ALL_HELD, LATER)
    assert decision.saga.state is OrderState.AWAITING_PAYMENT
    assert events(decision) == []
    assert decision.effects == (CancelTimer(TimerKind.STOCK_REPLY),)


def test_payment_remembered_while_reserving_confirms_when_stock_answers() -> None:
    paid = run(started(payment=PENDING), PaymentConfirmed("evt-pay"))
    decision = decide(paid, ALL_HELD, LATER)
    assert decision.saga.state is OrderState.CONFIRMED
    assert AnnounceConfirmed in [type(e) for e in events(decision)]


@pytest.mark.parametrize(
    ("reply", "why"),
    [
        (StockHeld("e", (held("L1", 3),)), "lines answered"),
        (StockHeld("e", (held("L1", 3), held("L2", 1), held("L3", 1))), "lines answered"),
        (StockHeld("e", (held("L1", 3), held("L1", 3), held("L2", 1))), "lines answered"),
        (StockHeld("e", (held("L1", 2), held("L2", 1))), "line L1: held plus"),
        (
            StockHeld(
                "e",
                (
                    LineReservation("L1", (HeldAtLocation("WH1", 1),), untracked=True),
                    held("L2", 1),
                ),
            ),
            "untracked",
        ),
    ],
)
def test_a_stock_reply_that_does_not_match_the_order_is_refused(reply: StockHeld, why: str) -> None:
    saga = started()
    decision = decide(saga, reply, LATER)
    assert_unchanged(saga, decision, Outcome.REFUSED)
    assert why in decision.timeline.note
    assert decision.effects == ()


def test_backorders_for_an_order_that_refuses_them_are_refused() -> None:
    saga = started(backorder_policy="reject")
    decision = decide(saga, L1_SHORT, LATER)
    assert_unchanged(saga, decision, Outcome.REFUSED)
    assert "refuses backorders" in decision.timeline.note


@pytest.mark.parametrize(
    "state", [OrderState.AWAITING_PAYMENT, OrderState.CONFIRMED, OrderState.SHIPPED]
)
def test_a_duplicate_stock_reply_is_a_no_op(state: OrderState) -> None:
    saga = SAGA_IN_STATE[state]()
    decision = decide(saga, ALL_HELD, LATER)
    assert_unchanged(saga, decision, Outcome.IGNORED)
    assert decision.effects == ()


@pytest.mark.parametrize(
    ("state", "reason"),
    [(OrderState.CANCELLED, "customer_request"), (OrderState.REJECTED, "insufficient_stock")],
)
def test_stock_reserved_after_the_order_ended_is_released(state: OrderState, reason: str) -> None:
    saga = SAGA_IN_STATE[state]()
    decision = decide(saga, ALL_HELD, LATER)
    assert_unchanged(saga, decision, Outcome.IGNORED)
    assert decision.effects == (RequestRelease("ord-1", reason),)


# --- RESERVING + StockRefused -------------------------------------------------------


def test_stock_rejection_rejects_the_order_with_reason_and_lines() -> None:
    saga = started(payment=PENDING)
    rejection = StockRefused(
        "evt-rej", "insufficient_stock", (Shortfall("SKU-A", requested=3, available=1),)
    )
    decision = decide(saga, rejection, LATER)
    assert decision.saga.state is OrderState.REJECTED
    assert decision.saga.reason == "insufficient_stock"
    assert the_event(decision, AnnounceRejected) == AnnounceRejected(
        "ord-1", "insufficient_stock", shortfalls=(Shortfall("SKU-A", requested=3, available=1),)
    )
    # Stock held nothing, so there is nothing to release.
    assert set(non_events(decision)) == {
        CancelTimer(TimerKind.STOCK_REPLY),
        CancelTimer(TimerKind.PAYMENT_DEADLINE),
    }


@pytest.mark.parametrize("state", [OrderState.CONFIRMED, OrderState.CANCELLED])
def test_a_late_stock_rejection_is_ignored(state: OrderState) -> None:
    saga = SAGA_IN_STATE[state]()
    decision = decide(saga, StockRefused("evt-rej", "unknown_sku"), LATER)
    assert_unchanged(saga, decision, Outcome.IGNORED)
    assert decision.effects == ()


# --- CancelRequested -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "build",
    [started, lambda: started(payment=PENDING), awaiting_payment, confirmed],
    ids=["reserving", "reserving-pending", "awaiting-payment", "confirmed"],
)
def test_cancel_before_shipping_releases_and_cancels(build: Any) -> None:
    saga = build()
    decision = decide(saga, CancelRequested("evt-cancel", "changed_mind"), LATER)
    assert decision.saga.state is OrderState.CANCELLED
    assert decision.saga.reason == "changed_mind"
    assert RequestRelease("ord-1", "changed_mind") in decision.effects
    assert the_event(decision, AnnounceCancelled) == AnnounceCancelled("ord-1", "changed_mind")
    assert not any(isinstance(e, SetTimer) for e in decision.effects)


def test_cancel_while_reserving_disarms_every_timer() -> None:
    decision = decide(started(payment=PENDING), CancelRequested("evt-cancel", "x"), LATER)
    assert {e for e in decision.effects if isinstance(e, CancelTimer)} == {
        CancelTimer(TimerKind.STOCK_REPLY),
        CancelTimer(TimerKind.PAYMENT_DEADLINE),
    }


@pytest.mark.parametrize(
    "state",
    [OrderState.PARTIALLY_SHIPPED, OrderState.SHIPPED, OrderState.DELIVERED, OrderState.RETURNED],
)
def test_cancel_after_a_shipment_is_refused(state: OrderState) -> None:
    saga = SAGA_IN_STATE[state]()
    decision = decide(saga, CancelRequested("evt-cancel", "changed_mind"), LATER)
    assert_unchanged(saga, decision, Outcome.REFUSED)
    assert decision.effects == (
        AnnounceCancelRefused("ord-1", ALREADY_SHIPPED, requested_reason="changed_mind"),
    )


@pytest.mark.parametrize("state", [OrderState.CANCELLED, OrderState.REJECTED])
def test_cancel_of_an_ended_order_is_a_no_op(state: OrderState) -> None:
    saga = SAGA_IN_STATE[state]()
    decision = decide(saga, CancelRequested("evt-cancel-2", "again"), LATER)
    assert_unchanged(saga, decision, Outcome.IGNORED)
    assert decision.effects == ()


# --- payment -------------------------------------------------------------------------------


def test_payment_while_reserving_is_remembered() -> None:
    saga = started(payment=PENDING)
    decision = decide(saga, PaymentConfirmed("evt-pay"), LATER)
    assert decision.saga.state is OrderState.RESERVING
    assert decision.saga.payment is PaymentStatus.AUTHORIZED
    assert decision.changed and decision.saga.version == saga.version + 1
    assert decision.effects == (CancelTimer(TimerKind.PAYMENT_DEADLINE),)


def test_payment_while_awaiting_payment_confirms() -> None:
    decision = decide(awaiting_payment(), PaymentConfirmed("evt-pay"), LATER)
    assert decision.saga.state is OrderState.CONFIRMED
    assert decision.timeline.from_state is OrderState.AWAITING_PAYMENT
    assert [type(e) for e in events(decision)] == [AnnounceConfirmed]
    assert non_events(decision) == [CancelTimer(TimerKind.PAYMENT_DEADLINE)]


def test_payment_deadline_while_awaiting_payment_cancels_and_releases() -> None:
    decision = decide(awaiting_payment(), PaymentDeadlinePassed("timer-pay"), DEADLINE)
    assert decision.saga.state is OrderState.CANCELLED
    assert decision.saga.reason == PAYMENT_TIMEOUT
    assert decision.timeline.cause_id == "timer-pay"
    assert decision.effects == (
        RequestRelease("ord-1", PAYMENT_TIMEOUT),
        AnnounceCancelled("ord-1", PAYMENT_TIMEOUT),
        CancelTimer(TimerKind.PAYMENT_DEADLINE),
    )


def test_payment_deadline_while_reserving_cancels_and_releases() -> None:
    decision = decide(started(payment=PENDING), PaymentDeadlinePassed("timer-pay"), DEADLINE)
    assert decision.saga.state is OrderState.CANCELLED
    assert RequestRelease("ord-1", PAYMENT_TIMEOUT) in decision.effects
    assert CancelTimer(TimerKind.STOCK_REPLY) in decision.effects


def test_a_late_payment_never_revives_a_timed_out_order() -> None:
    timed_out = run(awaiting_payment(), PaymentDeadlinePassed("timer-pay"))
    decision = decide(timed_out, PaymentConfirmed("evt-late-pay"), DEADLINE + timedelta(minutes=1))
    assert_unchanged(timed_out, decision, Outcome.IGNORED)
    assert decision.saga.state is OrderState.CANCELLED
    assert "payment_timeout" in decision.timeline.note
    assert decision.effects == ()


@pytest.mark.parametrize("state", [OrderState.CONFIRMED, OrderState.SHIPPED])
def test_a_duplicate_payment_is_a_no_op(state: OrderState) -> None:
    saga = SAGA_IN_STATE[state]()
    assert_unchanged(saga, decide(saga, PaymentConfirmed("evt-pay"), LATER), Outcome.IGNORED)


@pytest.mark.parametrize(
    "build",
    [started, confirmed, lambda: run(started(payment=PENDING), PaymentConfirmed("p"))],
    ids=["reserving-authorized", "confirmed", "reserving-paid"],
)
def test_a_stale_payment_deadline_is_a_no_op(build: Any) -> None:
    saga = build()
    decision = decide(saga, PaymentDeadlinePassed("timer-pay"), DEADLINE)
    assert_unchanged(saga, decision, Outcome.IGNORED)
    assert decision.effects == ()


# --- stock reply timeout -------------------------------------------------------------------


def test_no_stock_reply_re_sends_the_command_and_re_arms_the_timer() -> None:
    saga = started()
    now = T0 + REPLY_TIMEOUT
    decision = decide(saga, StockReplyTimedOut("timer-1", attempt=1), now)
    assert decision.saga.state is OrderState.RESERVING
    assert decision.saga.reserve_attempts == 2
    (reserve,) = [e for e in decision.effects if isinstance(e, RequestReservation)]
    assert reserve.attempt == 2
    assert reserve.lines == (ReservationLine("L1", "SKU-A", 3), ReservationLine("L2", "SKU-B", 1))
    assert SetTimer(TimerKind.STOCK_REPLY, now + REPLY_TIMEOUT, attempt=2) in decision.effects
    assert events(decision) == []


def test_after_the_last_attempt_the_order_is_stuck_and_stays_reserving() -> None:
    saga = run(
        started(),
        StockReplyTimedOut("timer-1", attempt=1),
        StockReplyTimedOut("timer-2", attempt=2),
    )
    decision = decide(saga, StockReplyTimedOut("timer-3", attempt=3), LATER)
    assert decision.saga.state is OrderState.RESERVING
    assert decision.saga.stuck
    assert the_event(decision, AnnounceStuck) == AnnounceStuck(
        "ord-1", OrderState.RESERVING, attempts=3, reason=NO_STOCK_REPLY
    )
    assert not any(isinstance(e, RequestReservation | SetTimer) for e in decision.effects)


def test_a_stuck_order_recovers_when_stock_finally_answers() -> None:
    stuck = run(started(), *(StockReplyTimedOut(f"t{n}", attempt=n) for n in (1, 2, 3)))
    assert stuck.stuck
    assert decide(stuck, ALL_HELD, LATER).saga.state is OrderState.CONFIRMED


def test_the_attempt_limit_is_a_policy() -> None:
    decision = decide(
        started(), StockReplyTimedOut("t1", attempt=1), LATER, SagaPolicy(max_reserve_attempts=1)
    )
    assert decision.saga.stuck
    assert [type(e) for e in events(decision)] == [AnnounceStuck]


@pytest.mark.parametrize(
    ("build", "attempt"),
    [
        (started, 2),
        (lambda: run(started(), StockReplyTimedOut("t1", attempt=1)), 1),
        (confirmed, 1),
        (lambda: run(started(), *(StockReplyTimedOut(f"t{n}", n) for n in (1, 2, 3))), 3),
    ],
    ids=["future-attempt", "superseded-attempt", "after-reply", "already-stuck"],
)
def test_a_stale_stock_reply_timer_is_a_no_op(build: Any, attempt: int) -> None:
    saga = build()
    decision = decide(saga, StockReplyTimedOut("timer", attempt=attempt), LATER)
    assert_unchanged(saga, decision, Outcome.IGNORED)
    assert decision.effects == ()


# --- backorders ----------------------------------------------------------------------------


def test_backorder_allocation_reduces_the_outstanding_quantity_and_tells_fulfillment() -> None:
    saga = run(started(), L1_SHORT)
    decision = decide(saga, BackorderFilled("evt-bo", "L1", "WH2", 2), LATER)
    line = decision.saga.line("L1")
    assert line is not None
    assert (line.backordered, line.reserved) == (0, 3)
    assert line.allocations == (HeldAtLocation("WH1", 1), HeldAtLocation("WH2", 2))
    assert decision.saga.state is OrderState.CONFIRMED
    assert decision.changed
    assert the_event(decision, AnnounceBackorderFilled) == AnnounceBackorderFilled(
        "ord-1", "L1", "SKU-A", location="WH2", quantity=2, backordered=0
    )


def test_backorder_allocations_at_one_location_add_up() -> None:
    saga = run(started(), L1_SHORT, BackorderFilled("evt-bo", "L1", "WH1", 1))
    line = saga.line("L1")
    assert line is not None
    assert (line.allocations, line.backordered) == ((HeldAtLocation("WH1", 2),), 1)


def test_backorder_allocated_while_awaiting_payment_is_carried_by_the_confirmation() -> None:
    waiting = run(started(payment=PENDING), L1_SHORT)
    decision = decide(waiting, BackorderFilled("evt-bo", "L1", "WH1", 2), LATER)
    assert decision.saga.state is OrderState.AWAITING_PAYMENT
    assert decision.changed and decision.effects == ()
    confirmation = decide(decision.saga, PaymentConfirmed("evt-pay"), LATER)
    first = the_event(confirmation, AnnounceConfirmed).lines[0]
    assert (first.reserved, first.backordered) == (3, 0)


def test_backorder_allocated_while_partially_shipped() -> None:
    saga = run(started(), L1_SHORT, Shipped("evt-s1", "S1", (LineQuantity("L1", 1),)))
    decision = decide(saga, BackorderFilled("evt-bo", "L1", "WH1", 2), LATER)
    assert decision.saga.state is OrderState.PARTIALLY_SHIPPED
    assert [type(e) for e in events(decision)] == [AnnounceBackorderFilled]


@pytest.mark.parametrize(
    ("allocation", "why"),
    [
        (BackorderFilled("e", "L1", "WH1", 3), "exceeds the 2 backordered"),
        (BackorderFilled("e", "L1", "WH1", 0), "exceeds"),
        (BackorderFilled("e", "L2", "WH1", 1), "exceeds the 0 backordered"),
        (BackorderFilled("e", "L9", "WH1", 1), "unknown line"),
    ],
)
def test_a_backorder_allocation_that_does_not_fit_is_refused(
    allocation: BackorderFilled, why: str
) -> None:
    saga = run(started(), L1_SHORT)
    decision = decide(saga, allocation, LATER)
    assert_unchanged(saga, decision, Outcome.REFUSED)
    assert why in decision.timeline.note


@pytest.mark.parametrize("state", [OrderState.RESERVING, OrderState.CANCELLED])
def test_a_backorder_allocation_outside_the_backorder_window_is_refused(
    state: OrderState,
) -> None:
    saga = SAGA_IN_STATE[state]()
    decision = decide(saga, BackorderFilled("e", "L1", "WH1", 1), LATER)
    assert_unchanged(saga, decision, Outcome.REFUSED)
    assert decision.effects == ()


# --- shipments -----------------------------------------------------------------------------


def test_a_partial_shipment_moves_to_partially_shipped() -> None:
    decision = decide(confirmed(), Shipped("evt-s1", "S1", (LineQuantity("L1", 2),)), LATER)
    assert decision.saga.state is OrderState.PARTIALLY_SHIPPED
    line = decision.saga.line("L1")
    assert line is not None and line.shipped == 2
    assert the_event(decision, AnnounceShipped) == AnnounceShipped(
        "ord-1", "S1", (ShippedUnits("L1", "SKU-A", 2),), fully_shipped=False
    )


def test_shipping_the_rest_moves_to_shipped() -> None:
    rest = Shipped("evt-s2", "S2", (LineQuantity("L1", 2), LineQuantity("L2", 1)))
    decision = decide(partially_shipped(), rest, LATER)
    assert decision.saga.state is OrderState.SHIPPED
    assert the_event(decision, AnnounceShipped).fully_shipped is True
    assert [s.shipment_id for s in decision.saga.shipments] == ["S1", "S2"]


def test_one_complete_shipment_moves_straight_to_shipped() -> None:
    everything = Shipped("evt-s1", "S1", (LineQuantity("L1", 3), LineQuantity("L2", 1)))
    assert decide(confirmed(), everything, LATER).saga.state is OrderState.SHIPPED


def test_quantities_of_one_line_in_one_shipment_add_up() -> None:
    split = Shipped("e", "S1", (LineQuantity("L1", 1), LineQuantity("L1", 2)))
    line = decide(confirmed(), split, LATER).saga.line("L1")
    assert line is not None and line.shipped == 3


def test_backordered_units_may_ship_before_the_order_hears_of_their_allocation() -> None:
    saga = run(started(), L1_SHORT)
    everything = Shipped("evt-s1", "S1", (LineQuantity("L1", 3), LineQuantity("L2", 1)))
    assert decide(saga, everything, LATER).saga.state is OrderState.SHIPPED


@pytest.mark.parametrize("state", [OrderState.PARTIALLY_SHIPPED, OrderState.SHIPPED])
def test_a_duplicate_shipment_is_a_no_op(state: OrderState) -> None:
    saga = SAGA_IN_STATE[state]()
    decision = decide(saga, Shipped("evt-s1-again", "S1", (LineQuantity("L1", 1),)), LATER)
    assert_unchanged(saga, decision, Outcome.IGNORED)
    assert decision.effects == ()


@pytest.mark.parametrize(
    ("lines", "why"),
    [
        ((LineQuantity("L1", 4),), "exceed the 3 remaining"),
        ((LineQuantity("L9", 1),), "unknown line L9"),
        ((LineQuantity("L1", 0),), "must be positive"),
        ((), "no lines"),
    ],
)
def test_a_shipment_that_does_not_fit_is_refused(lines: tuple[LineQuantity, ...], why: str) -> None:
    saga = confirmed()
    decision = decide(saga, Shipped("evt-s1", "S1", lines), LATER)
    assert_unchanged(saga, decision, Outcome.REFUSED)
    assert why in decision.timeline.note


@pytest.mark.parametrize(
    "state",
    [
        OrderState.RESERVING,
        OrderState.AWAITING_PAYMENT,
        OrderState.CANCELLED,
        OrderState.REJECTED,
        OrderState.SHIPPED,
    ],
)
def test_a_shipment_outside_the_shipping_window_is_refused(state: OrderState) -> None:
    saga = SAGA_IN_STATE[state]()
    decision = decide(saga, Shipped("evt-s9", "S9", (LineQuantity("L1", 1),)), LATER)
    assert_unchanged(saga, decision, Outcome.REFUSED)


# --- deliveries ----------------------------------------------------------------------------


def test_delivery_of_every_shipment_moves_to_delivered() -> None:
    decision = decide(shipped(), Delivered("evt-d1", "S1"), LATER)
    assert decision.saga.state is OrderState.DELIVERED
    assert the_event(decision, AnnounceDelivered) == AnnounceDelivered("ord-1", ("S1",))


def test_delivery_of_one_of_two_shipments_waits_for_the_other() -> None:
    saga = run(
        partially_shipped(), Shipped("e2", "S2", (LineQuantity("L1", 2), LineQuantity("L2", 1)))
    )
    first = decide(saga, Delivered("evt-d1", "S1"), LATER)
    assert first.saga.state is OrderState.SHIPPED
    assert first.changed and first.effects == ()
    second = decide(first.saga, Delivered("evt-d2", "S2"), LATER)
    assert second.saga.state is OrderState.DELIVERED


def test_delivery_while_partially_shipped_is_recorded() -> None:
    decision = decide(partially_shipped(), Delivered("evt-d1", "S1"), LATER)
    assert decision.saga.state is OrderState.PARTIALLY_SHIPPED
    shipment = decision.saga.shipment("S1")
    assert shipment is not None and shipment.delivered
    assert decision.effects == ()


def test_a_duplicate_delivery_is_a_no_op() -> None:
    saga = delivered()
    assert_unchanged(saga, decide(saga, Delivered("evt-d1b", "S1"), LATER), Outcome.IGNORED)


@pytest.mark.parametrize("state", [OrderState.CONFIRMED, OrderState.SHIPPED])
def test_delivery_of_an_unknown_shipment_is_refused(state: OrderState) -> None:
    saga = SAGA_IN_STATE[state]()
    assert_unchanged(saga, decide(saga, Delivered("evt-d9", "S9"), LATER), Outcome.REFUSED)


# --- returns -------------------------------------------------------------------------------


def test_returning_everything_moves_to_returned() -> None:
    everything = Returned("evt-r1", "R1", (LineQuantity("L1", 3), LineQuantity("L2", 1)))
    decision = decide(delivered(), everything, LATER)
    assert decision.saga.state is OrderState.RETURNED
    assert the_event(decision, AnnounceReturned) == AnnounceReturned(
        "ord-1", "R1", fully_returned=True
    )
    assert [(line.line_id, line.returned) for line in decision.saga.lines] == [("L1", 3), ("L2", 1)]


def test_a_partial_return_is_recorded_and_the_rest_may_follow() -> None:
    first = decide(delivered(), Returned("evt-r1", "R1", (LineQuantity("L2", 1),)), LATER)
    assert first.saga.state is OrderState.DELIVERED
    assert first.changed
    assert the_event(first, AnnounceReturned).fully_returned is False
    second = decide(first.saga, Returned("evt-r2", "R2", (LineQuantity("L1", 3),)), LATER)
    assert second.saga.state is OrderState.RETURNED


def test_returning_all_that_shipped_so_far_of_a_partial_shipment_is_not_a_full_return() -> None:
    decision = decide(partially_shipped(), Returned("e", "R1", (LineQuantity("L1", 1),)), LATER)
    assert decision.saga.state is OrderState.PARTIALLY_SHIPPED
    assert the_event(decision, AnnounceReturned).fully_returned is False


def test_a_duplicate_return_is_a_no_op() -> None:
    saga = returned()
    decision = decide(saga, Returned("evt-r1b", "R1", (LineQuantity("L1", 3),)), LATER)
    assert_unchanged(saga, decision, Outcome.IGNORED)


def test_returning_more_than_shipped_is_refused() -> None:
    saga = partially_shipped()
    decision = decide(saga, Returned("e", "R1", (LineQuantity("L1", 2),)), LATER)
    assert_unchanged(saga, decision, Outcome.REFUSED)
    assert "exceed the 1 remaining" in decision.timeline.note


@pytest.mark.parametrize("state", [OrderState.CONFIRMED, OrderState.RETURNED])
def test_a_return_outside_the_return_window_is_refused(state: OrderState) -> None:
    saga = SAGA_IN_STATE[state]()
    decision = decide(saga, Returned("e", "R9", (LineQuantity("L1", 1),)), LATER)
    assert_unchanged(saga, decision, Outcome.REFUSED)


# --- warehouse exceptions ------------------------------------------------------------------

S1_PLANNED = ShipmentPlanned("evt-c1", "S1", "WH1", (LineQuantity("L1", 3), LineQuantity("L2", 1)))
SHORT_ONE = ShipmentShortened("evt-short", "S1", "WH1", (LineQuantity("L1", 1),))
WHAT_WAS_PICKED = Shipped("evt-s1", "S1", (LineQuantity("L1", 2), LineQuantity("L2", 1)))


def test_a_created_shipment_is_remembered_with_its_location_and_units() -> None:
    decision = decide(confirmed(), S1_PLANNED, LATER)
    assert decision.changed and decision.saga.state is OrderState.CONFIRMED
    assert decision.saga.planned == (
        PlannedShipment("S1", "WH1", (LineQuantity("L1", 3), LineQuantity("L2", 1))),
    )
    assert decision.effects == ()


def test_a_short_pick_cancels_the_missing_units_releases_them_and_tells_the_customer() -> None:
    decision = decide(run(confirmed(), S1_PLANNED), SHORT_ONE, LATER)
    line = decision.saga.line("L1")
    assert line is not None and (line.cancelled, line.outstanding) == (1, 2)
    assert line.allocations == (HeldAtLocation("WH1", 2),)
    assert decision.saga.state is OrderState.CONFIRMED
    assert the_event(decision, RequestRelease) == RequestRelease(
        "ord-1", "short_pick", (ReleaseUnits("L1", "SKU-A", "WH1", 1, not_found=True),)
    )
    assert the_event(decision, AnnounceLineCancelled) == AnnounceLineCancelled(
        "ord-1", "L1", "SKU-A", 1, "short_pick", remaining=2
    )
    assert decision.saga.planned[0].lines == (LineQuantity("L1", 2), LineQuantity("L2", 1))


def test_after_a_short_pick_shipping_what_was_picked_ships_the_order_and_delivery_ends_it() -> None:
    saga = run(confirmed(), S1_PLANNED, SHORT_ONE)
    shipping = decide(saga, WHAT_WAS_PICKED, LATER)
    assert shipping.saga.state is OrderState.SHIPPED
    assert the_event(shipping, AnnounceShipped).fully_shipped is True
    assert shipping.saga.planned == ()
    arrived = decide(shipping.saga, Delivered("evt-d1", "S1"), LATER)
    assert arrived.saga.state is OrderState.DELIVERED


def test_a_short_pick_of_the_last_units_of_a_partially_shipped_order_ends_it() -> None:
    saga = run(
        confirmed(),
        ShipmentPlanned("c1", "S1", "WH1", (LineQuantity("L1", 1),)),
        ShipmentPlanned("c2", "S2", "WH1", (LineQuantity("L1", 2), LineQuantity("L2", 1))),
        Shipped("s1", "S1", (LineQuantity("L1", 1),)),
        Delivered("d1", "S1"),
        ShipmentShortened("sh2", "S2", "WH1", (LineQuantity("L1", 2),)),
        Shipped("s2", "S2", (LineQuantity("L2", 1),)),
    )
    assert saga.state is OrderState.SHIPPED
    assert run(saga, Delivered("d2", "S2")).state is OrderState.DELIVERED


def test_a_short_pick_that_leaves_nothing_shipped_and_all_delivered_ends_delivered() -> None:
    saga = run(
        confirmed(),
        ShipmentPlanned("c1", "S1", "WH1", (LineQuantity("L1", 3),)),
        ShipmentPlanned("c2", "S2", "WH2", (LineQuantity("L2", 1),)),
        Shipped("s2", "S2", (LineQuantity("L2", 1),)),
        Delivered("d2", "S2"),
    )
    decision = decide(saga, ShipmentCancelled("x1", "S1", "bin flooded"), LATER)
    assert decision.saga.state is OrderState.DELIVERED
    assert the_event(decision, AnnounceDelivered) == AnnounceDelivered("ord-1", ("S2",))


def test_a_warehouse_cancel_of_every_shipment_cancels_the_order_and_releases_the_units() -> None:
    decision = decide(
        run(confirmed(), S1_PLANNED), ShipmentCancelled("x1", "S1", "bin flooded"), LATER
    )
    assert decision.saga.state is OrderState.CANCELLED
    assert the_event(decision, RequestRelease) == RequestRelease(
        "ord-1",
        "warehouse_cancelled",
        (
            ReleaseUnits("L1", "SKU-A", "WH1", 3, not_found=False),
            ReleaseUnits("L2", "SKU-B", "WH1", 1, not_found=False),
        ),
    )
    assert [type(e) for e in events(decision)] == [
        AnnounceLineCancelled,
        AnnounceLineCancelled,
        AnnounceCancelled,
    ]


def test_a_shipment_cancelled_by_the_orders_own_cancel_changes_nothing() -> None:
    saga = run(confirmed(), S1_PLANNED, CancelRequested("c", "customer"))
    decision = decide(saga, ShipmentCancelled("x1", "S1", "order cancelled: customer"), LATER)
    assert_unchanged(saga, decision, Outcome.IGNORED)
    assert decision.effects == ()


@pytest.mark.parametrize(
    "again",
    [
        ShipmentShortened("evt-short-2", "S1", "WH1", (LineQuantity("L1", 1),)),
        ShipmentPlanned("evt-c1-2", "S1", "WH1", (LineQuantity("L1", 3),)),
    ],
)
def test_a_repeated_warehouse_report_under_a_new_event_id_changes_nothing(
    again: SagaInput,
) -> None:
    saga = run(confirmed(), S1_PLANNED, SHORT_ONE)
    decision = decide(saga, again, LATER)
    assert_unchanged(saga, decision, Outcome.IGNORED)
    assert decision.effects == ()


def test_a_short_pick_of_more_than_is_left_to_ship_is_refused() -> None:
    saga = run(confirmed(), S1_PLANNED)
    too_many = ShipmentShortened("e", "S1", "WH1", (LineQuantity("L1", 4),))
    decision = decide(saga, too_many, LATER)
    assert_unchanged(saga, decision, Outcome.REFUSED)


def test_units_not_held_at_the_location_are_cancelled_without_a_release() -> None:
    saga = run(
        started(),
        L1_SHORT,
        ShipmentPlanned("c1", "S1", "WH1", (LineQuantity("L1", 3),)),
    )
    decision = decide(saga, ShipmentShortened("e", "S1", "WH1", (LineQuantity("L1", 2),)), LATER)
    assert the_event(decision, RequestRelease).lines == (
        ReleaseUnits("L1", "SKU-A", "WH1", 1, not_found=True),
    )
    assert the_event(decision, AnnounceLineCancelled).quantity == 2


def test_the_order_keeps_the_merchant_default_or_its_own_exception_policy() -> None:
    assert started().exception_policy is DEFAULT_POLICY.exception_policy
    chosen = started(fulfillment_exception_policy="reallocate")
    assert chosen.exception_policy.value == "reallocate"
    merchant = SagaPolicy(exception_policy=FulfillmentExceptionPolicy.REALLOCATE)
    assert submit(None, order(), "e", T0, merchant).saga.exception_policy.value == "reallocate"


def test_an_order_with_cancelled_units_is_fully_returned_once_all_that_shipped_came_back() -> None:
    saga = run(
        confirmed(),
        S1_PLANNED,
        SHORT_ONE,
        WHAT_WAS_PICKED,
        Delivered("d1", "S1"),
        Returned("r1", "R1", (LineQuantity("L1", 2), LineQuantity("L2", 1))),
    )
    assert saga.state is OrderState.RETURNED


def test_a_saga_with_planned_shipments_and_exceptions_round_trips() -> None:
    saga = run(confirmed(), S1_PLANNED, SHORT_ONE)
    assert OrderSaga.from_dict(json.loads(json.dumps(saga.to_dict()))) == saga


def test_a_saga_stored_before_warehouse_exceptions_existed_still_loads() -> None:
    data = confirmed().to_dict()
    for key in ("exception_policy", "planned", "handled"):
        del data[key]
    for line in data["lines"]:
        del line["cancelled"]
    assert OrderSaga.from_dict(data) == confirmed()


def reallocating(**overrides: Any) -> OrderSaga:
    return run(confirmed(fulfillment_exception_policy="reallocate", **overrides), S1_PLANNED)


def test_reallocate_puts_units_not_found_back_on_the_lines_backorder() -> None:
    decision = decide(reallocating(), SHORT_ONE, LATER)
    assert the_event(decision, RequestRelease) == RequestRelease(
        "ord-1",
        "short_pick",
        (ReleaseUnits("L1", "SKU-A", "WH1", 1, not_found=True, backorder=True),),
    )
    line = decision.saga.line("L1")
    assert line is not None
    assert (line.backordered, line.cancelled, line.allocations) == (
        1,
        0,
        (HeldAtLocation("WH1", 2),),
    )
    assert events(decision) == [] and decision.saga.state is OrderState.CONFIRMED


def test_reallocated_units_ship_later_as_a_new_shipment_and_the_order_ends_delivered() -> None:
    saga = run(reallocating(), SHORT_ONE, WHAT_WAS_PICKED, Delivered("d1", "S1"))
    assert saga.state is OrderState.PARTIALLY_SHIPPED
    filled = decide(saga, BackorderFilled("b1", "L1", "WH2", 1), LATER)
    assert the_event(filled, AnnounceBackorderFilled).location == "WH2"
    saga = run(
        filled.saga,
        ShipmentPlanned("c2", "S2", "WH2", (LineQuantity("L1", 1),)),
        Shipped("s2", "S2", (LineQuantity("L1", 1),)),
        Delivered("d2", "S2"),
    )
    assert saga.state is OrderState.DELIVERED


def test_reallocate_cancels_instead_when_the_order_refuses_backorders() -> None:
    decision = decide(reallocating(backorder_policy="reject"), SHORT_ONE, LATER)
    assert the_event(decision, AnnounceLineCancelled).reason == "short_pick"
    assert the_event(decision, RequestRelease).lines[0].backorder is False


def test_a_carrier_exception_calls_an_operator_once_and_a_later_delivery_still_ends_the_order() -> (
    None
):
    damaged = CarrierException("evt-x", "S1", "parcel damaged")
    decision = decide(shipped(), damaged, LATER)
    assert decision.changed and decision.saga.state is OrderState.SHIPPED
    assert the_event(decision, AnnounceStuck).reason == "carrier_exception"
    again = decide(decision.saga, CarrierException("evt-x2", "S1", "still damaged"), LATER)
    assert_unchanged(decision.saga, again, Outcome.IGNORED)
    assert run(decision.saga, Delivered("d1", "S1")).state is OrderState.DELIVERED


def test_a_carrier_exception_on_an_unknown_shipment_is_refused() -> None:
    saga = shipped()
    decision = decide(saga, CarrierException("evt-x", "S9", "lost"), LATER)
    assert_unchanged(saga, decision, Outcome.REFUSED)


# --- lines cancelled by the customer or support ----------------------------------------------

CANCEL_ONE = LinesCancelRequested("evt-lc", "REQ-1", (LineQuantity("L1", 1),), "changed my mind")


def test_a_lines_cancel_of_waiting_units_asks_fulfillment_to_drop_them_first() -> None:
    decision = decide(run(confirmed(), S1_PLANNED), CANCEL_ONE, LATER)
    assert decision.changed and decision.saga.state is OrderState.CONFIRMED
    assert the_event(decision, AnnounceLinesCancelRequested) == AnnounceLinesCancelRequested(
        "ord-1", "REQ-1", (ShippedUnits("L1", "SKU-A", 1),), "changed my mind"
    )
    assert not [e for e in decision.effects if isinstance(e, RequestRelease)]
    line = decision.saga.line("L1")
    assert line is not None and line.cancelled == 0


def test_units_fulfillment_dropped_for_the_request_are_cancelled_whatever_the_policy() -> None:
    dropped = ShipmentShortened(
        "evt-sh", "S1", "WH1", (LineQuantity("L1", 1),), "REQ-1", "changed my mind"
    )
    decision = decide(run(confirmed(), S1_PLANNED, CANCEL_ONE), dropped, LATER)
    assert the_event(decision, RequestRelease) == RequestRelease(
        "ord-1", "changed my mind", (ReleaseUnits("L1", "SKU-A", "WH1", 1, not_found=False),)
    )
    assert the_event(decision, AnnounceLineCancelled).remaining == 2


def test_cancelling_the_unshipped_remainder_after_a_partial_shipment_ends_the_order() -> None:
    saga = run(
        confirmed(),
        ShipmentPlanned("c1", "S1", "WH1", (LineQuantity("L1", 1),)),
        ShipmentPlanned("c2", "S2", "WH1", (LineQuantity("L1", 2), LineQuantity("L2", 1))),
        Shipped("s1", "S1", (LineQuantity("L1", 1),)),
        Delivered("d1", "S1"),
    )
    rest = LinesCancelRequested(
        "evt-lc", "REQ-2", (LineQuantity("L1", 2), LineQuantity("L2", 1)), "too slow"
    )
    saga = run(saga, rest, ShipmentCancelled("x2", "S2", "too slow", cancel_request_id="REQ-2"))
    assert saga.state is OrderState.DELIVERED
    assert [(line.shipped, line.cancelled) for line in saga.lines] == [(1, 2), (0, 1)]


@pytest.mark.parametrize(
    ("build", "reason"),
    [
        (lambda: run(confirmed(), S1_PLANNED), "not_cancellable"),  # 4 asked, 3 wait
        (confirmed, "not_cancellable"),  # no shipment planned yet
        (shipped, "already_shipped"),
        (started, "not_cancellable"),
    ],
)
def test_a_lines_cancel_for_units_not_waiting_in_a_shipment_is_refused(
    build: Any, reason: str
) -> None:
    saga = build()
    too_many = LinesCancelRequested("e", "REQ-3", (LineQuantity("L1", 4),), "x")
    asked = too_many if saga.planned else CANCEL_ONE
    decision = decide(saga, asked, LATER)
    assert_unchanged(saga, decision, Outcome.REFUSED)
    assert the_event(decision, AnnounceCancelRefused).reason == reason


def test_the_same_lines_cancel_request_again_changes_nothing() -> None:
    saga = run(confirmed(), S1_PLANNED, CANCEL_ONE)
    again = LinesCancelRequested("evt-lc-2", "REQ-1", (LineQuantity("L1", 1),), "changed my mind")
    decision = decide(saga, again, LATER)
    assert_unchanged(saga, decision, Outcome.IGNORED)
    assert decision.effects == ()


# --- properties over every state -----------------------------------------------------------

EVERY_INPUT: list[SagaInput] = [
    ALL_HELD,
    L1_SHORT,
    StockRefused("e", "insufficient_stock"),
    CancelRequested("e", "x"),
    PaymentConfirmed("e"),
    PaymentDeadlinePassed("e"),
    StockReplyTimedOut("e", 1),
    BackorderFilled("e", "L1", "WH1", 1),
    Shipped("e", "S1", (LineQuantity("L1", 1),)),
    Shipped("e", "S7", (LineQuantity("L1", 1),)),
    Delivered("e", "S1"),
    Returned("e", "R7", (LineQuantity("L1", 1),)),
    ShipmentPlanned("e", "S1", "WH1", (LineQuantity("L1", 3),)),
    ShipmentShortened("e", "S1", "WH1", (LineQuantity("L1", 1),)),
    ShipmentCancelled("e", "S1", "damaged in the warehouse"),
    LinesCancelRequested("e", "REQ-7", (LineQuantity("L1", 1),), "customer_request"),
    ShipmentShortened("e", "S1", "WH1", (LineQuantity("L1", 1),), "REQ-7", "customer_request"),
    CarrierException("e", "S1", "parcel damaged"),
]


@pytest.mark.parametrize("state", list(SAGA_IN_STATE))
@pytest.mark.parametrize("event", EVERY_INPUT, ids=lambda e: type(e).__name__)
def test_every_input_in_every_state_yields_one_consistent_decision(
    state: OrderState, event: SagaInput
) -> None:
    saga = SAGA_IN_STATE[state]()
    decision = decide(saga, event, LATER)
    entry = decision.timeline
    assert (entry.cause_type, entry.cause_id, entry.at) == (
        event.cause_type,
        event.cause_id,
        LATER,
    )
    assert entry.from_state is saga.state
    assert entry.to_state is decision.saga.state
    if decision.changed:
        assert decision.saga.version == saga.version + 1
    else:
        assert decision.saga is saga
        assert entry.note


@pytest.mark.parametrize("state", [s for s in SAGA_IN_STATE if s.is_terminal])
def test_no_input_moves_an_order_out_of_a_terminal_state_except_a_full_return(
    state: OrderState,
) -> None:
    saga = SAGA_IN_STATE[state]()
    for event in EVERY_INPUT:
        after = decide(saga, event, LATER).saga.state
        assert after in (state, OrderState.RETURNED)


def test_a_whole_life_bumps_the_version_once_per_applied_input() -> None:
    saga = submit(None, order(payment=PENDING), "evt-submit", T0).saga
    life: list[SagaInput] = [
        PaymentConfirmed("p1"),
        L1_SHORT,
        ALL_HELD,
        BackorderFilled("b1", "L1", "WH2", 2),
        Shipped("s1", "S1", (LineQuantity("L1", 1),)),
        CancelRequested("c1", "too_late"),
        Shipped("s2", "S2", (LineQuantity("L1", 2), LineQuantity("L2", 1))),
        Delivered("d1", "S1"),
        Delivered("d2", "S2"),
    ]
    outcomes = []
    for event in life:
        decision = decide(saga, event, LATER)
        outcomes.append(decision.timeline.outcome)
        saga = decision.saga
    assert saga.state is OrderState.DELIVERED
    assert outcomes.count(Outcome.APPLIED) == 7
    assert saga.version == 1 + 7


# --- serialisation -------------------------------------------------------------------------


@pytest.mark.parametrize("state", list(SAGA_IN_STATE))
def test_a_saga_survives_a_round_trip_through_json(state: OrderState) -> None:
    saga = SAGA_IN_STATE[state]()
    assert OrderSaga.from_dict(json.loads(json.dumps(saga.to_dict()))) == saga


def test_times_and_money_round_trip_exactly() -> None:
    saga = run(started(payment=PENDING), L1_SHORT, BackorderFilled("b", "L1", "WH2", 1))
    data = saga.to_dict()
    assert data["payment_deadline"] == "2025-03-01T13:00:00+00:00"
    assert data["lines"][1]["unit_price"] == "4.50"
    assert OrderSaga.from_dict(json.loads(json.dumps(data))) == saga


def test_a_stuck_saga_round_trips() -> None:
    saga = run(started(), StockReplyTimedOut("t1", 1))
    assert saga.stock_reply_due_at == LATER + REPLY_TIMEOUT
    assert OrderSaga.from_dict(json.loads(json.dumps(saga.to_dict()))) == saga


def test_a_timeline_entry_is_json_ready() -> None:
    entry = decide(started(), ALL_HELD, LATER).timeline
    assert json.loads(json.dumps(entry.to_dict())) == {
        "at": "2025-03-01T12:05:00+00:00",
        "from_state": "reserving",
        "to_state": "confirmed",
        "cause_type": "StockReserved",
        "cause_id": "evt-reserved",
        "outcome": "applied",
        "note": "stock reserved; order confirmed",
    }


def test_every_announcement_names_its_order() -> None:
    for build in SAGA_IN_STATE.values():
        for event in EVERY_INPUT:
            for published in events(decide(build(), event, LATER)):
                assert published.order_id == "ord-1"
