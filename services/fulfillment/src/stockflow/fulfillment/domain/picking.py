"""Pick lists: what to take from which bin, in the order a picker walks the aisles.

Bin codes are aisle-rack-level, e.g. "A-03-2" or "12-7-1". The walk is serpentine: the picker
goes up odd aisles (A, C, … or 1, 3, …) with racks ascending and comes back down even aisles
with racks descending, so consecutive aisles are entered at the end where the last one was
left and each aisle is walked once. Within a rack, levels go bottom up. Numbers compare as
numbers ("A-10" after "A-9"); letter aisles count A=1 … Z=26, AA=27. Bins that do not follow
the pattern come after the walk in natural order, and lines without a known bin come last.

A batch list picks several shipments of one location in one walk: units of one sku are
merged into one line, and each line says which shipment and order line gets how many units.
Found units are handed out in the order the shipments were given (put the oldest first).

A bundle is not in any bin: its components are. A bundle line is picked as its components
(component quantity times bundle units, each from its own bin) while the shipment keeps the bundle
line; the line counts as many bundle units picked as its scarcest component makes whole.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stockflow.fulfillment.domain.errors import InvalidPick
from stockflow.fulfillment.domain.shipment import Shipment, ShipmentStatus

_BIN_PATTERN = re.compile(r"^([A-Z]+|\d+)-(\d+)-(\d+)$", re.IGNORECASE)
_NATURAL_CHUNKS = re.compile(r"(\d+)")

# A walk key: (section, aisle, rack in walking direction, level, natural key of the code).
# Sections: 0 = pattern bins in walk order, 1 = other codes, 2 = no bin.
_WalkKey = tuple[int, int, int, int, tuple[tuple[int, int, str], ...]]


def bin_walk_key(bin_code: str | None) -> _WalkKey:
    """Sort key placing bins in serpentine walking order (see the module docstring)."""
    if bin_code is None:
        return (2, 0, 0, 0, ())
    natural = _natural_key(bin_code)
    match = _BIN_PATTERN.fullmatch(bin_code.strip())
    if match is None:
        return (1, 0, 0, 0, natural)
    aisle_code, rack, level = match.groups()
    aisle = _aisle_number(aisle_code)
    rack_in_walk = int(rack) if aisle % 2 == 1 else -int(rack)
    return (0, aisle, rack_in_walk, int(level), natural)


def _aisle_number(code: str) -> int:
    if code.isdigit():
        return int(code)
    number = 0
    for letter in code.upper():
        number = number * 26 + ord(letter) - ord("A") + 1
    return number


def _natural_key(text: str) -> tuple[tuple[int, int, str], ...]:
    return tuple(
        (0, int(chunk), "") if chunk.isdigit() else (1, 0, chunk.upper())
        for chunk in _NATURAL_CHUNKS.split(text)
        if chunk
    )


@dataclass(frozen=True)
class BundlePart:
    """`quantity` units of `sku` go into one unit of a bundle."""

    sku: str
    quantity: int


@dataclass(frozen=True)
class PickAssignment:
    """Units of a pick list line that belong to one shipment's order line.

    `per_unit` is how many of these units make one unit of the order line: a bundle
    component's quantity, 1 for a line picked as itself.
    """

    shipment_id: str
    line_id: str
    quantity: int
    per_unit: int = 1

    def line_units(self, given: int) -> int:
        """Whole units of the order line that `given` picked units of this sku make."""
        return given // self.per_unit


@dataclass(frozen=True)
class PickListLine:
    """Take `quantity` units of `sku` from `bin` (None: the bin is unknown, ask a supervisor)."""

    bin: str | None
    sku: str
    quantity: int
    assignments: tuple[PickAssignment, ...]


@dataclass(frozen=True)
class StockDiscrepancy:
    """A bin held fewer units than the system expected: stock should count and correct it."""

    sku: str
    location: str
    bin: str | None
    expected: int
    found: int


@dataclass(frozen=True)
class PickConfirmation:
    """A confirmed pick list: units picked per shipment and order line, and the short bins."""

    picked: Mapping[str, Mapping[str, int]]
    """shipment_id → line_id → units picked; feed each to `Shipment.record_picks`."""
    discrepancies: tuple[StockDiscrepancy, ...]


@dataclass(frozen=True)
class PickList:
    """A walk through one location for one or more shipments."""

    location: str
    shipment_ids: tuple[str, ...]
    lines: tuple[PickListLine, ...]

    def to_dict(self) -> dict[str, Any]:
        """The list as JSON-able data, lines in walking order."""
        return {
            "location": self.location,
            "shipment_ids": list(self.shipment_ids),
            "lines": [
                {
                    "bin": line.bin,
                    "sku": line.sku,
                    "quantity": line.quantity,
                    "assignments": [
                        {
                            "shipment_id": a.shipment_id,
                            "line_id": a.line_id,
                            "quantity": a.quantity,
                            "per_unit": a.per_unit,
                        }
                        for a in line.assignments
                    ],
                }
                for line in self.lines
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PickList:
        return cls(
            location=data["location"],
            shipment_ids=tuple(data["shipment_ids"]),
            lines=tuple(
                PickListLine(
                    bin=line["bin"],
                    sku=line["sku"],
                    quantity=line["quantity"],
                    assignments=tuple(
                        PickAssignment(
                            a["shipment_id"], a["line_id"], a["quantity"], a.get("per_unit", 1)
                        )
                        for a in line["assignments"]
                    ),
                )
                for line in data["lines"]
            ),
        )

    def confirm(self, found: Mapping[str, int]) -> PickConfirmation:
        """Turn the units found per sku into picks per shipment, reporting every short bin.

        A short line yields a `StockDiscrepancy` and the shipments that miss units go on hold
        when their picks are recorded; nothing ships less without someone deciding it.
        """
        for sku in found.keys() - {line.sku for line in self.lines}:
            raise InvalidPick(f"{sku} is not on the pick list for {self.location}.")
        picked: dict[str, dict[str, int]] = {shipment_id: {} for shipment_id in self.shipment_ids}
        discrepancies: list[StockDiscrepancy] = []
        for line in self.lines:
            count = found.get(line.sku)
            if count is None:
                raise InvalidPick(
                    f"Enter how many units of {line.sku} were found in {_bin_name(line.bin)}."
                )
            if not 0 <= count <= line.quantity:
                raise InvalidPick(
                    f"The list asks for {line.quantity} × {line.sku} from {_bin_name(line.bin)}; "
                    f"a pick of {count} is not possible."
                )
            if count < line.quantity:
                discrepancies.append(
                    StockDiscrepancy(
                        sku=line.sku,
                        location=self.location,
                        bin=line.bin,
                        expected=line.quantity,
                        found=count,
                    )
                )
            _hand_out(line, count, picked)
        return PickConfirmation(picked=picked, discrepancies=tuple(discrepancies))


def _hand_out(line: PickListLine, count: int, picked: dict[str, dict[str, int]]) -> None:
    """Give `count` found units to the line's assignments in order; a bundle line keeps the
    fewest whole units any of its components makes."""
    remaining = count
    for assignment in line.assignments:
        given = min(remaining, assignment.quantity)
        remaining -= given
        units = assignment.line_units(given)
        so_far = picked[assignment.shipment_id].get(assignment.line_id, units)
        picked[assignment.shipment_id][assignment.line_id] = min(so_far, units)


def build_pick_list(
    shipments: Sequence[Shipment],
    bins: Mapping[str, str],
    bundles: Mapping[str, Sequence[BundlePart]] | None = None,
) -> PickList:
    """One walk for `shipments` (all at one location, not yet picked), `bins` mapping sku → bin,
    `bundles` mapping a bundle sku → its parts (picked instead of the bundle).

    Shipments are served in the order given when a bin runs short.
    """
    if not shipments:
        raise InvalidPick("Choose at least one shipment to pick.")
    locations = {shipment.location for shipment in shipments}
    if len(locations) > 1:
        raise InvalidPick(
            "A pick list covers one location; these shipments are at "
            f"{', '.join(sorted(locations))}."
        )
    shipment_ids = [shipment.shipment_id for shipment in shipments]
    if len(set(shipment_ids)) < len(shipment_ids):
        raise InvalidPick("A shipment appears twice in the batch.")
    assignments: dict[str, list[PickAssignment]] = {}
    for shipment in shipments:
        if shipment.status not in (ShipmentStatus.CREATED, ShipmentStatus.PICKING):
            raise InvalidPick(
                f"Shipment {shipment.shipment_id} is {shipment.status}; it has nothing to pick."
            )
        for line in shipment.lines:
            parts = (bundles or {}).get(line.sku) or (BundlePart(line.sku, 1),)
            for part in parts:
                assignments.setdefault(part.sku, []).append(
                    PickAssignment(
                        shipment.shipment_id,
                        line.line_id,
                        line.quantity * part.quantity,
                        part.quantity,
                    )
                )
    lines = [
        PickListLine(
            bin=bins.get(sku),
            sku=sku,
            quantity=sum(assignment.quantity for assignment in for_sku),
            assignments=tuple(for_sku),
        )
        for sku, for_sku in assignments.items()
    ]
    lines.sort(key=lambda line: (bin_walk_key(line.bin), line.sku))
    return PickList(
        location=locations.pop(),
        shipment_ids=tuple(shipment_ids),
        lines=tuple(lines),
    )


def _bin_name(bin_code: str | None) -> str:
    return f"bin {bin_code}" if bin_code else "its bin (none on record)"
