"""What a use case refuses beyond the domain's `StockError`s; the HTTP API maps them to 4xx."""

from __future__ import annotations

from stockflow.stock.domain import StockError


class Conflict(StockError):
    """The request contradicts what is stored (a repeated id, units no longer there): 409.

    The message starts with the name of the input field at fault.
    """


class NotFound(StockError):
    """The transfer or reservation named does not exist: 404."""
