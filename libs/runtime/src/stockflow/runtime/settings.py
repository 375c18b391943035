"""Service settings from environment variables (prefix STOCKFLOW_)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

SCHEMAS = {
    "catalog": "catalog",
    "stock": "stock",
    "order": "orders",  # `order` is a reserved word in SQL
    "fulfillment": "fulfillment",
    "accounting": "accounting",
}


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
    outbox_batch_size: int = 2000
    outbox_poll_interval_s: float = 0.5
    outbox_retention_s: float = 3600.0
    kafka_linger_ms: int = 5

    @property
    def schema_name(self) -> str:
        return SCHEMAS[self.service]
