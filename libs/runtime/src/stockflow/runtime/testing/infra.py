"""Where the tests find Kafka and PostgreSQL, in this order:

(a) KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL from the environment;
(b) testcontainers for Kafka and PostgreSQL when a Docker engine answers;
(c) otherwise the local processes of deploy/local (profile `test`, or the lane named by
    STOCKFLOW_TEST_PROFILE), started on demand and reused when already up.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[6]
INFRA_SCRIPT = ROOT / "deploy" / "local" / "infra.py"


def lane_profile() -> str:
    """The deploy/local profile the tests run on (parallel runs each take their own lane)."""
    return os.environ.get("STOCKFLOW_TEST_PROFILE", "test")


@dataclass
class Infra:
    kafka_bootstrap: str
    admin_database_url: str
    origin: str  # "environment", "testcontainers" or "local"
    kafka_pid_file: Path | None = None
    _containers: list = field(default_factory=list)

    def role_url(self, role: str) -> str:
        """The URL of a service role (local passwords: the role's name)."""
        from urllib.parse import urlsplit, urlunsplit

        parts = urlsplit(self.admin_database_url)
        netloc = f"{role}:{role}@{parts.hostname}:{parts.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))

    def close(self) -> None:
        for container in self._containers:
            container.stop()


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return True
    except Exception:  # noqa: BLE001 — no engine, no socket, no permission: all mean "no"
        return False


def _from_testcontainers() -> Infra:
    from testcontainers.kafka import KafkaContainer
    from testcontainers.postgres import PostgresContainer

    postgres = PostgresContainer(
        "postgres:15", username="postgres", password="postgres", dbname="stockflow"
    ).start()
    kafka = KafkaContainer("apache/kafka:4.1.1").with_kraft().start()
    url = postgres.get_connection_url().replace("postgresql+psycopg2", "postgresql")
    return Infra(kafka.get_bootstrap_server(), url, "testcontainers", _containers=[kafka, postgres])


def _from_local_processes() -> Infra:
    result = subprocess.run(
        [sys.executable, str(INFRA_SCRIPT), "up", "--profile", lane_profile()],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0:
        raise RuntimeError(f"could not start local Kafka/PostgreSQL: {result.stderr[-800:]}")
    status = subprocess.run(
        [sys.executable, str(INFRA_SCRIPT), "status", "--profile", lane_profile()],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    values = dict(
        line.split("=", 1)
        for line in status.splitlines()
        if "=" in line and not line.startswith("#")
    )
    return Infra(
        values["KAFKA_BOOTSTRAP_SERVERS"],
        values["DATABASE_URL"],
        "local",
        kafka_pid_file=ROOT / ".state" / lane_profile() / "run" / "kafka.pid",
    )


def resolve_infra() -> Infra:
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS") and os.environ.get("DATABASE_URL"):
        return Infra(
            os.environ["KAFKA_BOOTSTRAP_SERVERS"], os.environ["DATABASE_URL"], "environment"
        )
    if _docker_answers():
        return _from_testcontainers()
    return _from_local_processes()
