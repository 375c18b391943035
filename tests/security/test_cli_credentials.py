"""The operator CLI on the secured cluster: its own principal (`ops`), clear refusals otherwise.

Runs the real `stockflow` command (a subprocess, as an operator would) against deploy/local's
`secure` profile with the environment `infra.py status --profile secure` prints. Without
credentials, with a wrong password, or as a service principal lacking the ACL, every command
ends with one `error:` line and exit 1: no traceback, and never the password.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from stockflow.contracts import TOPICS
from stockflow.runtime.security import OPERATOR, local_password
from stockflow.runtime.settings import Settings

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "deploy/local/infra.py"
CLI = [sys.executable, "-m", "stockflow.cli.main"]
KAFKA_ENV = (
    "STOCKFLOW_KAFKA_SECURITY_PROTOCOL",
    "STOCKFLOW_KAFKA_SASL_MECHANISM",
    "STOCKFLOW_KAFKA_USERNAME",
    "STOCKFLOW_KAFKA_PASSWORD",
)
CLIENT_TIMEOUT_S = 30


def status_env() -> dict[str, str]:
    """The KEY=value lines of `infra.py status --profile secure` (what an operator evals)."""
    result = subprocess.run(
        [sys.executable, str(INFRA), "status", "--profile", "secure"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if re.match(r"[A-Z_][A-Z0-9_]*=", line)]
    return dict(line.split("=", 1) for line in lines)


@pytest.fixture(scope="module")
def operator_env(secure_kafka: str) -> dict[str, str]:
    env = status_env()
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == secure_kafka
    assert env["STOCKFLOW_KAFKA_USERNAME"] == OPERATOR
    assert env["STOCKFLOW_KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
    return env


def stockflow(*args: str, env: dict[str, str], timeout: float = 90) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in KAFKA_ENV}
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**clean, "COLUMNS": "250", "NO_COLOR": "1", **env},
    )


def as_principal(operator_env: dict[str, str], principal: str, password: str) -> dict[str, str]:
    return {
        **operator_env,
        "STOCKFLOW_KAFKA_USERNAME": principal,
        "STOCKFLOW_KAFKA_PASSWORD": password,
    }


def assert_refused(result: subprocess.CompletedProcess, *needles: str) -> None:
    """Exit 1, one clear `error:` line, no traceback, no password."""
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output, output
    assert "error:" in result.stderr, output
    for needle in needles:
        assert needle in " ".join(result.stderr.split()), output
    assert "-secret" not in output and "not-the-password" not in output, "a password leaked"


async def produce(principal: str, topic: str, value: bytes, **kwargs) -> tuple[int, int]:
    """One record written with a service principal's own credentials: (partition, offset)."""
    security = Settings(
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_username=principal,
        kafka_password=local_password(principal),
    ).kafka_client_options()
    producer = AIOKafkaProducer(
        bootstrap_servers=status_env()["KAFKA_BOOTSTRAP_SERVERS"], **security
    )
    await asyncio.wait_for(producer.start(), CLIENT_TIMEOUT_S)
    try:
        sent = await asyncio.wait_for(
            producer.send_and_wait(topic, value, **kwargs), CLIENT_TIMEOUT_S
        )
    finally:
        await producer.stop()
    return sent.partition, sent.offset


def test_the_operator_lists_every_topic(operator_env: dict[str, str]) -> None:
    result = stockflow("topics", "list", env=operator_env)
    assert result.returncode == 0, result.stderr
    for topic in TOPICS:
        assert topic in result.stdout, f"{topic} missing from `topics list` as {OPERATOR}"
    # DESCRIBE_CONFIGS is granted: the cleanup policy is known, not "?".
    assert "compact" in result.stdout
    assert "-secret" not in result.stdout + result.stderr


