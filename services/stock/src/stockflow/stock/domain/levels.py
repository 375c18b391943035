"""Stock levels per (sku, location) and the movements that change them.

Every change of a level is one `Movement`; `apply` knows what each kind does to each bucket and
refuses any movement that would take a bucket, or what is available, below zero. Replaying the
ledger from empty levels gives today's levels.

Effects (q is the movement's quantity):

    receipt, return_restock       on_hand +q
    adjustment (signed, reason)   on_hand +q
    transfer_out                  source on_hand -q; destination incoming +q (in transit)
    transfer_in                   incoming -q, on_hand +q
    reservation                   reserved +q
    release                       reserved -q
    shipment                      on_hand -q, reserved -q
    write_off                     on_hand -q, damaged -q   (mark units damaged first)
    to_damaged, from_damaged      damaged +q, -q
    to_/from_quality_control      quality_control +q, -q
    safety_stock_set (signed)     safety_stock +q
    backorder_opened              backordered +q
    backorder_allocated           backordered -q, reserved +q
    backorder_cancelled           backordered -q   (the order let go of it)
    return_written_off            nothing          (returned units, written off on arrival:
                                                    the ledger explains them, stock is unchanged)
    incoming_announced            incoming +q      (a supplier receipt announced, POST /incoming)
    incoming_closed               incoming -q      (that receipt arrived: its announcement closes)

Kinds and their values match the `stock.movements.v1` contract. Only `adjustment` and
`safety_stock_set` are signed; every other kind carries a positive quantity.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from enum import StrEnum

from stockflow.stock.domain.errors import InsufficientStock

LevelKey = tuple[str, str]
"""(sku, location)."""


@dataclass(frozen=True)
class Level:
    """The stock of one sku at one location; every bucket is a count of units, never negative.

    ``on_hand`` counts every unit physically there, including damaged, in quality control and
    held as safety stock; ``incoming`` counts units in transit towards this location.
    """

    sku: str
    location: str
    on_hand: int = 0
    reserved: int = 0
    damaged: int = 0
    quality_control: int = 0
    safety_stock: int = 0
    incoming: int = 0
    backordered: int = 0

    def __post_init__(self) -> None:
        negative = [name for name in BUCKETS if getattr(self, name) < 0]
        if negative:
            raise ValueError(f"{self.key}: negative {', '.join(negative)}")
        if self.available < 0:
            raise ValueError(f"{self.key}: available would be {self.available}")

    @property
    def key(self) -> LevelKey:
        """(sku, location) — the level's identity."""
        return (self.sku, self.location)

    @property
    def available(self) -> int:
        """Units that can still be sold (see `available_from`)."""
        return available_from(self.__dict__)


BUCKETS = tuple(f.name for f in fields(Level) if f.name not in ("sku", "location"))


def available_from(buckets: Mapping[str, int]) -> int:
    """Units that can still be sold: on hand minus reserved and the non-sellable states.

    The one formula of the domain; the levels table's generated column `available`
    (migration 0005) is the same, and a test against PostgreSQL checks that they agree.
    """
    return (
        buckets["on_hand"]
        - buckets["reserved"]
        - buckets["damaged"]
        - buckets["quality_control"]
        - buckets["safety_stock"]
    )


class MovementKind(StrEnum):
    """What a ledger entry did; values are the contract's `kind` strings."""

    RECEIPT = "receipt"
    ADJUSTMENT = "adjustment"
    TRANSFER_OUT = "transfer_out"
    TRANSFER_IN = "transfer_in"
    RESERVATION = "reservation"
    RELEASE = "release"
    SHIPMENT = "shipment"
    RETURN_RESTOCK = "return_restock"
    WRITE_OFF = "write_off"
    TO_DAMAGED = "to_damaged"
    FROM_DAMAGED = "from_damaged"
    TO_QUALITY_CONTROL = "to_quality_control"
    FROM_QUALITY_CONTROL = "from_quality_control"
    SAFETY_STOCK_SET = "safety_stock_set"
    BACKORDER_OPENED = "backorder_opened"
    BACKORDER_ALLOCATED = "backorder_allocated"
    BACKORDER_CANCELLED = "backorder_cancelled"
    RETURN_WRITTEN_OFF = "return_written_off"
    INCOMING_ANNOUNCED = "incoming_announced"
    INCOMING_CLOSED = "incoming_closed"


SIGNED_KINDS = frozenset({MovementKind.ADJUSTMENT, MovementKind.SAFETY_STOCK_SET})

