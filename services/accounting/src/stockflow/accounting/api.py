"""HTTP API: reports, the journal (JSON pages and streamed CSV), period close, cost methods."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel

from stockflow.accounting import store
from stockflow.accounting.domain import (
    Account,
    AccountingError,
    CostMethod,
    Money,
    journal_csv,
    period_of,
)
from stockflow.accounting.domain.journal import rfc3339
from stockflow.runtime.http import idempotent_write, require_role
from stockflow.runtime.outbox import UnitOfWork

router = APIRouter(tags=["accounting"])
READ = Depends(require_role("read"))
ADMIN = Depends(require_role("admin"))
PERIOD = r"^\d{4}-(0[1-9]|1[0-2])$"
CSV_PAGE = 1000

PeriodQuery = Annotated[str | None, Query(pattern=PERIOD, description="YYYY-MM")]
SkuQuery = Annotated[str | None, Query(max_length=64)]
OrderQuery = Annotated[str | None, Query(max_length=128)]


def _money(amount: Decimal, currency: str) -> str:
    return str(Money.of(amount, currency))


@router.get("/reports/trial-balance", dependencies=[READ])
async def trial_balance(request: Request, period: PeriodQuery = None) -> dict[str, Any]:
    """Debits and credits per (currency, account); per currency they are equal."""
    async with request.app.state.pool.acquire() as conn:
        rows = await store.trial_balance(conn, period)
    totals: dict[str, list[Decimal]] = {}
    out = []
    for row in rows:
        currency, account = row["currency"], Account(row["account"])
        net = row["debit"] - row["credit"]
        out.append(
            {
                "currency": currency,
                "account": account.value,
                "debit": _money(row["debit"], currency),
                "credit": _money(row["credit"], currency),
                "balance": _money(net if account.normal_balance == "debit" else -net, currency),
                "normal_balance": account.normal_balance.value,
            }
        )
        sums = totals.setdefault(currency, [Decimal(0), Decimal(0)])
        sums[0] += row["debit"]
        sums[1] += row["credit"]
    return {
        "period": period,
        "rows": out,
        "totals": {
            c: {"debit": _money(d, c), "credit": _money(k, c), "balanced": d == k}
            for c, (d, k) in sorted(totals.items())
        },
    }


@router.get("/reports/valuation", dependencies=[READ])
async def valuation(
    request: Request,
    as_of: Annotated[datetime | None, Query(description="RFC 3339; value from the ledger")] = None,
    sku: SkuQuery = None,
) -> dict[str, Any]:
    """Inventory per SKU: now from the open cost layers (with the inventory account beside
    them), or as of a moment from the inventory account, which posting keeps equal to them."""
    async with request.app.state.pool.acquire() as conn:
        if as_of is not None:
            if as_of.tzinfo is None:
                raise HTTPException(422, "as_of needs a time zone offset")
            rows = await store.valuation_as_of(conn, as_of, sku)
            return {
                "as_of": rfc3339(as_of),
                "rows": [
                    {
                        "sku": r["sku"],
                        "currency": r["currency"],
                        "value": _money(r["value"], r["currency"]),
                    }
                    for r in rows
                ],
            }
        rows = await store.valuation_now(conn, sku)
    return {
        "as_of": None,
        "rows": [
            {
                "sku": r["sku"],
                "currency": r["currency"],
                "method": r["method"],
                "quantity": r["quantity"],
                "value": _money(r["value"], r["currency"]),
                "unit_cost": None
                if not r["quantity"]
                else format((r["value"] / r["quantity"]).quantize(Decimal("0.000001")), "f"),
                "ledger_value": _money(r["ledger_value"], r["currency"]),
                "reconciled": r["value"] == r["ledger_value"],
                "version": r["version"],
            }
            for r in rows
        ],
    }


@router.get("/reports/profitability", dependencies=[READ])
async def profitability(
    request: Request,
    by: Literal["sku", "period", "order"] = "sku",
    period: PeriodQuery = None,
    sku: SkuQuery = None,
    order_id: OrderQuery = None,
) -> dict[str, Any]:
    """Revenue, returns, COGS, gross margin, shrinkage, shipping and profit per SKU, period or
    order."""
    filters = {"period": period, "sku": sku, "order_id": order_id}
    async with request.app.state.pool.acquire() as conn:
        rows = await store.profitability(conn, by, filters)
    out = []
    for r in rows:
        c = r["currency"]
        net_revenue = r["revenue"] - r["sales_returns"]
        margin = net_revenue - r["cost_of_goods_sold"]
        out.append(
            {
                by: r["grp"],
                "currency": c,
                "revenue": _money(r["revenue"], c),
                "sales_returns": _money(r["sales_returns"], c),
                "net_revenue": _money(net_revenue, c),
                "cost_of_goods_sold": _money(r["cost_of_goods_sold"], c),
                "gross_margin": _money(margin, c),
                "gross_margin_pct": None
                if not net_revenue
                else format((100 * margin / net_revenue).quantize(Decimal("0.01")), "f"),
                "shrinkage": _money(r["shrinkage"], c),
                "shipping": _money(r["shipping"], c),
                "profit": _money(margin - r["shrinkage"] - r["shipping"], c),
            }
        )
    return {"by": by, "rows": out}


def _entry_filters(
    period: PeriodQuery = None,
    cause_type: Annotated[str | None, Query(max_length=128)] = None,
    cause_id: Annotated[str | None, Query(max_length=128)] = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> dict[str, Any]:
    return {
        "period": period,
        "cause_type": cause_type,
        "cause_id": cause_id,
        "since": since,
        "until": until,
    }


def _line_filters(
    sku: SkuQuery = None, order_id: OrderQuery = None, account: Account | None = None
) -> dict[str, Any]:
    return {"sku": sku, "order_id": order_id, "account": account.value if account else None}


def _journal_filters(
    entry: Annotated[dict[str, Any], Depends(_entry_filters)],
    line: Annotated[dict[str, Any], Depends(_line_filters)],
) -> dict[str, Any]:
    """What an entry must be (store.ENTRY_FILTERS) and what one of its lines must hold."""
    return {**entry, **line}


JournalFilters = Annotated[dict[str, Any], Depends(_journal_filters)]


@router.get("/journal", dependencies=[READ])
async def journal(
    request: Request,
    filters: JournalFilters,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    after: Annotated[
        int | None, Query(ge=0, description="`next_after` of the previous page")
    ] = None,
) -> dict[str, Any]:
    """Journal entries, oldest first; an entry matches when any of its lines does."""
    async with request.app.state.pool.acquire() as conn:
        page = await store.journal_page(conn, filters, after=after, limit=limit)
    return {
        "entries": [{"seq": seq, **entry.to_dict()} for seq, entry in page],
        "next_after": page[-1][0] if len(page) == limit else None,
    }


@router.get("/journal.csv", dependencies=[READ], response_class=StreamingResponse)
async def export_journal_csv(request: Request, filters: JournalFilters) -> StreamingResponse:
    """The journal as CSV, one row per line, streamed page by page (RFC 4180)."""
    pool = request.app.state.pool

    async def rows() -> AsyncIterator[str]:
        after = 0
        while True:
            async with pool.acquire() as conn:
                page = await store.journal_page(conn, filters, after=after, limit=CSV_PAGE)
            yield "".join(journal_csv((entry for _, entry in page), header=after == 0))
            if len(page) < CSV_PAGE:
                return
            after = page[-1][0]

    return StreamingResponse(
        rows(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="journal.csv"'},
    )


@router.get("/periods", dependencies=[READ])
async def periods(request: Request) -> dict[str, Any]:
    """Closed periods; every other period is open."""
    async with request.app.state.pool.acquire() as conn:
        rows = await store.closed_periods(conn)
    return {"closed": [{"period": r["period"], "closed_at": rfc3339(r["closed_at"])} for r in rows]}


@router.post("/periods/{period}/close", dependencies=[ADMIN])
async def close_period(
    request: Request, period: Annotated[str, Path(pattern=PERIOD)]
) -> JSONResponse:
    """Close a period: later events dated in it post into the first open period after it."""
    if period > period_of(datetime.now(UTC)):
        raise HTTPException(422, f"{period} has not started; only past or current periods close")

    async def action(uow: UnitOfWork) -> tuple[int, Any]:
        closed_at, newly = await store.close_period(uow.conn, period)
        return (201 if newly else 200), {
            "period": period,
            "closed": True,
            "closed_at": rfc3339(closed_at),
        }

    return await idempotent_write(request, action)


class CostMethodChange(BaseModel):
    method: CostMethod


@router.put("/skus/{sku}/cost-method", dependencies=[ADMIN])
async def set_cost_method(
    request: Request,
    sku: Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")],
    change: CostMethodChange,
) -> JSONResponse:
    """FIFO or moving average for a SKU; units held are restated at the same total value."""

    async def action(uow: UnitOfWork) -> tuple[int, Any]:
        try:
            valuation = await store.set_cost_method(uow.conn, sku, change.method)
        except AccountingError as exc:
            raise HTTPException(409, str(exc)) from exc
        body: dict[str, Any] = {"sku": sku, "method": change.method.value}
        if valuation is not None:
            body |= {
                "quantity": valuation.quantity,
                "value": str(valuation.value),
                "currency": valuation.currency,
            }
        return 200, body

    return await idempotent_write(request, action)


@router.get("/pending", dependencies=[READ])
async def pending(request: Request, order_id: OrderQuery = None) -> dict[str, Any]:
    """Postings parked until their order's prices or shipment costs arrive."""
    async with request.app.state.pool.acquire() as conn:
        rows = await store.pending(conn, order_id)
    return {
        "pending": [
            {
                **dict(r),
                "occurred_at": rfc3339(r["occurred_at"]),
                "parked_at": rfc3339(r["parked_at"]),
            }
            for r in rows
        ]
    }
