"""CloudEvents 1.0 over Kafka.

stockflow publishes in binary content mode: ce_* headers, `content-type: application/json`,
W3C `traceparent`, the JSON `data` as the value. Inputs are accepted in binary mode and in
structured mode (`content-type: application/cloudevents+json`, one JSON object holding the
attributes and `data`).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pydantic import ValidationError

from stockflow.contracts.base import EVENT_TYPES, Event

SPEC_VERSION = "1.0"
JSON = "application/json"
STRUCTURED = "application/cloudevents+json"
MAX_VALUE_BYTES = 1_048_576

Headers = Sequence[tuple[str, bytes]]


class InvalidMessage(Exception):
    """A message that can never be processed: it belongs on the dead-letter topic."""

    def __init__(self, reason: str, *, event: CloudEvent | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.event = event


@dataclass(frozen=True)
class CloudEvent:
    """The attributes of an incoming event and its still-unvalidated data."""

    id: str
    source: str
    type: str
    time: datetime | None
    subject: str | None
    data: bytes | dict
    traceparent: str | None = None
    extensions: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class KafkaRecord:
    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]


def new_event_id() -> str:
    return str(uuid.uuid4())


def new_traceparent(parent: str | None = None) -> str:
    """A W3C traceparent continuing `parent`'s trace (a new span), or a new trace."""
    trace_id = None
    if parent:
        parts = parent.split("-")
        if len(parts) == 4 and len(parts[1]) == 32:
            trace_id = parts[1]
    return f"00-{trace_id or os.urandom(16).hex()}-{os.urandom(8).hex()}-01"


def encode(
    event: Event,
    *,
    source: str,
    event_id: str | None = None,
    time: datetime | None = None,
    traceparent: str | None = None,
    subject: str | None = None,
) -> KafkaRecord:
    """Binary content mode: attributes in ce_* headers, the JSON data as the value."""
    moment = (time or datetime.now(UTC)).astimezone(UTC)
    headers = [
        ("ce_specversion", SPEC_VERSION.encode()),
        ("ce_id", (event_id or new_event_id()).encode()),
        ("ce_source", source.encode()),
        ("ce_type", event.event_type.encode()),
        ("ce_time", moment.isoformat().replace("+00:00", "Z").encode()),
        ("ce_subject", (subject or event.key()).encode()),
        ("content-type", JSON.encode()),
        ("traceparent", (traceparent or new_traceparent()).encode()),
    ]
    return KafkaRecord(event.topic, event.key().encode(), event.model_dump_json().encode(), headers)


def _header_map(headers: Headers | None) -> dict[str, str]:
    result: dict[str, str] = {}
    for name, raw in headers or ():
        if raw is None:  # Kafka allows a header without a value; treat it as absent
            continue
        try:
            result[name.lower()] = raw.decode() if isinstance(raw, bytes) else str(raw)
        except UnicodeDecodeError as exc:
            raise InvalidMessage(f"header {name} is not UTF-8") from exc
    return result


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidMessage(f"ce time {text!r} is not RFC 3339") from exc
    if moment.tzinfo is None:
        raise InvalidMessage(f"ce time {text!r} has no offset")
    return moment.astimezone(UTC)


def decode(value: bytes | None, headers: Headers | None) -> CloudEvent:
    """Read a Kafka record in either content mode; raise InvalidMessage when it is not one."""
    if value is None:
        raise InvalidMessage("empty value (tombstone) where an event was expected")
    if len(value) > MAX_VALUE_BYTES:
        raise InvalidMessage(f"value of {len(value)} bytes exceeds {MAX_VALUE_BYTES}")
    attrs = _header_map(headers)
    content_type = attrs.get("content-type", "")
    # Structured when declared so, or when a JSON object arrives with no CloudEvents header and
    # no binary-mode content type; a binary record that lost its ce_* headers is reported as such.
    looks_structured = (
        not content_type.startswith(JSON)
        and not any(name.startswith("ce_") for name in attrs)
        and value.lstrip()[:1] == b"{"
    )
    if content_type.startswith(STRUCTURED) or looks_structured:
        return _decode_structured(value, attrs)
    missing = [h for h in ("ce_id", "ce_type", "ce_source", "ce_specversion") if not attrs.get(h)]
    if missing:
        raise InvalidMessage(f"not a CloudEvent: missing header(s) {', '.join(missing)}")
    if attrs["ce_specversion"] != SPEC_VERSION:
        raise InvalidMessage(f"unsupported CloudEvents specversion {attrs['ce_specversion']}")
    extensions = {
        k[3:]: v
        for k, v in attrs.items()
        if k.startswith("ce_")
        and k[3:] not in ("id", "type", "source", "specversion", "time", "subject")
    }
    return CloudEvent(
        id=attrs["ce_id"],
        source=attrs["ce_source"],
        type=attrs["ce_type"],
        time=_parse_time(attrs.get("ce_time")),
        subject=attrs.get("ce_subject"),
        data=value,
        traceparent=attrs.get("traceparent"),
        extensions=extensions,
    )


def _decode_structured(value: bytes, attrs: dict[str, str]) -> CloudEvent:
    try:
        envelope = json.loads(value)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidMessage(f"structured CloudEvent is not JSON: {exc}") from exc
    if not isinstance(envelope, dict):
        raise InvalidMessage("structured CloudEvent is not a JSON object")
    missing = [a for a in ("id", "type", "source", "specversion") if not envelope.get(a)]
    if missing:
        raise InvalidMessage(f"not a CloudEvent: missing attribute(s) {', '.join(missing)}")
    if envelope["specversion"] != SPEC_VERSION:
        raise InvalidMessage(f"unsupported CloudEvents specversion {envelope['specversion']}")
    data = envelope.get("data")
    if not isinstance(data, dict):
        raise InvalidMessage("structured CloudEvent has no JSON object in `data`")
    for attr in ("id", "type", "source"):
        if not isinstance(envelope[attr], str):
            raise InvalidMessage(f"CloudEvent attribute {attr} must be a string")
    return CloudEvent(
        id=envelope["id"],
        source=envelope["source"],
        type=envelope["type"],
        time=_parse_time(envelope.get("time")),
        subject=envelope.get("subject"),
        data=data,
        traceparent=envelope.get("traceparent") or attrs.get("traceparent"),
    )


def parse(event: CloudEvent, expected: type[Event] | None = None) -> Event:
    """Validate a CloudEvent's data against the model registered for its type."""
    model = expected or EVENT_TYPES.get(event.type)
    if model is None:
        raise InvalidMessage(f"unknown event type {event.type!r}", event=event)
    try:
        if isinstance(event.data, bytes):
            return model.model_validate_json(event.data)
        return model.model_validate(event.data)
    except ValidationError as exc:
        raise InvalidMessage(describe_validation_error(exc), event=event) from exc


def describe_validation_error(exc: ValidationError) -> str:
    """`field.path: message; ...` — names the fields at fault, never echoes whole payloads."""
    parts = []
    for error in exc.errors(include_url=False, include_input=False)[:10]:
        location = ".".join(str(part) for part in error["loc"]) or "(root)"
        parts.append(f"{location}: {error['msg']}")
    return "invalid data: " + "; ".join(parts)
