"""Export the contract: one JSON Schema per event type and an AsyncAPI 3.0 document.

python -m stockflow.contracts.export DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic.json_schema import models_json_schema

from stockflow.contracts.base import EVENT_TYPES, TOPICS, Event
from stockflow.contracts.cloudevents import JSON, SPEC_VERSION

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

# Who sends and who receives each topic (DESIGN.md, "Services"). A topic's owner in TOPICS owns
# its schema; stock.commands.v1 is owned by stock but sent by the order saga.
SENDERS: dict[str, tuple[str, ...]] = {
    "checkout.orders.v1": ("checkout",),
    "warehouse.receipts.v1": ("warehouse",),
    "catalog.products.v1": ("catalog",),
    "stock.commands.v1": ("order",),
    "stock.events.v1": ("stock",),
    "stock.levels.v1": ("stock",),
    "stock.movements.v1": ("stock",),
    "stock.alerts.v1": ("stock",),
    "orders.events.v1": ("order",),
    "fulfillment.events.v1": ("fulfillment",),
    "accounting.journal.v1": ("accounting",),
}
RECEIVERS: dict[str, tuple[str, ...]] = {
    "checkout.orders.v1": ("order",),
    "warehouse.receipts.v1": ("stock",),
    "catalog.products.v1": ("stock",),
    "stock.commands.v1": ("stock",),
    "stock.events.v1": ("order", "fulfillment"),
    "fulfillment.events.v1": ("stock", "order", "accounting"),
    "orders.events.v1": ("fulfillment", "accounting"),
    "stock.movements.v1": ("accounting",),
}
DLQ_SENDERS = {
    "catalog": "catalog",
    "stock": "stock",
    "orders": "order",
    "fulfillment": "fulfillment",
    "accounting": "accounting",
}

CLOUDEVENTS_HEADERS: dict[str, Any] = {
    "type": "object",
    "title": "CloudEventsKafkaHeaders",
    "description": "CloudEvents 1.0 attributes in binary content mode (Kafka protocol binding).",
    "properties": {
        "ce_specversion": {"type": "string", "const": SPEC_VERSION},
        "ce_id": {"type": "string", "minLength": 1, "description": "Unique event id (UUID)."},
        "ce_source": {"type": "string", "minLength": 1, "description": "Producing service."},
        "ce_type": {"type": "string", "description": "<domain>.<entity>.<event>.v<N>"},
        "ce_time": {"type": "string", "format": "date-time", "description": "RFC 3339, UTC."},
        "ce_subject": {"type": "string", "description": "The Kafka key (order_id, sku, ...)."},
        "content-type": {"type": "string", "const": JSON},
        "traceparent": {
            "type": "string",
            "pattern": "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$",
            "description": "W3C trace context.",
        },
    },
    "required": ["ce_specversion", "ce_id", "ce_source", "ce_type", "content-type"],
}


def _sorted_models() -> list[type[Event]]:
    return [EVENT_TYPES[name] for name in sorted(EVENT_TYPES)]


def event_schema(model: type[Event]) -> dict[str, Any]:
    """A standalone JSON Schema (draft 2020-12) of one event type's `data`."""
    schema = model.model_json_schema(mode="validation")
    return {
        "$schema": SCHEMA_DIALECT,
        "$id": f"urn:stockflow:event:{model.event_type}",
        **schema,
        "title": model.__name__,
        "description": _doc(model),
        "x-event-type": model.event_type,
        "x-topic": model.topic,
        "x-key": model.key_field,
    }


def _doc(model: type) -> str:
    return (model.__doc__ or "").strip().splitlines()[0] if model.__doc__ else ""


def _channel_id(topic: str) -> str:
    return topic.replace(".", "_")


