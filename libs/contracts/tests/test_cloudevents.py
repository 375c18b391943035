"""CloudEvents over Kafka: binary publish, binary and structured input, clear refusals."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from stockflow.contracts import EVENT_TYPES, InvalidMessage, decode, encode, parse
from stockflow.contracts.base import key_fields
from stockflow.contracts.cloudevents import MAX_VALUE_BYTES, STRUCTURED

MOMENT = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
Examples = dict[str, dict[str, Any]]


def _binary(event_type: str, data: Any, **skip: bool) -> tuple[bytes, list[tuple[str, bytes]]]:
    headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", b"evt-1"),
        ("ce_source", b"test"),
        ("ce_type", event_type.encode()),
        ("ce_time", b"2024-05-01T12:00:00Z"),
        ("content-type", b"application/json"),
    ]
    headers = [(name, value) for name, value in headers if not skip.get(name)]
    value = data if isinstance(data, bytes) else json.dumps(data).encode()
    return value, headers


def test_every_registered_type_has_an_example(examples: dict[str, Any]) -> None:
    assert set(examples) == set(EVENT_TYPES)


def test_binary_round_trip(event_type: str, example: dict[str, Any]) -> None:
    model = EVENT_TYPES[event_type]
    event = model.model_validate_json(json.dumps(example))
    record = encode(event, source="stockflow-test", event_id="evt-1", time=MOMENT)

    assert record.topic == model.topic
    key = "@".join(str(example[field]) for field in key_fields(model.key_field))
    assert record.key == key.encode()
    headers = dict(record.headers)
    assert headers["ce_type"] == event_type.encode()
    assert headers["ce_specversion"] == b"1.0"
    assert headers["ce_time"] == b"2024-05-01T12:00:00Z"
    assert headers["content-type"] == b"application/json"
    assert headers["traceparent"].startswith(b"00-")

    incoming = decode(record.value, record.headers)
    assert (incoming.id, incoming.type, incoming.source) == ("evt-1", event_type, "stockflow-test")
    assert incoming.time == MOMENT
    assert parse(incoming) == event
    assert parse(incoming, model) == event
    # The wire form is stable: encoding what was decoded gives the same bytes.
    again = encode(parse(incoming), source="stockflow-test", event_id="evt-1", time=MOMENT)
    assert again.value == record.value


def test_structured_mode_decodes_to_the_same_model(
    event_type: str, example: dict[str, Any]
) -> None:
    value, headers = _binary(event_type, example)
    envelope = {
        "specversion": "1.0",
        "id": "evt-1",
        "source": "checkout",
        "type": event_type,
        "time": "2024-05-01T14:00:00+02:00",
        "datacontenttype": "application/json",
        "data": example,
    }
    structured = decode(json.dumps(envelope).encode(), [("content-type", STRUCTURED.encode())])
    binary = decode(value, headers)
    assert structured.time == binary.time == MOMENT
    assert parse(structured) == parse(binary)


def test_structured_mode_without_content_type_is_recognised(examples: Examples) -> None:
    event_type = "checkout.payment.confirmed.v1"
    envelope = {
        "specversion": "1.0",
        "id": "e",
        "source": "s",
        "type": event_type,
        "data": examples[event_type],
    }
    assert decode(json.dumps(envelope).encode(), None).type == event_type


def _reason(value: bytes | None, headers: list[tuple[str, bytes]] | None) -> str:
    with pytest.raises(InvalidMessage) as caught:
        parse(decode(value, headers))
    return caught.value.reason


@pytest.mark.parametrize("header", ["ce_id", "ce_type", "ce_source", "ce_specversion"])
def test_missing_header_is_named(header: str, examples: Examples) -> None:
    event_type = "checkout.payment.confirmed.v1"
    value, headers = _binary(event_type, examples[event_type], **{header: True})
    assert header in _reason(value, headers)


def test_no_headers_at_all_is_not_a_cloudevent() -> None:
    assert "missing" in _reason(b'{"order_id": "o-1"}', [])


def test_value_that_is_not_json_is_refused() -> None:
    value, headers = _binary("checkout.payment.confirmed.v1", b"\x00not json")
    assert "JSON" in _reason(value, headers)
    assert "not JSON" in _reason(b"{oops", [("content-type", STRUCTURED.encode())])


def test_unknown_type_is_named() -> None:
    value, headers = _binary("checkout.order.teleported.v1", {"order_id": "o-1"})
    reason = _reason(value, headers)
    assert "unknown event type" in reason and "checkout.order.teleported.v1" in reason


def test_oversized_value_is_refused() -> None:
    value, headers = _binary("checkout.payment.confirmed.v1", b"{" + b" " * MAX_VALUE_BYTES + b"}")
    assert "exceeds" in _reason(value, headers)


def test_tombstone_is_refused() -> None:
    _, headers = _binary("checkout.payment.confirmed.v1", {})
    assert "tombstone" in _reason(None, headers)


def test_invalid_data_names_the_field_and_keeps_the_event(examples: Examples) -> None:
    data = json.loads(json.dumps(examples["checkout.order.submitted.v1"]))
    data["lines"][0]["quantity"] = "5"
    value, headers = _binary("checkout.order.submitted.v1", data)
    with pytest.raises(InvalidMessage) as caught:
        parse(decode(value, headers))
    assert "lines.0.quantity" in caught.value.reason
    assert caught.value.event is not None and caught.value.event.id == "evt-1"


def test_missing_required_field_is_named(examples: Examples) -> None:
    data = dict(examples["warehouse.goods.received.v1"])
    del data["unit_cost"]
    value, headers = _binary("warehouse.goods.received.v1", data)
    assert "unit_cost" in _reason(value, headers)


def test_bad_ce_time_is_refused() -> None:
    value, headers = _binary("checkout.payment.confirmed.v1", {}, ce_time=True)
    headers.append(("ce_time", b"yesterday"))
    with pytest.raises(InvalidMessage, match="ce time"):
        decode(value, headers)


def test_unsupported_specversion_is_refused() -> None:
    value, headers = _binary("checkout.payment.confirmed.v1", {}, ce_specversion=True)
    headers.append(("ce_specversion", b"0.3"))
    with pytest.raises(InvalidMessage, match="specversion"):
        decode(value, headers)


def test_header_without_value_counts_as_missing(examples: Examples) -> None:
    event_type = "checkout.payment.confirmed.v1"
    value, headers = _binary(event_type, examples[event_type], ce_id=True)
    headers.append(("ce_id", None))  # type: ignore[arg-type]
    assert "ce_id" in _reason(value, headers)
