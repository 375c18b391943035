"""The replenishment worker: the scheduled, leader-only replenishment run in a process of its own
beside the stock service, on the stock schema (``python -m stockflow.runtime.serve
replenishment``).

Forecasting is CPU-bound and needs numpy, pandas, scipy, statsmodels and matplotlib; here it
neither competes with the reserve path for the stock process's CPU nor makes that process load
them. The suggestions go into the stock outbox, which the stock service's relay publishes.
"""

from __future__ import annotations

from stockflow.runtime.worker import WorkerDefinition
from stockflow.stock.replenishment.schedule import replenish_periodically

worker = WorkerDefinition(
    name="replenishment",
    description=(
        "Demand forecasts per SKU and location, reorder points and reorder suggestions for the "
        "stock service, on its schema."
    ),
    background=[replenish_periodically],
)