def asyncapi_document() -> dict[str, Any]:
    """The AsyncAPI 3.0 document: every topic, every event type, who sends and receives."""
    models = _sorted_models()
    _, definitions = models_json_schema(
        [(model, "validation") for model in models],
        ref_template="#/components/schemas/{model}",
    )
    schemas: dict[str, Any] = dict(definitions.get("$defs", {}))
    schemas["CloudEventsHeaders"] = CLOUDEVENTS_HEADERS

    messages: dict[str, Any] = {}
    for model in models:
        messages[model.__name__] = {
            "name": model.event_type,
            "title": model.__name__,
            "summary": _doc(model),
            "contentType": JSON,
            "headers": {
                "allOf": [
                    {"$ref": "#/components/schemas/CloudEventsHeaders"},
                    {"properties": {"ce_type": {"const": model.event_type}}},
                ]
            },
            "payload": {"$ref": f"#/components/schemas/{model.__name__}"},
            "bindings": {
                "kafka": {
                    "key": {"type": "string", "description": f"the event's {model.key_field}"},
                    "bindingVersion": "0.5.0",
                }
            },
        }
    messages["DeadLetter"] = {
        "name": "dead-letter",
        "title": "DeadLetter",
        "summary": "A record that could not be processed: original bytes, headers and reason.",
        "payload": {"description": "The original record value, byte for byte."},
    }

    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for topic in TOPICS.values():
        channel_id = _channel_id(topic.name)
        is_dlq = topic.name.endswith(".dlq.v1")
        names = ["DeadLetter"] if is_dlq else [m.__name__ for m in models if m.topic == topic.name]
        topic_config: dict[str, Any] = {
            "cleanup.policy": ["compact" if topic.compacted else "delete"]
        }
        channels[channel_id] = {
            "address": topic.name,
            "title": topic.name,
            "description": f"{topic.description} Key: {topic.key}.",
            "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in names},
            "bindings": {
                "kafka": {
                    "topic": topic.name,
                    "partitions": topic.partitions,
                    "topicConfiguration": topic_config,
                    "bindingVersion": "0.5.0",
                }
            },
            "x-owner": topic.owner,
            "x-key": topic.key,
        }
        refs = [{"$ref": f"#/channels/{channel_id}/messages/{name}"} for name in names]
        senders = (
            (DLQ_SENDERS[topic.name.split(".")[0]],) if is_dlq else SENDERS.get(topic.name, ())
        )
        for action, services in (("send", senders), ("receive", RECEIVERS.get(topic.name, ()))):
            for service in services:
                operations[f"{service}_{action}_{channel_id}"] = {
                    "action": action,
                    "channel": {"$ref": f"#/channels/{channel_id}"},
                    "title": f"{service} {action}s {topic.name}",
                    "messages": refs,
                    "x-service": service,
                }

    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "stockflow events",
            "version": "1.0.0",
            "description": (
                "CloudEvents 1.0 over Kafka in binary content mode: ce_* headers, "
                "`content-type: application/json`, W3C traceparent, the JSON data as the value. "
                "Inputs are also accepted in structured mode (application/cloudevents+json). "
                "Money is a decimal string with an ISO 4217 currency; quantities are integers; "
                "times are RFC 3339 UTC. Unknown fields are ignored on read."
            ),
        },
        "defaultContentType": JSON,
        "channels": channels,
        "operations": operations,
        "components": {"schemas": schemas, "messages": messages},
    }


def _write(path: Path, document: dict[str, Any]) -> None:
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def export_schemas(directory: str | Path) -> list[Path]:
    """Write `<type>.json` for every event type and `asyncapi.json`; return the paths written."""
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for model in _sorted_models():
        path = target / f"{model.event_type}.json"
        _write(path, event_schema(model))
        written.append(path)
    path = target / "asyncapi.json"
    _write(path, asyncapi_document())
    written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] in ("-h", "--help"):
        print("usage: python -m stockflow.contracts.export DIR", file=sys.stderr)
        return 2
    written = export_schemas(args[0])
    print(f"wrote {len(written)} files to {args[0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
