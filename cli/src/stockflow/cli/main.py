"""`stockflow`: the operator's command line (typer + rich).

Every command fails the same way: one `error:` line on stderr saying what went wrong or what
could not be reached (URL, DSN or bootstrap servers), exit 1 — `ReportingGroup` below turns
the exceptions commands let through into that line, so no command handles them itself.
STOCKFLOW_DEBUG=1 shows the traceback of an unexpected one.
"""

from __future__ import annotations

import os
import socket
from importlib.metadata import version
from typing import Annotated, Any

import asyncpg
import httpx
import typer
from aiokafka.errors import KafkaError
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup
from typer.exceptions import TyperException

from stockflow.cli import accounting, catalog, check, demo, fulfillment, ops, order, stock
from stockflow.cli import kafka_tools as kt
from stockflow.cli.common import CliError, redacted, setting


def failure_message(exc: Exception) -> str | None:
    """The `error:` line for an exception a command let through (None: not one we know)."""
    if isinstance(exc, CliError | kt.OpsError):
        return str(exc)
    if isinstance(exc, httpx.HTTPStatusError):
        return f"{exc.request.method} {exc.request.url} answered {exc.response.status_code}"
    if isinstance(exc, httpx.TransportError):
        return f"cannot reach {_url_of(exc)}: {_reason(exc)}"
    if isinstance(exc, KafkaError):
        return str(kt.kafka_refused(exc))
    if isinstance(exc, asyncpg.PostgresError | asyncpg.InterfaceError) or _is_connection(exc):
        return f"cannot use PostgreSQL at {redacted(setting('DATABASE_URL'))}: {_reason(exc)}"
    if isinstance(exc, OSError):
        return str(exc)
    return None


def _is_connection(exc: Exception) -> bool:
    # asyncpg's connect raises OSError subclasses, or a bare OSError for several addresses.
    return isinstance(exc, ConnectionError | socket.gaierror | TimeoutError) or (
        isinstance(exc, OSError) and "Connect call failed" in str(exc)
    )


def _url_of(exc: httpx.TransportError) -> str:
    try:
        return str(exc.request.url)
    except RuntimeError:  # raised before a request existed
        return "a service"


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


class ReportingGroup(TyperGroup):
    """The root command: runs the chosen command and reports its failure as one line."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, TyperException):  # typer's own: usage errors, exits
            raise
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
        except Exception as exc:
            message = failure_message(exc)
            if message is None:
                if os.environ.get("STOCKFLOW_DEBUG"):
                    raise
                message = f"unexpected {type(exc).__name__}: {exc} (STOCKFLOW_DEBUG=1 shows where)"
            Console(stderr=True).print(f"[red]error:[/] {escape(message)}", soft_wrap=True)
            raise typer.Exit(1) from exc


app = typer.Typer(
    name="stockflow",
    cls=ReportingGroup,
    help="Operate stockflow: orders, stock, catalog, topics, dead letters, checks and the demo.",
    no_args_is_help=True,
)


def _print_version(wanted: bool) -> None:
    if wanted:
        typer.echo(f"stockflow {version('stockflow-cli')}")
        raise typer.Exit()


@app.callback()
def _root(
    _version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Operate stockflow: orders, stock, catalog, topics, dead letters, checks and the demo."""


app.add_typer(order.app, name="order", help="Orders and their saga timeline.")
app.add_typer(stock.app, name="stock", help="Stock levels, movements and replenishment.")
app.add_typer(catalog.app, name="catalog", help="Catalog import and export.")
app.add_typer(fulfillment.app, name="fulfillment", help="Warehouse work: pick, pack, ship.")
app.add_typer(accounting.app, name="accounting", help="Books, valuation and reports.")
ops.register(app)
app.command("check")(check.check)
demo.register(app)

if __name__ == "__main__":
    app()
