"""PNG chart per SKU: demand history and forecast, and the projected stock against the reorder
point. Uses the Agg canvas on a standalone Figure, so no pyplot global state and no display."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
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
    figure = Figure(figsize=(9, 6), dpi=100)
    FigureCanvasAgg(figure)
    top, bottom = figure.subplots(2, 1, height_ratios=(3, 2))
    _draw_demand(top, forecast, history_days)
    top.set_title(title or f"{suggestion.sku} — reorder {suggestion.order_qty} units")
    _draw_position(bottom, forecast, suggestion)
    figure.tight_layout()

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    png = buffer.getvalue()
    if path is not None:
        Path(path).write_bytes(png)
    return png


def _draw_demand(axes: Axes, forecast: ForecastResult, history_days: int) -> None:
    history = forecast.history[-history_days:]
    imputed = np.asarray(forecast.imputed, dtype=bool)[-history_days:]
    past = np.arange(-len(history), 0)
    ahead = np.arange(len(forecast.forecast))
    axes.plot(past, history, color="tab:blue", linewidth=1, label="demand")
    if imputed.any():
        axes.scatter(
            past[imputed], history[imputed], color="tab:red", s=10, label="stockout (imputed)"
        )
    axes.plot(
        ahead,
        forecast.forecast,
        color="tab:orange",
        linewidth=1.5,
        label=f"forecast ({forecast.model})",
    )
    axes.axvline(0, color="gray", linewidth=0.5)
    axes.set_xlabel("days from today")
    axes.set_ylabel("units / day")
    axes.legend(loc="upper left", fontsize="small")


def _draw_position(axes: Axes, forecast: ForecastResult, suggestion: Suggestion) -> None:
    ahead = np.arange(len(forecast.forecast))
    projected = suggestion.inventory_position - np.cumsum(forecast.forecast)
    axes.plot(ahead, projected, color="tab:green", label="projected position (no order)")
    axes.axhline(
        suggestion.reorder_point,
        color="tab:red",
        linestyle="--",
        label=f"reorder point {suggestion.reorder_point:.0f}",
    )
    axes.axhline(
        suggestion.safety_stock,
        color="tab:gray",
        linestyle=":",
        label=f"safety stock {suggestion.safety_stock:.0f}",
    )
    axes.set_xlabel("days from today")
    axes.set_ylabel("units")
    axes.legend(loc="lower left", fontsize="small")
