"""Shared pytest fixtures: real Kafka and PostgreSQL, resolved once per test session."""

pytest_plugins = ["stockflow.runtime.testing.plugin"]
