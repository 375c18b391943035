"""What every command needs: where the system is (the same KEY=value names `make status` prints),
one way to call a service's API, `--json`, and one way to fail (an `error:` line, exit 1)."""

from __future__ import annotations

import json
import os
from typing import Annotated, Any, get_args
from urllib.parse import urlsplit, urlunsplit

import httpx
import typer
from rich.markup import escape

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


def redacted(dsn: str) -> str:
    """A database URL fit to print: its password replaced by `***`."""
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


# --- failing ---------------------------------------------------------------------------------


class CliError(Exception):
    """A failure the operator can act on: main.py prints it as one `error:` line, exit 1."""


def plain(value: Any) -> str:
    """Text from a user or a service, made safe to print with rich (no markup is read in it)."""
    return "" if value is None else escape(str(value))


# --- the services' HTTP APIs -----------------------------------------------------------------

HTTP_TIMEOUT_S = 30.0


def call(
    service: str,
    method: str,
    path: str,
    *,
    params: dict[str, Any] | None = None,
    **kwargs: Any,
) -> httpx.Response:
    """One request to a service's API with the operator's token, checked.

    Parameters left unset (None or "") are not sent: an empty `state=` is not "any state" to
    the API but a value it refuses. An answer >= 400 raises CliError with the service's own
    detail; an unreachable service raises httpx.TransportError, which main.py reports with its URL.
    """
    headers = auth_headers() | kwargs.pop("headers", {})
    response = httpx.request(
        method,
        service_url(service) + path,
        params={k: v for k, v in (params or {}).items() if v is not None and v != ""},
        headers=headers,
        timeout=kwargs.pop("timeout", HTTP_TIMEOUT_S),
        **kwargs,
    )
    if response.status_code >= 400:
        raise CliError(refusal(service, response))
    return response


def get(service: str, path: str, params: dict[str, Any] | None = None) -> Any:
    """GET a service's JSON."""
    return call(service, "GET", path, params=params).json()


def refusal(service: str, response: httpx.Response) -> str:
    """`the order service refused GET /orders (422): state: ...` from any error answer."""
    request = response.request
    return (
        f"the {service} service refused {request.method} {request.url.path} "
        f"({response.status_code}): {error_detail(response)}"
    )


def error_detail(response: httpx.Response) -> str:
    """The service's `detail`, with each invalid field named (FastAPI's 422 list included)."""
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        return text.splitlines()[0][:200] if text else response.reason_phrase
    detail = body.get("detail", body) if isinstance(body, dict) else body
    if isinstance(detail, list):
        return "; ".join(_field_problem(item) for item in detail)
    return detail if isinstance(detail, str) else json.dumps(detail)[:300]


def _field_problem(item: Any) -> str:
    if not isinstance(item, dict):
        return str(item)
    where = [str(part) for part in item.get("loc", ()) if part not in ("query", "body", "path")]
    field = ".".join(where) or "request"
    return f"{field}: {item.get('msg', item)}"


# --- --json ----------------------------------------------------------------------------------

JsonOption = Annotated[
    bool, typer.Option("--json", help="Print the data as JSON (for scripts) instead of tables.")
]


def print_json(data: Any) -> None:
    """The data a command shows, as one JSON document on stdout."""
    typer.echo(json.dumps(data, ensure_ascii=False, default=str))


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