_EFFECTS: Mapping[MovementKind, Mapping[str, int]] = {
    MovementKind.RECEIPT: {"on_hand": 1},
    MovementKind.ADJUSTMENT: {"on_hand": 1},
    MovementKind.TRANSFER_OUT: {"on_hand": -1},
    MovementKind.TRANSFER_IN: {"incoming": -1, "on_hand": 1},
    MovementKind.RESERVATION: {"reserved": 1},
    MovementKind.RELEASE: {"reserved": -1},
    MovementKind.SHIPMENT: {"on_hand": -1, "reserved": -1},
    MovementKind.RETURN_RESTOCK: {"on_hand": 1},
    MovementKind.WRITE_OFF: {"on_hand": -1, "damaged": -1},
    MovementKind.TO_DAMAGED: {"damaged": 1},
    MovementKind.FROM_DAMAGED: {"damaged": -1},
    MovementKind.TO_QUALITY_CONTROL: {"quality_control": 1},
    MovementKind.FROM_QUALITY_CONTROL: {"quality_control": -1},
    MovementKind.SAFETY_STOCK_SET: {"safety_stock": 1},
    MovementKind.BACKORDER_OPENED: {"backordered": 1},
    MovementKind.BACKORDER_ALLOCATED: {"backordered": -1, "reserved": 1},
    MovementKind.BACKORDER_CANCELLED: {"backordered": -1},
    MovementKind.RETURN_WRITTEN_OFF: {},
    MovementKind.INCOMING_ANNOUNCED: {"incoming": 1},
    MovementKind.INCOMING_CLOSED: {"incoming": -1},
}
_IN_TRANSIT_AT_DESTINATION: Mapping[str, int] = {"incoming": 1}


@dataclass(frozen=True)
class Movement:
    """One ledger entry: what happened to how many units of a sku at a location.

    ``destination`` is required for (and only allowed on) ``transfer_out``; ``reason`` is
    required for ``adjustment``; ``reference`` names the order, receipt, count or shipment;
    ``bundle`` (a shipment only) names the bundle a shipped component was sold in.
    """

    kind: MovementKind
    sku: str
    location: str
    quantity: int
    reason: str | None = None
    reference: str | None = None
    destination: str | None = None
    bundle: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.quantity, bool) or not isinstance(self.quantity, int):
            raise ValueError("quantity must be an integer")
        if self.kind in SIGNED_KINDS:
            if self.quantity == 0:
                raise ValueError(f"{self.kind} quantity must not be zero")
        elif self.quantity <= 0:
            raise ValueError(f"{self.kind} quantity must be positive")
        if self.kind is MovementKind.ADJUSTMENT and not self.reason:
            raise ValueError("an adjustment needs a reason")
        if self.kind is MovementKind.TRANSFER_OUT:
            if not self.destination or self.destination == self.location:
                raise ValueError("transfer_out needs a destination other than its location")
        elif self.destination is not None:
            raise ValueError("only transfer_out has a destination")
        if self.bundle is not None and self.kind is not MovementKind.SHIPMENT:
            raise ValueError("only a shipment names the bundle it was sold in")

    @property
    def level_keys(self) -> tuple[LevelKey, ...]:
        """Every (sku, location) this movement changes: two for transfer_out, else one."""
        if self.destination is None:
            return ((self.sku, self.location),)
        return ((self.sku, self.location), (self.sku, self.destination))


def apply(level: Level, movement: Movement) -> Level:
    """Return `level` after `movement`.

    Args:
        level: the current level of one of ``movement.level_keys`` (a transfer_out changes its
            source and, as in-transit stock, its destination).
        movement: the change to apply.

    Raises:
        InsufficientStock: a bucket, or what is available, would fall below zero.
        ValueError: the movement does not concern this level.
    """
    if level.key == (movement.sku, movement.location):
        effect = _EFFECTS[movement.kind]
    elif movement.destination is not None and level.key == (movement.sku, movement.destination):
        effect = _IN_TRANSIT_AT_DESTINATION
    else:
        raise ValueError(f"{movement.kind} of {movement.sku} does not change level {level.key}")

    changed = {
        bucket: getattr(level, bucket) + sign * movement.quantity for bucket, sign in effect.items()
    }
    for bucket, value in changed.items():
        if value < 0:
            have = getattr(level, bucket)
            raise InsufficientStock(level.sku, level.location, bucket, have, have - value)
    values = {bucket: getattr(level, bucket) for bucket in BUCKETS} | changed
    available_after = available_from(values)
    if available_after < 0:
        wanted = level.available - available_after
        raise InsufficientStock(level.sku, level.location, "available", level.available, wanted)
    return replace(level, **changed)


def apply_to(levels: Mapping[LevelKey, Level], movement: Movement) -> dict[LevelKey, Level]:
    """Return the new level of every (sku, location) `movement` changes, all or nothing.

    Levels missing from `levels` start empty. Raises like `apply` before anything is returned,
    so a transfer never debits its source without crediting its destination.
    """
    return {key: apply(levels.get(key) or Level(*key), movement) for key in movement.level_keys}


def replay(movements: Iterable[Movement], initial: Iterable[Level] = ()) -> dict[LevelKey, Level]:
    """Apply `movements` in order, from `initial` levels (empty by default), and return them all.

    Raises `InsufficientStock` at the first movement the levels could not have allowed.
    """
    levels = {level.key: level for level in initial}
    for movement in movements:
        levels |= apply_to(levels, movement)
    return levels
