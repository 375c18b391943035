"""HTTP API of the stock service, one router per resource group: `levels` (levels,
availability, the ledger, reservations, receipts, counts, reorder points), `warehouse`
(locations, transfers, states, safety stock, announced receipts) and `repair` (admin repairs).
Routers only parse, call a use case (`stockflow.stock.usecases`) and map refusals to 4xx."""

from stockflow.stock.api import levels, repair, warehouse

routers = [levels.router, warehouse.router, repair.router]
"""Every stock router, in the order the service mounts them."""
