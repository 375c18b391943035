"""HTTP API for replenishment settings per SKU (location '*') or per (sku, location)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from stockflow.contracts.types import Sku
from stockflow.runtime.http import idempotent_write, require_role
from stockflow.stock.replenishment.settings import SETTING_COLUMNS, ReplenishDefaults, load_settings

router = APIRouter(tags=["replenishment"])

ALL_LOCATIONS = "*"


class ReplenishmentSettingsIn(BaseModel):
    """Omitted fields inherit: from the sku's '*' row, then from the service's defaults."""

    sku: Sku
    location: str = Field(
        ALL_LOCATIONS, pattern=r"^(\*|[A-Za-z0-9][A-Za-z0-9._-]{0,31})$", description="'*' = all"
    )
    lead_time_days: float | None = Field(None, gt=0, le=365)
    lead_time_std_days: float | None = Field(None, ge=0, le=365)
    unit_cost: float | None = Field(None, gt=0)
    ordering_cost: float | None = Field(None, ge=0)
    holding_cost_rate: float | None = Field(None, gt=0, le=10)
    pack_size: int | None = Field(None, ge=1)
    min_order_qty: int | None = Field(None, ge=0)
    service_level: float | None = Field(None, ge=0.5, lt=1)
    service_level_type: Literal["cycle", "fill_rate"] | None = None
    method: Literal["eoq", "minmax"] | None = None
    order_cycle_days: float | None = Field(None, gt=0, le=365)
    max_cover_days: float | None = Field(None, gt=0, le=730)


@router.put(
    "/replenishment/settings", dependencies=[Depends(require_role("warehouse"))], status_code=200
)
async def put_settings(settings: ReplenishmentSettingsIn, request: Request):
    """Replace the settings row of (sku, location); the next replenishment run uses it."""

    async def action(uow):
        values = [getattr(settings, name) for name in SETTING_COLUMNS]
        await uow.conn.execute(
            f"""INSERT INTO replenishment_settings (sku, location, {", ".join(SETTING_COLUMNS)})
                VALUES ($1, $2, {", ".join(f"${i}" for i in range(3, 3 + len(SETTING_COLUMNS)))})
                ON CONFLICT (sku, location) DO UPDATE SET
                {", ".join(f"{c} = EXCLUDED.{c}" for c in SETTING_COLUMNS)}, updated_at = now()""",
            settings.sku,
            settings.location,
            *values,
        )
        return 200, settings.model_dump()

    return await idempotent_write(request, action)


@router.get("/replenishment/settings/{sku}")
async def get_settings(sku: str, request: Request) -> dict:
    """Stored rows of SKU and the effective settings at each of its locations."""
    pool = request.app.state.pool
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            f"SELECT location, {', '.join(SETTING_COLUMNS)}, updated_at "
            "FROM replenishment_settings WHERE sku = $1 ORDER BY location",
            sku,
        )
        locations = [
            r["location"]
            for r in await conn.fetch(
                "SELECT location FROM levels WHERE sku = $1 UNION "
                "SELECT location FROM demand_daily WHERE sku = $1 ORDER BY location",
                sku,
            )
        ]
        effective = await load_settings(
            conn,
            [(sku, location) for location in locations],
            ReplenishDefaults().replenishment_settings(),
        )
    return {
        "sku": sku,
        "stored": [dict(r) for r in rows],
        "effective": {location: asdict(s) for (_, location), s in effective.items()},
    }
