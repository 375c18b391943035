"""asyncpg pools and per-schema SQL migrations (ordered files, checksums, an advisory lock)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import asyncpg

BACKBONE_MIGRATIONS = Path(__file__).parent / "migrations"


class MigrationError(Exception):
    """A migration cannot be applied; the service must not start."""


async def init_connection(conn: asyncpg.Connection) -> None:
    for jsontype in ("json", "jsonb"):
        await conn.set_type_codec(
            jsontype, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )


async def create_pool(
    dsn: str, schema: str, *, application_name: str, min_size: int = 2, max_size: int = 10
) -> asyncpg.Pool:
    """A pool whose connections see only `schema` by default and decode JSON columns."""
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=init_connection,
        server_settings={"search_path": schema, "application_name": application_name},
        command_timeout=60,
    )
    assert pool is not None
    return pool


@dataclass(frozen=True)
class Migration:
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(*directories: Path) -> list[Migration]:
    """Backbone tables first, then the service's own files, each folder in file-name order."""
    migrations: list[Migration] = []
    for directory in directories:
        prefix = "backbone/" if directory == BACKBONE_MIGRATIONS else ""
        for path in sorted(directory.glob("*.sql")):
            migrations.append(Migration(prefix + path.name, path.read_text()))
    return migrations


async def migrate(dsn: str, schema: str, service_migrations: Path | None) -> list[str]:
    """Apply pending migrations to `schema` as its owner; return the names applied.

    An applied file whose content changed is an error: migrations are history, never edited.
    """
    directories = [BACKBONE_MIGRATIONS] + ([service_migrations] if service_migrations else [])
    migrations = load_migrations(*directories)
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    applied_now: list[str] = []
    try:
        # One migrator per schema at a time, even with several replicas starting together.
        await conn.execute("SELECT pg_advisory_lock(hashtext($1))", f"migrate:{schema}")
        await conn.execute(
            f"""CREATE TABLE IF NOT EXISTS {schema}.schema_migrations (
                    name text PRIMARY KEY,
                    checksum text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        applied = {
            row["name"]: row["checksum"]
            for row in await conn.fetch(f"SELECT name, checksum FROM {schema}.schema_migrations")
        }
        for migration in migrations:
            if migration.name in applied:
                if applied[migration.name] != migration.checksum:
                    raise MigrationError(
                        f"migration {migration.name} in schema {schema} was changed after it "
                        "was applied; add a new migration instead of editing an applied one"
                    )
                continue
            async with conn.transaction():
                await conn.execute(migration.sql.replace("{schema}", schema))
                await conn.execute(
                    f"INSERT INTO {schema}.schema_migrations (name, checksum) VALUES ($1, $2)",
                    migration.name,
                    migration.checksum,
                )
            applied_now.append(migration.name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", f"migrate:{schema}")
        await conn.close()
    return applied_now
