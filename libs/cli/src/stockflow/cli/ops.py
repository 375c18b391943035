"""Operator commands: topics, dead letters, lag, checks, schemas."""

import typer


def register(app: typer.Typer) -> None:
    """Add the operator commands to the top-level app."""
