"""`stockflow demo`: act as an upstream checkout against a running system."""

import typer


def register(app: typer.Typer) -> None:
    """Add the demo command to the top-level app."""
