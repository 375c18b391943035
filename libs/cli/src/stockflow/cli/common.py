"""What every command needs: where the system is (the same KEY=value names `make status` prints)."""

from __future__ import annotations

import os

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
