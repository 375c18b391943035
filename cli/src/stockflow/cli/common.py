"""What every command needs: where the system is (the same KEY=value names `make status` prints)."""

from __future__ import annotations

import os
from typing import Any, get_args

from stockflow.runtime.settings import Settings, kafka_client_options

DEFAULTS = {
    "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:19092",
    "DATABASE_URL": "postgresql://postgres:postgres@127.0.0.1:15432/stockflow",
    "CATALOG_URL": "http://127.0.0.1:18081",
    "STOCK_URL": "http://127.0.0.1:18082",
    "ORDER_URL": "http://127.0.0.1:18083",
    "FULFILLMENT_URL": "http://127.0.0.1:18084",
    "ACCOUNTING_URL": "http://127.0.0.1:18085",
    "STOCKFLOW_TOKEN": "dev-admin-token",
}


def setting(name: str) -> str:
    """An environment value, falling back to the local development system's."""
    return os.environ.get(name) or DEFAULTS[name]


def service_url(service: str) -> str:
    return setting(f"{service.upper()}_URL")


def auth_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {setting('STOCKFLOW_TOKEN')}"}


# Kafka authentication: the services' own settings (STOCKFLOW_KAFKA_SECURITY_PROTOCOL,
# _SASL_MECHANISM, _USERNAME, _PASSWORD); unset means PLAINTEXT. On a secured cluster the
# operator uses the `ops` principal (`infra.py status --profile secure` prints it locally).
_PROTOCOLS = get_args(Settings.model_fields["kafka_security_protocol"].annotation)
_MECHANISMS = get_args(Settings.model_fields["kafka_sasl_mechanism"].annotation)


def _kafka_setting(name: str, default: str = "") -> str:
    return os.environ.get(f"STOCKFLOW_KAFKA_{name}") or default


def kafka_security() -> dict[str, Any]:
    """aiokafka's security keyword arguments for every CLI client (empty for PLAINTEXT).

    Raises ValueError with a message naming the variable to fix (never the password).
    """
    protocol = _kafka_setting("SECURITY_PROTOCOL", "PLAINTEXT").upper()
    mechanism = _kafka_setting("SASL_MECHANISM", _MECHANISMS[0]).upper()
    if protocol not in _PROTOCOLS:
        raise ValueError(
            f"STOCKFLOW_KAFKA_SECURITY_PROTOCOL={protocol} is not one of {', '.join(_PROTOCOLS)}"
        )
    if mechanism not in _MECHANISMS:
        raise ValueError(
            f"STOCKFLOW_KAFKA_SASL_MECHANISM={mechanism} is not one of {', '.join(_MECHANISMS)}"
        )
    return kafka_client_options(
        protocol, mechanism, _kafka_setting("USERNAME"), _kafka_setting("PASSWORD")
    )


def kafka_identity() -> str:
    """Who the CLI is on Kafka, for error messages: `as User:ops (SASL_PLAINTEXT)`."""
    protocol = _kafka_setting("SECURITY_PROTOCOL", "PLAINTEXT").upper()
    if protocol == "PLAINTEXT":
        return "without credentials (PLAINTEXT)"
    return f"as User:{_kafka_setting('USERNAME') or '?'} ({protocol})"
