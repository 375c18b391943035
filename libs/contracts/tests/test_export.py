"""The exported contract: valid JSON Schemas that accept the examples, and an AsyncAPI document."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from stockflow.contracts import EVENT_TYPES, TOPICS
from stockflow.contracts.export import export_schemas, main


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("contract")
    export_schemas(directory)
    return directory


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def test_one_file_per_event_type_plus_asyncapi(exported: Path) -> None:
    names = {path.name for path in exported.iterdir()}
    assert names == {f"{t}.json" for t in EVENT_TYPES} | {"asyncapi.json"}


def test_schema_is_valid_and_annotated(event_type: str, exported: Path) -> None:
    schema = _load(exported / f"{event_type}.json")
    Draft202012Validator.check_schema(schema)
    model = EVENT_TYPES[event_type]
    assert schema["title"] == model.__name__
    assert schema["description"] and "\n" not in schema["description"]
    assert schema["x-topic"] == model.topic
    assert schema["x-key"] == model.key_field
    assert schema["x-event-type"] == event_type


def test_example_validates_against_its_schema(
    event_type: str, example: dict[str, Any], exported: Path
) -> None:
    schema = _load(exported / f"{event_type}.json")
    errors = list(Draft202012Validator(schema).iter_errors(example))
    assert not errors, [error.message for error in errors]


def test_schema_refuses_what_the_model_refuses(exported: Path, examples: dict) -> None:
    schema = _load(exported / "checkout.order.submitted.v1.json")
    validator = Draft202012Validator(schema)
    bad = json.loads(json.dumps(examples["checkout.order.submitted.v1"]))
    for field, value in [("quantity", "5"), ("quantity", 0), ("unit_price", 12.5)]:
        line = {**bad["lines"][0], field: value}
        assert not validator.is_valid({**bad, "lines": [line]}), (field, value)
    assert not validator.is_valid({**bad, "currency": "eur"})


def test_asyncapi_lists_every_topic_and_type(exported: Path) -> None:
    doc = _load(exported / "asyncapi.json")
    assert doc["asyncapi"].startswith("3.")
    addresses = {channel["address"] for channel in doc["channels"].values()}
    assert addresses == set(TOPICS)
    names = {message["name"] for message in doc["components"]["messages"].values()}
    assert set(EVENT_TYPES) <= names
    for model in EVENT_TYPES.values():
        channel = doc["channels"][model.topic.replace(".", "_")]
        assert model.__name__ in channel["messages"]
    assert "CloudEventsHeaders" in doc["components"]["schemas"]


def test_asyncapi_operations_cover_every_event_topic(exported: Path) -> None:
    doc = _load(exported / "asyncapi.json")
    sent = {
        op["channel"]["$ref"].rsplit("/", 1)[1]
        for op in doc["operations"].values()
        if op["action"] == "send"
    }
    received = {
        op["channel"]["$ref"].rsplit("/", 1)[1]
        for op in doc["operations"].values()
        if op["action"] == "receive"
    }
    # ops.audit.v1 is written by the operator CLI (`stockflow dlq replay`), not by a service.
    assert {t.replace(".", "_") for t in TOPICS} - {"ops_audit_v1"} <= sent
    assert {m.topic.replace(".", "_") for m in EVENT_TYPES.values()} - received <= {
        "stock_levels_v1",  # storefronts and ops, outside stockflow
        "stock_alerts_v1",
        "accounting_journal_v1",
    }


def test_asyncapi_references_resolve_and_payloads_accept_examples(
    exported: Path, examples: dict
) -> None:
    doc = _load(exported / "asyncapi.json")

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str):
                target: Any = doc
                for part in ref.removeprefix("#/").split("/"):
                    target = target[part]
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)
    registry = Registry().with_resource(
        "urn:asyncapi", Resource.from_contents(doc, default_specification=DRAFT202012)
    )
    for message in doc["components"]["messages"].values():
        if message["name"] not in examples:
            continue
        payload = {"$ref": "urn:asyncapi" + message["payload"]["$ref"]}
        validator = Draft202012Validator(payload, registry=registry)
        assert validator.is_valid(examples[message["name"]]), message["name"]


def test_command_line_entrypoint(tmp_path: Path) -> None:
    assert main([str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "asyncapi.json").exists()
    assert main([]) == 2
