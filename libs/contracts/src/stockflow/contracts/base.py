"""The base of every event model, the topic catalogue and the registry from type to model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict

# No identifier, SKU or location code may contain it, so a composite key reads back unambiguously.
KEY_SEPARATOR = "@"


def key_fields(key_field: str) -> list[str]:
    """The fields a key is made of: `sku@location` -> ["sku", "location"]."""
    return key_field.split(KEY_SEPARATOR)


class Event(BaseModel):
    """An event's `data`. Subclasses name their CloudEvents type, topic and key field.

    Unknown fields are ignored on read so that a newer producer never breaks an older consumer.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    event_type: ClassVar[str]
    topic: ClassVar[str]
    key_field: ClassVar[str]  # a field, or fields joined by KEY_SEPARATOR (`sku@location`)

    def key(self) -> str:
        """The Kafka key: everything that must stay in order shares it."""
        return KEY_SEPARATOR.join(str(getattr(self, f)) for f in key_fields(self.key_field))


@dataclass(frozen=True)
class Topic:
    name: str
    owner: str
    key: str
    description: str
    compacted: bool = False
    partitions: int = 6


TOPICS: dict[str, Topic] = {
    t.name: t
    for t in [
        Topic(
            "checkout.orders.v1",
            "checkout (upstream)",
            "order_id",
            "Orders, cancellations and payments from the upstream checkout.",
        ),
        Topic(
            "warehouse.receipts.v1",
            "warehouse (upstream)",
            "sku",
            "Goods received at a location, with unit cost.",
        ),
        Topic(
            "catalog.products.v1",
            "catalog",
            "sku",
            "Full state of every variant; compacted so a reader can rebuild from the start.",
            compacted=True,
        ),
        Topic(
            "stock.commands.v1",
            "stock",
            "order_id",
            "Commands to the stock service (reserve, release) from the order saga.",
        ),
        Topic(
            "stock.events.v1",
            "stock",
            "order_id",
            "Replies to stock commands and backorder allocations.",
        ),
        Topic(
            "stock.levels.v1",
            "stock",
            "sku@location",
            "Live availability per sku and location; compacted, one key per level.",
            compacted=True,
        ),
        Topic("stock.movements.v1", "stock", "sku", "Every movement of the stock ledger."),
        Topic(
            "stock.alerts.v1",
            "stock",
            "sku",
            "Low-stock, out-of-stock, reorder suggestions and invariant alerts.",
        ),
        Topic("orders.events.v1", "order", "order_id", "The life of every order."),
        Topic(
            "fulfillment.events.v1",
            "fulfillment",
            "order_id",
            "Shipments, tracking, returns and stock discrepancies.",
        ),
        Topic(
            "accounting.journal.v1",
            "accounting",
            "entry_id",
            "Posted journal entries for an ERP or general ledger.",
        ),
        Topic(
            "ops.audit.v1",
            "ops",
            "dlq position (<dlq topic>/<partition>/<offset>)",
            "What operators did to the system (DLQ replays): who, when, what; never compacted.",
            partitions=1,
        ),
        *(
            Topic(
                f"{schema}.dlq.v1",
                schema,
                "original key",
                f"Dead letters of the {schema} service: original bytes, headers and reason.",
                partitions=1,
            )
            for schema in ("catalog", "stock", "orders", "fulfillment", "accounting")
        ),
    ]
}

EVENT_TYPES: dict[str, type[Event]] = {}
E = TypeVar("E", bound=type[Event])


def register(model: E) -> E:
    """Class decorator: make a model decodable by its CloudEvents type."""
    if model.topic not in TOPICS:
        raise ValueError(f"{model.__name__}: unknown topic {model.topic}")
    if model.event_type in EVENT_TYPES:
        raise ValueError(f"{model.event_type} registered twice")
    EVENT_TYPES[model.event_type] = model
    return model


def dlq_topic(schema: str) -> str:
    """The dead-letter topic of a service's schema (catalog, stock, orders, ...)."""
    return f"{schema}.dlq.v1"
