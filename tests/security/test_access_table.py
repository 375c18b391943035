"""The Kafka access table (stockflow.runtime.security) against the services and the contract.

No infrastructure: imports every service's ServiceDefinition and the topic catalogue.
"""

from __future__ import annotations

import importlib

import pytest

from stockflow.contracts import TOPICS
from stockflow.runtime.security import (
    ACCESS,
    AUDIT_TOPIC,
    OPERATOR,
    SERVICES,
    SUPER_USER,
    Operation,
    PatternType,
    ResourceType,
    acl_bindings,
    principals,
    writers,
)
from stockflow.runtime.service import ServiceDefinition, broker_security
from stockflow.runtime.settings import SCHEMAS, Settings

# The contract names a topic's owner by service, by schema or as "<system> (upstream)"; the
# one topic written by someone other than its owner is the saga's command topic (DESIGN.md:
# the order service publishes stock.commands.v1, which stock owns and consumes).
WRITTEN_BY_NON_OWNER = {"stock.commands.v1": "order"}
OPERATOR_TOPICS = {name for name, topic in TOPICS.items() if topic.owner == "ops"}


def definition(service: str) -> ServiceDefinition:
    module = importlib.import_module(f"stockflow.{service}.app")
    found = module.service
    assert isinstance(found, ServiceDefinition)
    return found


def contract_writer(topic: str) -> str:
    if topic in WRITTEN_BY_NON_OWNER:
        return WRITTEN_BY_NON_OWNER[topic]
    owner = TOPICS[topic].owner.removesuffix(" (upstream)")
    by_schema = {schema: service for service, schema in SCHEMAS.items()}
    return by_schema.get(owner, owner)


def test_the_table_has_one_principal_per_service() -> None:
    assert set(SERVICES) == set(SCHEMAS)
    assert principals()[0] == SUPER_USER
    assert SUPER_USER not in ACCESS
    assert OPERATOR in ACCESS and OPERATOR not in SERVICES


def test_the_operator_reads_everything_and_writes_only_replay_targets_and_the_audit_log() -> None:
    ops = ACCESS[OPERATOR]
    assert ops.operator and ops.group_prefix is None, "the CLI joins no consumer group"
    assert ops.reads == set(TOPICS), "topics list/tail and dlq list read every topic"
    consumed = {topic for service in SERVICES for topic in ACCESS[service].reads}
    # A DLQ replay re-publishes to the dead letter's source topic: one a service consumes.
    assert ops.writes == consumed | {AUDIT_TOPIC}
    assert AUDIT_TOPIC in OPERATOR_TOPICS
    assert not any(t.endswith(".dlq.v1") for t in ops.writes), "dead letters stay the services'"
    assert ops.describes_groups == {f"{service}." for service in SERVICES}, "lag"
    operator_bindings = [b for b in acl_bindings() if b.principal == OPERATOR]
    assert {b.operation for b in operator_bindings} == {
        Operation.READ,
        Operation.WRITE,
        Operation.DESCRIBE,
        Operation.DESCRIBE_CONFIGS,
    }
    groups = [b for b in operator_bindings if b.resource_type == ResourceType.GROUP]
    assert groups and all(b.operation == Operation.DESCRIBE for b in groups), "no READ: no join"


@pytest.mark.parametrize("service", sorted(SCHEMAS))
def test_every_consumer_of_the_service_is_covered(service: str) -> None:
    access = ACCESS[service]
    assert access.group_prefix == f"{service}."
    for consumer in definition(service).consumers:
        assert consumer.group.startswith(access.group_prefix), consumer.group
        missing = set(consumer.topics) - access.reads
        assert not missing, f"{service} consumer {consumer.group} reads {missing} without an ACL"


@pytest.mark.parametrize("service", sorted(SCHEMAS))
def test_every_service_writes_its_own_dead_letter_topic(service: str) -> None:
    assert f"{SCHEMAS[service]}.dlq.v1" in ACCESS[service].writes


def test_every_topic_has_exactly_one_writer_matching_the_contract() -> None:
    # writers() leaves the operator out: it only re-publishes dead letters byte for byte.
    for topic in TOPICS:
        if topic in OPERATOR_TOPICS:
            assert writers(topic) == set(), f"{topic} is written by the operator only"
            assert topic in ACCESS[OPERATOR].writes
            continue
        assert writers(topic) == {contract_writer(topic)}, topic


def test_the_table_names_only_topics_of_the_contract() -> None:
    for access in ACCESS.values():
        assert access.writes <= set(TOPICS), access.principal
        assert access.reads <= set(TOPICS), access.principal
        if not access.operator:
            assert not access.writes & access.reads, f"{access.principal} reads what it writes"


def test_bindings_are_least_privilege() -> None:
    bindings = [b for b in acl_bindings() if b.principal != OPERATOR]  # tested above
    operations = {b.operation for b in bindings}
    # WRITE on a topic is enough for an idempotent producer since Kafka 3.0 (KIP-679).
    assert operations == {Operation.READ, Operation.WRITE, Operation.DESCRIBE}
    assert all(b.resource_type != ResourceType.CLUSTER for b in bindings)
    groups = [b for b in bindings if b.resource_type == ResourceType.GROUP]
    assert {(b.principal, b.resource_name) for b in groups} == {(s, f"{s}.") for s in SERVICES}
    assert all(b.pattern_type == PatternType.PREFIXED for b in groups)
    assert all(
        b.pattern_type == PatternType.LITERAL
        for b in bindings
        if b.resource_type == ResourceType.TOPIC
    )
    assert all(
        b.operation != Operation.WRITE or b.resource_name in ACCESS[b.principal].writes
        for b in bindings
    )


def test_settings_default_to_plaintext_and_hide_the_password() -> None:
    assert Settings().kafka_client_options() == {}
    assert broker_security(Settings()) is None
    secure = Settings(
        kafka_security_protocol="SASL_PLAINTEXT", kafka_username="stock", kafka_password="s3cret"
    )
    assert "s3cret" not in repr(secure) and "s3cret" not in str(secure.model_dump())
    options = secure.kafka_client_options()
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_password"] == "s3cret"
    security = broker_security(secure)
    assert security is not None and security.get_schema() == {"scram512": {"type": "scramSha512"}}
    with pytest.raises(ValueError, match="STOCKFLOW_KAFKA_USERNAME"):
        Settings(kafka_security_protocol="SASL_PLAINTEXT").kafka_client_options()
