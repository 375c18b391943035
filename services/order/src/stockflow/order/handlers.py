"""Message handlers: hand each consumer's batch to its use case, inside the batch's transaction."""

from __future__ import annotations

import json
from typing import Any

from aiokafka.structs import ConsumerRecord

from stockflow.contracts import CloudEvent, InvalidMessage
from stockflow.contracts import events as wire
from stockflow.order import domain, usecases
from stockflow.order.domain import SagaPolicy
from stockflow.runtime.consumer import Inbound
from stockflow.runtime.logging import get_logger
from stockflow.runtime.outbox import UnitOfWork

log = get_logger(__name__)

CHECKOUT_EVENTS = {
    wire.CheckoutOrderSubmitted.event_type,
    wire.CheckoutOrderCancelRequested.event_type,
    wire.CheckoutOrderLinesCancelRequested.event_type,
    wire.CheckoutPaymentConfirmed.event_type,
}
STOCK_EVENTS = {
    wire.StockReserved.event_type,
    wire.ReservationRejected.event_type,
    wire.BackorderAllocated.event_type,
    wire.BackorderEtaChanged.event_type,
}
FULFILLMENT_EVENTS = {
    wire.ShipmentCreated.event_type,
    wire.ShipmentShortened.event_type,
    wire.ShipmentCancelled.event_type,
    wire.ShipmentShipped.event_type,
    wire.ShipmentDelivered.event_type,
    wire.ShipmentException.event_type,
    wire.ReturnReceived.event_type,
}


class OrderHandlers:
    """The order service's consumers, sharing one saga policy."""

    def __init__(self, policy: SagaPolicy = domain.DEFAULT_POLICY) -> None:
        self.policy = policy

    async def on_checkout(self, uow: UnitOfWork, batch: list[Inbound]) -> None:
        """Submissions, cancel requests and payment confirmations from checkout.orders.v1."""
        await usecases.take_checkout(uow, batch, self.policy)

    async def on_invalid_checkout(
        self,
        uow: UnitOfWork,
        record: ConsumerRecord,
        cloud: CloudEvent | None,
        error: InvalidMessage,
    ) -> bool:
        """Reject a malformed submission that still names its order; dead-letter the rest."""
        if cloud is None or cloud.type != wire.CheckoutOrderSubmitted.event_type:
            return False
        try:
            payload = cloud_data(cloud)
        except ValueError:
            return False
        answered = await usecases.answer_invalid_submission(uow, cloud, payload, self.policy)
        if answered:
            log.info(
                "invalid order rejected", order_id=payload["order_id"], error=error.reason[:500]
            )
        return answered

    async def on_stock(self, uow: UnitOfWork, batch: list[Inbound]) -> None:
        """Stock's replies to the reservation request, its backorder allocations and the moves
        of backorder dates (after the replies: a move never precedes its order's reply)."""
        moves = [i for i in batch if isinstance(i.event, wire.BackorderEtaChanged)]
        replies = [i for i in batch if not isinstance(i.event, wire.BackorderEtaChanged)]
        await usecases.record_reply_etas(uow, replies)
        await usecases.apply_stock_replies(uow, replies, self.policy)
        await usecases.apply_eta_changes(uow, moves)

    async def on_fulfillment(self, uow: UnitOfWork, batch: list[Inbound]) -> None:
        """Shipments created, shortened, cancelled, leaving and arriving, and returns."""
        await usecases.apply_fulfillment(uow, batch, self.policy)


def cloud_data(cloud: CloudEvent) -> Any:
    """The `data` of a record the contract refused, as plain JSON (the only read of it as JSON
    besides the contract's own: a valid record reaches the use case as its model)."""
    if isinstance(cloud.data, dict):
        return cloud.data
    try:
        return json.loads(cloud.data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError("data is not JSON") from exc
