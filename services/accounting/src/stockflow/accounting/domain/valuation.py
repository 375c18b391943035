"""Inventory valuation per SKU: FIFO cost layers or a moving (weighted) average.

Layers keep their remaining *value* in money, not only a unit cost: an issue takes a prorated
share of a layer's value and the last unit out takes whatever is left. So the value the journal
moved into inventory minus the cost it moved out always equals the value of the open layers, to
the minor unit, however the rounding fell.

A moving average is the same machine with a single layer that every addition merges into.

Valuation is per SKU across all locations, so a transfer between locations changes neither
quantity nor value and is not an operation here (and posts nothing; see `posting`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any

from stockflow.accounting.domain.errors import AccountingError, CurrencyMismatch, InsufficientStock
from stockflow.accounting.domain.money import Money, minor_units, prorate, total

UNIT_COST_DECIMALS = Decimal("0.000001")
AVERAGE_LAYER_REF = "moving-average"


class CostMethod(StrEnum):
    FIFO = "fifo"
    MOVING_AVERAGE = "moving_average"


@dataclass(frozen=True, slots=True)
class CostLayer:
    """Units still on hand from one receipt or restocked return, and their remaining value."""

    ref: str
    quantity: int
    value: Money

    def __post_init__(self) -> None:
        _check_quantity(self.quantity)
        if self.value.amount < 0:
            raise AccountingError(f"layer {self.ref} has a negative value {self.value}")

    @property
    def unit_cost(self) -> Decimal:
        return (self.value.amount / self.quantity).quantize(UNIT_COST_DECIMALS)


@dataclass(frozen=True, slots=True)
class CostSlice:
    """The part of one layer an issue consumed."""

    layer_ref: str
    quantity: int
    cost: Money


@dataclass(frozen=True, slots=True)
class IssuedCost:
    """What an issue took out of the valuation: its total cost and the layer slices behind it.

    Keep `quantity` and `cost` with the shipment: a later return is restocked at this cost.
    """

    quantity: int
    cost: Money
    slices: tuple[CostSlice, ...]


class SkuValuation:
    """The cost of one SKU's units on hand, valued by FIFO or moving average (fixed per SKU)."""

    def __init__(
        self,
        sku: str,
        currency: str,
        method: CostMethod = CostMethod.FIFO,
        layers: Iterable[CostLayer] = (),
        last_unit_cost: Decimal | None = None,
    ) -> None:
        self.sku = sku
        self.currency = currency
        self.method = CostMethod(method)
        self._layers = list(layers)
        self._last_unit_cost = last_unit_cost
        minor_units(currency)
        for layer in self._layers:
            self._check_currency(layer.value)
        if self.method is CostMethod.MOVING_AVERAGE and len(self._layers) > 1:
            raise AccountingError(f"{sku}: a moving average keeps a single layer")

    @property
    def layers(self) -> tuple[CostLayer, ...]:
        """Open layers, oldest first."""
        return tuple(self._layers)

    @property
    def quantity(self) -> int:
        return sum(layer.quantity for layer in self._layers)

    @property
    def value(self) -> Money:
        return total((layer.value for layer in self._layers), self.currency)

    @property
    def current_unit_cost(self) -> Decimal | None:
        """The cost for units found in a count: FIFO the latest receipt's, else the average.

        Kept after the stock runs out; None until the SKU was ever valued.
        """
        return self._last_unit_cost

    def receive(self, quantity: int, unit_cost: Decimal, ref: str) -> Money:
        """Add received units at their unit cost; returns the value added (rounded)."""
        _check_quantity(quantity)
        if not isinstance(unit_cost, Decimal) or not unit_cost.is_finite() or unit_cost < 0:
            raise AccountingError(f"{self.sku}: unit cost must be a non-negative number")
        value = Money.of(unit_cost * quantity, self.currency)
        self._add(CostLayer(ref, quantity, value))
        if self.method is CostMethod.FIFO:
            self._last_unit_cost = unit_cost
        return value

    def restock_return(self, quantity: int, original_cost: Money, ref: str) -> Money:
        """Take returned units back at the cost they were issued at; returns that cost."""
        self._check_currency(original_cost)
        self._add(CostLayer(ref, quantity, original_cost))
        return original_cost

    def receive_found(self, quantity: int, ref: str) -> Money:
        """Add units found in a count at `current_unit_cost`; returns the value added."""
        _check_quantity(quantity)
        if self._last_unit_cost is None:
            raise AccountingError(f"{self.sku}: no known cost to value found units at")
        value = Money.of(self._last_unit_cost * quantity, self.currency)
        self._add(CostLayer(ref, quantity, value))
        return value

    def issue(self, quantity: int) -> IssuedCost:
        """Take units out, oldest layer first; returns their cost and the slices consumed."""
        _check_quantity(quantity)
        if quantity > self.quantity:
            raise InsufficientStock(f"{self.sku}: issue of {quantity} with {self.quantity} valued")
        slices: list[CostSlice] = []
        remaining = quantity
        while remaining:
            layer = self._layers[0]
            taken = min(remaining, layer.quantity)
            cost = prorate(layer.value, taken, layer.quantity)
            slices.append(CostSlice(layer.ref, taken, cost))
            if taken == layer.quantity:
                self._layers.pop(0)
            else:
                self._layers[0] = CostLayer(layer.ref, layer.quantity - taken, layer.value - cost)
            remaining -= taken
        return IssuedCost(quantity, total((s.cost for s in slices), self.currency), tuple(slices))

    def write_off(self, quantity: int) -> IssuedCost:
        """Take lost or damaged units out; the cost flow is an issue's, the posting differs."""
        return self.issue(quantity)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able state for the store."""
        return {
            "sku": self.sku,
            "currency": self.currency,
            "method": self.method.value,
            "layers": [
                {"ref": layer.ref, "quantity": layer.quantity, "value": str(layer.value)}
                for layer in self._layers
            ],
            "last_unit_cost": None if self._last_unit_cost is None else str(self._last_unit_cost),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SkuValuation:
        currency = data["currency"]
        last_unit_cost = data.get("last_unit_cost")
        return cls(
            sku=data["sku"],
            currency=currency,
            method=CostMethod(data["method"]),
            layers=[
                CostLayer(layer["ref"], layer["quantity"], Money.parse(layer["value"], currency))
                for layer in data["layers"]
            ],
            last_unit_cost=None if last_unit_cost is None else Decimal(last_unit_cost),
        )

    def _add(self, layer: CostLayer) -> None:
        if self.method is CostMethod.FIFO:
            self._layers.append(layer)
            return
        if self._layers:
            held = self._layers[0]
            quantity, value = held.quantity + layer.quantity, held.value + layer.value
        else:
            quantity, value = layer.quantity, layer.value
        merged = CostLayer(AVERAGE_LAYER_REF, quantity, value)
        self._layers = [merged]
        self._last_unit_cost = merged.unit_cost

    def _check_currency(self, amount: Money) -> None:
        if amount.currency != self.currency:
            raise CurrencyMismatch(
                f"{self.sku} is valued in {self.currency}, not {amount.currency}"
            )


def _check_quantity(quantity: int) -> None:
    if type(quantity) is not int or quantity <= 0:
        raise AccountingError(f"quantity must be a positive whole number, not {quantity!r}")