async def test_the_operator_tails_a_topic(operator_env: dict[str, str]) -> None:
    key = f"cli-tail-{uuid.uuid4().hex[:8]}"
    event = {"specversion": "1.0", "id": key, "source": "tests/security", "type": "test.v1"}
    await produce("stock", "stock.events.v1", json.dumps(event).encode(), key=key.encode())
    result = stockflow(
        "topics", "tail", "stock.events.v1", "--key", key, "--json", env=operator_env
    )
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    assert json.loads(line)["key"] == key


async def test_the_operator_replays_a_dead_letter_and_audits_it(
    operator_env: dict[str, str],
) -> None:
    # ops writes the topics the services consume (replay targets) and ops.audit.v1.
    marker = uuid.uuid4().hex
    headers = [
        ("dlq_source_topic", b"stock.commands.v1"),
        ("dlq_source_partition", b"0"),
        ("dlq_source_offset", b"0"),
        ("dlq_reason", b"tests/security: replay as the ops principal"),
    ]
    partition, offset = await produce(
        "stock", "stock.dlq.v1", marker.encode(), key=marker.encode(), headers=headers
    )
    result = stockflow(
        "dlq",
        "replay",
        "stock",
        "--offset",
        str(offset),
        "--partition",
        str(partition),
        "--yes",
        "--note",
        marker,
        env={**operator_env, "STOCKFLOW_OPERATOR": "tests/security"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"stock.dlq.v1/{partition}/{offset} → stock.commands.v1/" in result.stdout
    shown = stockflow("dlq", "list", "stock", "--json", env=operator_env)
    assert shown.returncode == 0, shown.stderr
    rows = [json.loads(line) for line in shown.stdout.splitlines()]
    (row,) = [r for r in rows if r["position"] == f"stock.dlq.v1/{partition}/{offset}"]
    assert [r["note"] for r in row["replays"]] == [marker]


def test_the_operator_sees_consumer_lag(operator_env: dict[str, str]) -> None:
    result = stockflow("lag", "--json", env=operator_env)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr


def test_without_credentials_the_cli_says_so(operator_env: dict[str, str]) -> None:
    env = {k: v for k, v in operator_env.items() if k not in KAFKA_ENV}
    result = stockflow("topics", "list", env=env)
    assert_refused(result, "without credentials (PLAINTEXT)", "STOCKFLOW_KAFKA_SECURITY_PROTOCOL")


def test_a_wrong_password_is_a_clear_error(operator_env: dict[str, str]) -> None:
    env = as_principal(operator_env, OPERATOR, "not-the-password")
    result = stockflow("topics", "tail", "stock.events.v1", env=env)
    assert_refused(result, "as User:ops", "STOCKFLOW_KAFKA_PASSWORD")


def test_the_demo_refuses_a_wrong_password_before_it_waits(operator_env: dict[str, str]) -> None:
    env = as_principal(operator_env, OPERATOR, "not-the-password")
    result = stockflow("demo", "--orders", "1", env=env)
    assert_refused(result, "as User:ops", "STOCKFLOW_KAFKA_PASSWORD")


def test_a_missing_password_is_a_clear_error(operator_env: dict[str, str]) -> None:
    env = {k: v for k, v in operator_env.items() if k != "STOCKFLOW_KAFKA_PASSWORD"}
    result = stockflow("topics", "list", env=env)
    assert_refused(result, "SASL_PLAINTEXT needs STOCKFLOW_KAFKA_USERNAME")


def test_a_service_principal_cannot_tail_what_it_does_not_read(
    operator_env: dict[str, str],
) -> None:
    env = as_principal(operator_env, "stock", local_password("stock"))
    result = stockflow("topics", "tail", "orders.events.v1", env=env)
    assert_refused(result, "not authorized", "orders.events.v1", "as User:stock")


def test_a_service_principal_cannot_read_another_services_group(
    operator_env: dict[str, str],
) -> None:
    env = as_principal(operator_env, "stock", local_password("stock"))
    result = stockflow("lag", "--group", "order.checkout", env=env)
    assert_refused(result, "Kafka refused as User:stock", "GroupAuthorizationFailedError")
