"""HTTP API: an order with its lines, reservations, shipments and timeline; lists; counts.

Orders name customers and carry their addresses, so reading them needs a bearer token with
role `read` (or `admin`). The counts per state carry no personal data and are open.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError

from stockflow.contracts import events as wire
from stockflow.contracts.types import Identifier, ShortText
from stockflow.order import store, usecases
from stockflow.order.domain import (
    DEFAULT_POLICY,
    SETTLED_STATES,
    LineQuantity,
    OrderSaga,
    OrderState,
    Outcome,
    SagaLine,
)
from stockflow.runtime.http import idempotent_write, require_role
from stockflow.runtime.outbox import UnitOfWork

router = APIRouter(tags=["orders"])
READ = Depends(require_role("read"))
SUPPORT = Depends(require_role("support"))
MAX_PAGE = 500

StateQuery = Annotated[OrderState | None, Query(description="Only orders in this state.")]


@router.get("/orders/stats")
async def order_stats(
    request: Request,
    since: Annotated[datetime | None, Query(description="Only orders received since.")] = None,
) -> dict[str, Any]:
    """Orders per state, how many are settled, and intake-to-settlement latency in ms.

    Settled means the reservation saga is over (confirmed or beyond, rejected, cancelled);
    `stuck` orders gave up waiting for stock and stay unsettled until an operator acts.
    """
    async with request.app.state.pool.acquire() as conn:
        figures = await store.stats(conn, since)
    counts = {state.value: figures["counts"].get(state.value, 0) for state in OrderState}
    latency = figures["latency"]
    p50, p95, p99 = latency["p"] or (None, None, None)
    return {
        "total": sum(counts.values()),
        "settled": sum(n for state, n in counts.items() if OrderState(state) in SETTLED_STATES),
        "unsettled": sum(
            n for state, n in counts.items() if OrderState(state) not in SETTLED_STATES
        ),
        "stuck": figures["stuck"],
        "states": counts,
        "settle_latency_ms": {
            "count": latency["n"],
            "p50": _round(p50),
            "p95": _round(p95),
            "p99": _round(p99),
            "max": _round(latency["max"]),
        },
    }


def _round(value: float | Decimal | None) -> float | None:
    return None if value is None else round(float(value), 1)


@router.get("/orders", dependencies=[READ])
async def list_orders(
    request: Request,
    state: StateQuery = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    after: Annotated[str | None, Query(max_length=128, description="Last order id seen.")] = None,
) -> dict[str, Any]:
    """A page of orders in order-id order; pass `next_after` as `after` for the next page."""
    async with request.app.state.pool.acquire() as conn:
        rows = await store.list_orders(
            conn, state=state.value if state else None, after=after, limit=limit
        )
    orders = [
        {
            "order_id": row["order_id"],
            "state": row["state"],
            "version": row["version"],
            "customer_id": row["customer_id"],
            "currency": row["currency"],
            "lines": row["line_count"],
            "created_at": row["created_at"],
            "updated_at": row["updated_at"],
            "settled_at": row["settled_at"],
        }
        for row in rows
    ]
    next_after = orders[-1]["order_id"] if len(orders) == limit else None
    return {"orders": orders, "next_after": next_after}


@router.get("/orders/{order_id:path}", dependencies=[READ])
async def get_order(request: Request, order_id: str) -> dict[str, Any]:
    """The order: header, lines with their allocations, shipments, timers and timeline."""
    async with request.app.state.pool.acquire() as conn:
        row = await store.order(conn, order_id)
        if row is None:
            raise HTTPException(404, f"order {order_id} not found")
        timeline = await store.timeline(conn, order_id)
        shipments = await store.shipments(conn, order_id)
        timers = await store.timers(conn, order_id)
        etas = await store.backorder_etas(conn, order_id)
    saga = OrderSaga.from_dict(row["saga"])
    carrier = {s["shipment_id"]: dict(s) for s in shipments}
    return {
        "order_id": saga.order_id,
        "state": saga.state.value,
        "version": saga.version,
        "reason": saga.reason,
        "stuck": saga.stuck,
        "customer_id": row["customer_id"],
        "currency": saga.currency,
        "total": str(sum((line.unit_price * line.quantity for line in saga.lines), Decimal(0))),
        "priority": row["priority"],
        "placed_at": row["placed_at"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "settled_at": row["settled_at"],
        "payment": {"status": saga.payment.value, "deadline": saga.payment_deadline},
        "backorder_policy": saga.backorder_policy.value,
        "fulfillment_exception_policy": saga.exception_policy.value,
        "reserve_attempts": saga.reserve_attempts,
        "shipping_address": row["shipping_address"],
        "lines": [_line_json(line, etas) for line in saga.lines],
        "shipments": [
            {
                "shipment_id": s.shipment_id,
                "delivered": s.delivered,
                "lines": [{"line_id": q.line_id, "quantity": q.quantity} for q in s.lines],
                **{k: v for k, v in carrier.get(s.shipment_id, {}).items() if k != "shipment_id"},
            }
            for s in saga.shipments
        ],
        "planned_shipments": [
            {"shipment_id": s.shipment_id, "location": s.location, "lines": _quantities(s.lines)}
            for s in saga.planned
        ],
        "returns": list(saga.return_ids),
        "timers": [dict(t) for t in timers],
        "timeline": [dict(entry) for entry in timeline],
    }


def _line_json(line: SagaLine, etas: dict[str, datetime | None]) -> dict[str, Any]:
    """A line with its progress; a backordered line with the date stock expects it."""
    return {
        "line_id": line.line_id,
        "sku": line.sku,
        "quantity": line.quantity,
        "unit_price": str(line.unit_price),
        "reserved": line.reserved,
        "backordered": line.backordered,
        "expected_date": etas.get(line.line_id) if line.backordered else None,
        "untracked": line.untracked,
        "shipped": line.shipped,
        "returned": line.returned,
        "cancelled": line.cancelled,
        "allocations": [{"location": a.location, "quantity": a.quantity} for a in line.allocations],
    }


def _quantities(lines: tuple[LineQuantity, ...]) -> list[dict[str, Any]]:
    return [{"line_id": q.line_id, "quantity": q.quantity} for q in lines]


class LinesCancel(BaseModel):
    """Units of lines to cancel before they ship (`request_id`: your id for this request)."""

    request_id: Identifier | None = Field(
        default=None,
        description="Identifies the request; default: the Idempotency-Key, else a new one "
        "(then a retry without either is another request).",
    )
    lines: list[wire.CancelLine] = Field(min_length=1, max_length=wire.MAX_LINES)
    reason: ShortText = "customer_request"


_ANSWER = {Outcome.APPLIED: (202, "requested"), Outcome.IGNORED: (200, "duplicate")}


@router.post("/orders/{order_id}/line-cancellations", dependencies=[SUPPORT])
async def cancel_lines(request: Request, order_id: str, body: LinesCancel) -> JSONResponse:
    """Cancel units of lines that wait in a shipment which has not left, as
    `checkout.order.lines_cancel_requested.v1` does: 202 when fulfillment was asked to drop
    them (`order.line_cancelled.v1` follows for what it dropped), 409 when refused (shipped,
    or not in a waiting shipment; `order.cancel_refused.v1` is published too), 404 unknown.
    Honours `Idempotency-Key`; the same `request_id` again changes nothing (200)."""
    try:
        asked = wire.CheckoutOrderLinesCancelRequested(
            order_id=order_id,
            request_id=body.request_id
            or request.headers.get("idempotency-key")
            or uuid.uuid4().hex,
            lines=body.lines,
            reason=body.reason,
        )
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        field = ".".join(str(part) for part in first["loc"])
        raise HTTPException(422, f"{field}: {first['msg']}") from exc

    async def action(uow: UnitOfWork) -> tuple[int, Any]:
        # A lines-cancel decision reads none of the saga's tunables.
        decision = await usecases.request_lines_cancel(uow, order_id, asked, DEFAULT_POLICY)
        if decision is None:
            raise HTTPException(404, f"order_id: no order {order_id}")
        status, outcome = _ANSWER.get(decision.timeline.outcome, (409, "refused"))
        return status, {
            "order_id": order_id,
            "request_id": asked.request_id,
            "outcome": outcome,
            "detail": decision.timeline.note,
        }

    return await idempotent_write(request, action)
