"""Refusals of the stock rules; each carries the figures a handler needs to log or reply."""

from __future__ import annotations


class StockError(Exception):
    """A change the stock rules refuse; the state it was asked of is left as it was."""


class InsufficientStock(StockError):
    """A movement would take a bucket (or what is available) below zero."""

    def __init__(self, sku: str, location: str, bucket: str, have: int, wanted: int) -> None:
        super().__init__(f"{sku} at {location}: {bucket} is {have}, the movement needs {wanted}")
        self.sku = sku
        self.location = location
        self.bucket = bucket
        self.have = have
        self.wanted = wanted


class StaleCount(StockError):
    """Stock moved while it was being counted: the count must be redone, not applied."""

    def __init__(self, expected: int, current_on_hand: int) -> None:
        super().__init__(
            f"count expected {expected} on hand but there are now {current_on_hand}; recount"
        )
        self.expected = expected
        self.current_on_hand = current_on_hand
