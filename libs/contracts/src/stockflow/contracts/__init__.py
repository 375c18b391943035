"""stockflow's public event contract: CloudEvents over Kafka, pydantic v2 models per type."""

from stockflow.contracts.base import EVENT_TYPES, TOPICS, Event, Topic, dlq_topic, register
from stockflow.contracts.cloudevents import (
    CloudEvent,
    InvalidMessage,
    KafkaRecord,
    decode,
    encode,
    new_event_id,
    parse,
)

__all__ = [
    "EVENT_TYPES",
    "TOPICS",
    "CloudEvent",
    "Event",
    "InvalidMessage",
    "KafkaRecord",
    "Topic",
    "decode",
    "dlq_topic",
    "encode",
    "events",
    "new_event_id",
    "parse",
    "register",
]

# Last, so that every model is registered in EVENT_TYPES whenever the package is imported.
from stockflow.contracts import events
