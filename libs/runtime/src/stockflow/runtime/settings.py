"""Service settings from environment variables (prefix STOCKFLOW_)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

SCHEMAS = {
    "catalog": "catalog",
    "stock": "stock",
    "order": "orders",  # `order` is a reserved word in SQL
    "fulfillment": "fulfillment",
    "accounting": "accounting",
}
# Workers: processes that run part of a service beside it, on that service's schema (see
# stockflow.runtime.worker), by name -> service. Each is `worker` in stockflow.<service>.<name>.app.
WORKERS = {"replenishment": "stock"}


class Settings(BaseSettings):
    """Everything a service process needs to know about its surroundings."""

    model_config = SettingsConfigDict(env_prefix="STOCKFLOW_", extra="ignore")

    service: str = "stock"
    kafka_bootstrap_servers: str = "127.0.0.1:19092"
    database_url: str = Field(
        default="", description="the service's runtime role: DML on its own schema only"
    )
    migration_database_url: str = Field(
        default="", description="the schema owner role, used at start-up to migrate"
    )
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    log_level: str = "info"
    api_tokens: dict[str, str] = Field(
        default_factory=dict, description="bearer token -> role (admin, warehouse, read)"
    )
    db_pool_min: int = 2
    db_pool_max: int = 10
    batch_max_records: int = 500
    batch_timeout_ms: int = 20
    handler_attempts: int = 3
    # The consumer watchdog (stockflow.runtime.watchdog): how often it looks, how long a fetched
    # batch may go without progress before the consumer counts as stalled, and how long a
    # restarted consumer has to make progress before the process exits for its supervisor.
    consumer_watchdog_interval_s: float = Field(default=5.0, gt=0)
    consumer_stall_timeout_s: float = Field(default=120.0, gt=0)
    consumer_restart_grace_s: float = Field(default=60.0, gt=0)
    outbox_batch_size: int = 2000
    outbox_poll_interval_s: float = 0.5
    outbox_retention_s: float = 3600.0
    idempotency_retention_s: float = 86400.0
    # How often a service checks its own invariants (a full ledger scan in stock: not too often).
    invariant_interval_s: float = 30.0
    kafka_linger_ms: int = 5
    # Kafka authentication (default PLAINTEXT: none). The password is a SecretStr, so it never
    # appears in a repr, a log line or a validation error.
    kafka_security_protocol: Literal["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512"] = "SCRAM-SHA-512"
    kafka_username: str = ""
    kafka_password: SecretStr = SecretStr("")

    def kafka_client_options(self) -> dict[str, Any]:
        """Keyword arguments for any aiokafka client (producer, consumer, admin)."""
        return kafka_client_options(
            self.kafka_security_protocol,
            self.kafka_sasl_mechanism,
            self.kafka_username,
            self.kafka_password.get_secret_value(),
        )

    @property
    def schema_name(self) -> str:
        return SCHEMAS[self.service]


def kafka_client_options(
    protocol: str, mechanism: str, username: str, password: str
) -> dict[str, Any]:
    """aiokafka's security keyword arguments; empty for PLAINTEXT (the clients' default)."""
    if protocol == "PLAINTEXT":
        return {}
    if not username or not password:
        raise ValueError(f"{protocol} needs STOCKFLOW_KAFKA_USERNAME and STOCKFLOW_KAFKA_PASSWORD")
    options: dict[str, Any] = {
        "security_protocol": protocol,
        "sasl_mechanism": mechanism,
        "sasl_plain_username": username,
        "sasl_plain_password": password,
    }
    if protocol == "SASL_SSL":
        from aiokafka.helpers import create_ssl_context

        options["ssl_context"] = create_ssl_context()  # the system's trusted CAs
    return options
