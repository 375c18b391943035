"""PNG chart per SKU: demand history and forecast, and the projected stock against the reorder
point. Uses the Agg canvas on a standalone Figure, so no pyplot global state and no display."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from stockflow.stock.replenishment.forecasting import ForecastResult
from stockflow.stock.replenishment.policy import Suggestion


def render_chart(
    forecast: ForecastResult,
    suggestion: Suggestion,
    *,
    title: str | None = None,
    path: Path | str | None = None,
    history_days: int = 120,
) -> bytes:
    """Render the chart and return the PNG bytes (also written to ``path`` if given).

    Top: the last ``history_days`` of daily demand (imputed stockout days marked) and the
    forecast. Bottom: inventory position drawn down by the forecast, with the reorder point and
    safety stock — demand and stock are in different units, hence two panels.
    """
    history = forecast.history[-history_days:]
    imputed = np.asarray(forecast.imputed, dtype=bool)[-history_days:]
    past = np.arange(-len(history), 0)
    ahead = np.arange(len(forecast.forecast))

    figure = Figure(figsize=(9, 6), dpi=100)
    FigureCanvasAgg(figure)
    top, bottom = figure.subplots(2, 1, height_ratios=(3, 2))

    top.plot(past, history, color="tab:blue", linewidth=1, label="demand")
    if imputed.any():
        top.scatter(
            past[imputed], history[imputed], color="tab:red", s=10, label="stockout (imputed)"
        )
    top.plot(
        ahead,
        forecast.forecast,
        color="tab:orange",
        linewidth=1.5,
        label=f"forecast ({forecast.model})",
    )
    top.axvline(0, color="gray", linewidth=0.5)
    top.set_xlabel("days from today")
    top.set_ylabel("units / day")
    top.legend(loc="upper left", fontsize="small")
    top.set_title(title or f"{suggestion.sku} — reorder {suggestion.order_qty} units")

    projected = suggestion.inventory_position - np.cumsum(forecast.forecast)
    bottom.plot(ahead, projected, color="tab:green", label="projected position (no order)")
    bottom.axhline(
        suggestion.reorder_point,
        color="tab:red",
        linestyle="--",
        label=f"reorder point {suggestion.reorder_point:.0f}",
    )
    bottom.axhline(
        suggestion.safety_stock,
        color="tab:gray",
        linestyle=":",
        label=f"safety stock {suggestion.safety_stock:.0f}",
    )
    bottom.set_xlabel("days from today")
    bottom.set_ylabel("units")
    bottom.legend(loc="lower left", fontsize="small")
    figure.tight_layout()

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    png = buffer.getvalue()
    if path is not None:
        Path(path).write_bytes(png)
    return png
