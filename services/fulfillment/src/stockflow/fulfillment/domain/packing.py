"""Packages: what a parcel weighs and measures, with defaults from catalog variant data.

When the packer does not weigh or measure a parcel, its contents decide: the weight is the sum
of the variants' weights plus the box, and the box is the items stacked on top of each other
(longest length x widest width x sum of heights). The stack never understates any single side,
so a carrier's dimensional weight computed from it is never too low.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from stockflow.fulfillment.domain.common import ShipmentLine
from stockflow.fulfillment.domain.errors import PackingError

_T = TypeVar("_T")

DEFAULT_DIM_DIVISOR = 5000
"""cm³ per kg, the common international divisor; some carriers use 4000 or 6000."""

DEFAULT_BOX_TARE_GRAMS = 150
"""What an empty medium carton and its filling weigh, added to the contents' weight."""


@dataclass(frozen=True)
class Dimensions:
    """Outside measurements of a package (or an item) in millimetres."""

    length_mm: int
    width_mm: int
    height_mm: int

    def __post_init__(self) -> None:
        if min(self.length_mm, self.width_mm, self.height_mm) <= 0:
            raise PackingError(f"Every side of a package must be longer than 0 mm, got {self}.")

    @property
    def volume_mm3(self) -> int:
        return self.length_mm * self.width_mm * self.height_mm

    @property
    def longest_side_mm(self) -> int:
        return max(self.length_mm, self.width_mm, self.height_mm)

    def __str__(self) -> str:
        return f"{self.length_mm}×{self.width_mm}×{self.height_mm} mm"

    def to_dict(self) -> dict[str, int]:
        return {"length_mm": self.length_mm, "width_mm": self.width_mm, "height_mm": self.height_mm}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Dimensions:
        return cls(data["length_mm"], data["width_mm"], data["height_mm"])


@dataclass(frozen=True)
class VariantSpec:
    """What the catalog knows about one unit of a sku (either may be unknown)."""

    sku: str
    weight_grams: int | None = None
    dimensions: Dimensions | None = None


@dataclass(frozen=True)
class Package:
    """One parcel of a shipment."""

    weight_grams: int
    dimensions: Dimensions

    def __post_init__(self) -> None:
        if self.weight_grams <= 0:
            raise PackingError(f"A package must weigh more than 0 g, got {self.weight_grams} g.")

    def to_dict(self) -> dict[str, Any]:
        return {"weight_grams": self.weight_grams, "dimensions": self.dimensions.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Package:
        return cls(data["weight_grams"], Dimensions.from_dict(data["dimensions"]))

    def dimensional_weight_grams(self, divisor: int = DEFAULT_DIM_DIVISOR) -> int:
        """Volumetric weight: LxWxH (cm³) / divisor (cm³/kg), in grams, rounded up.

        mm³ / 1000 gives cm³, / divisor gives kg, x 1000 gives grams: the 1000s cancel.
        """
        return math.ceil(self.dimensions.volume_mm3 / divisor)

    def billable_weight_grams(self, divisor: int = DEFAULT_DIM_DIVISOR) -> int:
        """What carriers charge for: the greater of actual and dimensional weight."""
        return max(self.weight_grams, self.dimensional_weight_grams(divisor))


def build_package(
    contents: Sequence[ShipmentLine],
    variants: Mapping[str, VariantSpec],
    *,
    weight_grams: int | None = None,
    dimensions: Dimensions | None = None,
    tare_grams: int = DEFAULT_BOX_TARE_GRAMS,
) -> Package:
    """A package for `contents`, using the measured weight and dimensions when given.

    Whatever was not measured is computed from `variants` (keyed by sku): contents' weight plus
    `tare_grams`, and the items stacked (see the module docstring). Raises `PackingError` naming
    the skus whose catalog data is missing, so the packer knows to weigh or measure by hand.
    """
    if not contents:
        raise PackingError("A package needs at least one item.")
    if weight_grams is None:
        unit_weights = _known(contents, variants, "weight", lambda spec: spec.weight_grams)
        weight_grams = tare_grams + sum(unit_weights[line.sku] * line.quantity for line in contents)
    if dimensions is None:
        unit_sizes = _known(contents, variants, "dimensions", lambda spec: spec.dimensions)
        items = [unit_sizes[line.sku] for line in contents]
        dimensions = Dimensions(
            length_mm=max(item.length_mm for item in items),
            width_mm=max(item.width_mm for item in items),
            height_mm=sum(unit_sizes[line.sku].height_mm * line.quantity for line in contents),
        )
    return Package(weight_grams=weight_grams, dimensions=dimensions)


def _known(
    contents: Sequence[ShipmentLine],
    variants: Mapping[str, VariantSpec],
    what: str,
    read: Callable[[VariantSpec], _T | None],
) -> dict[str, _T]:
    """Per sku, what `read` finds in the catalog; all skus lacking it are named at once."""
    known: dict[str, _T] = {}
    missing: list[str] = []
    for line in contents:
        spec = variants.get(line.sku)
        value = read(spec) if spec else None
        if value is None:
            missing.append(line.sku)
        else:
            known[line.sku] = value
    if missing:
        raise PackingError(
            f"The catalog has no {what} for {', '.join(sorted(set(missing)))}; "
            f"enter the package's {what} as measured."
        )
    return known
