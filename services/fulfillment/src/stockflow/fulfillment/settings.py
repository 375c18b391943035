"""Fulfillment's own settings (prefix STOCKFLOW_FULFILLMENT_), beside the runtime's."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

EUROPE_AND_NORTH_AMERICA = (
    *("AT", "BE", "BG", "CH", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GB", "GR", "HR"),
    *("HU", "IE", "IS", "IT", "LI", "LT", "LU", "LV", "MT", "NL", "NO", "PL", "PT", "RO", "SE"),
    *("SI", "SK", "CA", "US"),
)


class FulfillmentSettings(BaseSettings):
    """How the warehouse ships: carriers' home and reach, and the demo autopilot."""

    model_config = SettingsConfigDict(env_prefix="STOCKFLOW_FULFILLMENT_", extra="ignore")

    auto_ship: bool = Field(
        default=False,
        description="Pick, pack and ship confirmed shipments without a warehouse person (demo).",
    )
    auto_ship_delay_s: float = Field(default=3.0, ge=0, description="Wait before picking.")
    auto_deliver_delay_s: float = Field(
        default=10.0, ge=0, description="Simulated carrier: shipped to delivered after this long."
    )
    autopilot_interval_s: float = Field(default=1.0, gt=0)
    auto_short_pick_every: int = Field(
        default=0,
        ge=0,
        description="Demo autopilot: every Nth pick list finds one unit fewer of its first "
        "line, and the short shipment ships what was picked (cancelled if nothing was). 0: never.",
    )
    auto_cancel_every: int = Field(
        default=0,
        ge=0,
        description="Demo autopilot: the warehouse cancels every Nth picked shipment instead "
        "of packing it. 0: never.",
    )
    carrier_country: str = Field(default="GB", description="Issuing country of tracking numbers.")
    carrier_currency: str = "GBP"
    destinations: list[str] = Field(default_factory=lambda: list(EUROPE_AND_NORTH_AMERICA))
    max_pick_list_shipments: int = Field(default=20, ge=1, le=200)
