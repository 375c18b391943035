"""Create what the services expect to exist: per-service roles and schemas, and every topic.

Idempotent; run by `make up` locally, by the compose `init` service and the Helm init Job:
  python -m stockflow.runtime.bootstrap [--local-passwords] [--skip-topics] [--scram-users] [--acls]
Reads DATABASE_URL (an admin connection), KAFKA_BOOTSTRAP_SERVERS and one password per role
from STOCKFLOW_DB_PASSWORD_<ROLE> (e.g. STOCKFLOW_DB_PASSWORD_STOCK_APP); --local-passwords uses
each role's name as its password (local development only).
--scram-users creates (or updates) a SCRAM-SHA-512 user for every principal of
stockflow.runtime.security, its password from STOCKFLOW_KAFKA_PASSWORD_<PRINCIPAL> (with
--local-passwords: `<principal>-secret`); --acls creates the Kafka ACLs of that access table.
On a secured cluster the Kafka credentials of the super user come from STOCKFLOW_KAFKA_*
(security protocol, username, password), as for the services.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import secrets
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code
from aiokafka.protocol.admin import CreateAclsRequest
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import (
    CompactArray,
    CompactBytes,
    CompactString,
    Int8,
    Int16,
    Int32,
    Schema,
    TaggedFields,
)

from stockflow.contracts import TOPICS
from stockflow.runtime.security import (
    ACCESS,
    ALLOW,
    ANY_HOST,
    AclBinding,
    acl_bindings,
    local_password,
    password_env,
)
from stockflow.runtime.settings import SCHEMAS, Settings


def role_names(schema: str) -> tuple[str, str]:
    """(owner, app): the owner migrates the schema; the app role only reads and writes rows."""
    return f"{schema}_owner", f"{schema}_app"


def _password(role: str, local: bool) -> str:
    if local:
        return role
    value = os.environ.get(f"STOCKFLOW_DB_PASSWORD_{role.upper()}")
    if not value:
        raise SystemExit(f"error: STOCKFLOW_DB_PASSWORD_{role.upper()} is not set")
    return value


async def ensure_roles_and_schemas(admin_url: str, *, local_passwords: bool) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        database = await conn.fetchval("SELECT current_database()")
        await conn.execute("SELECT pg_advisory_lock(hashtext('stockflow-bootstrap'))")
        await conn.execute("REVOKE ALL ON SCHEMA public FROM PUBLIC")
        await conn.execute(f'REVOKE CREATE, TEMPORARY ON DATABASE "{database}" FROM PUBLIC')
        for schema in SCHEMAS.values():
            for role in role_names(schema):
                exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
                verb = "ALTER" if exists else "CREATE"
                password = _password(role, local_passwords).replace("'", "''")
                await conn.execute(f"{verb} ROLE {role} LOGIN PASSWORD '{password}'")
                await conn.execute(f'GRANT CONNECT ON DATABASE "{database}" TO {role}')
            owner, app = role_names(schema)
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema} AUTHORIZATION {owner}")
            await conn.execute(f"ALTER SCHEMA {schema} OWNER TO {owner}")
            await conn.execute(f"REVOKE ALL ON SCHEMA {schema} FROM PUBLIC")
            await conn.execute(f"GRANT USAGE ON SCHEMA {schema} TO {app}")
            await conn.execute(f"ALTER ROLE {app} SET search_path = {schema}")
            await conn.execute(f"ALTER ROLE {owner} SET search_path = {schema}")
            for grant in (
                "SELECT, INSERT, UPDATE, DELETE ON TABLES",
                "USAGE, SELECT ON SEQUENCES",
                "EXECUTE ON FUNCTIONS",
            ):
                await conn.execute(
                    f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {schema} "
                    f"GRANT {grant} TO {app}"
                )
            await conn.execute(
                f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {app}"
            )
            await conn.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {app}")
    finally:
        await conn.close()


async def ensure_topics(
    bootstrap_servers: str,
    *,
    replication_factor: int = 1,
    security: Mapping[str, Any] | None = None,
) -> list[str]:
    """Create every topic of the contract that does not exist yet; return those created."""
    admin = AIOKafkaAdminClient(
        **dict(security or {}), bootstrap_servers=bootstrap_servers, client_id="stockflow-init"
    )
    await admin.start()
    created: list[str] = []
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(
                topic.name,
                topic.partitions,
                replication_factor,
                topic_configs={"cleanup.policy": "compact"} if topic.compacted else {},
            )
            for topic in TOPICS.values()
            if topic.name not in existing
        ]
        if wanted:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(wanted)
            created = [t.name for t in wanted]
    finally:
        await admin.close()
    return created


async def ensure_acls(
    bootstrap_servers: str,
    *,
    security: Mapping[str, Any] | None = None,
    bindings: list[AclBinding] | None = None,
) -> int:
    """Create the ALLOW ACLs of the access table (creating an existing ACL is a no-op).

    aiokafka 0.14 has the CreateAcls request (v0/v1, one binding each) but no admin method;
    v1 carries the pattern type that the prefixed consumer-group ACLs need. Returns the count.
    """
    wanted = acl_bindings() if bindings is None else bindings
    admin = AIOKafkaAdminClient(
        **dict(security or {}), bootstrap_servers=bootstrap_servers, client_id="stockflow-init"
    )
    await admin.start()
    try:
        for binding in wanted:
            request = CreateAclsRequest(
                int(binding.resource_type),
                binding.resource_name,
                int(binding.pattern_type),
                binding.kafka_principal,
                ANY_HOST,
                int(binding.operation),
                ALLOW,
            )
            response = await admin._send_request(request)
            for code, message in response.creation_responses:
                if code:
                    raise for_code(code)(f"creating ACL {binding}: {message}")
    finally:
        await admin.close()
    return len(wanted)


# --- SCRAM users: AlterUserScramCredentials (KIP-554, API key 51), absent from aiokafka 0.14 ---

SCRAM_SHA_512 = 2  # org.apache.kafka.clients.admin.ScramMechanism
SCRAM_ITERATIONS = 8192  # the broker accepts 4096..16384


class AlterUserScramCredentialsResponse_v0(Response):
    API_KEY = 51
    API_VERSION = 0
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "results",
            CompactArray(
                ("user", CompactString("utf-8")),
                ("error_code", Int16),
                ("error_message", CompactString("utf-8")),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class AlterUserScramCredentialsRequest_v0(RequestStruct):
    FLEXIBLE_VERSION = True
    API_KEY = 51
    API_VERSION = 0
    RESPONSE_TYPE = AlterUserScramCredentialsResponse_v0
    SCHEMA = Schema(
        (
            "deletions",
            CompactArray(
                ("name", CompactString("utf-8")), ("mechanism", Int8), ("tags", TaggedFields)
            ),
        ),
        (
            "upsertions",
            CompactArray(
                ("name", CompactString("utf-8")),
                ("mechanism", Int8),
                ("iterations", Int32),
                ("salt", CompactBytes),
                ("salted_password", CompactBytes),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class AlterUserScramCredentialsRequest(Request[AlterUserScramCredentialsRequest_v0]):
    API_KEY = 51

    def __init__(self, passwords: Mapping[str, str]) -> None:
        self._upsertions: list[tuple[str, int, int, bytes, bytes, dict[int, bytes]]] = []
        for user, password in sorted(passwords.items()):
            # The client salts and hashes (RFC 5802 Hi() is PBKDF2): the password never travels.
            salt = secrets.token_bytes(32)
            salted = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, SCRAM_ITERATIONS)
            self._upsertions.append((user, SCRAM_SHA_512, SCRAM_ITERATIONS, salt, salted, {}))

    def build(
        self, request_struct_class: type[AlterUserScramCredentialsRequest_v0]
    ) -> AlterUserScramCredentialsRequest_v0:
        return request_struct_class([], self._upsertions, {})


def scram_passwords(*, local: bool) -> dict[str, str]:
    """The password of every principal of the access table (the super user exists already)."""
    if local:
        return {principal: local_password(principal) for principal in ACCESS}
    missing = [password_env(p) for p in ACCESS if not os.environ.get(password_env(p))]
    if missing:
        raise SystemExit(f"error: {', '.join(missing)} not set (needed by --scram-users)")
    return {principal: os.environ[password_env(principal)] for principal in ACCESS}


async def ensure_scram_users(
    bootstrap_servers: str,
    passwords: Mapping[str, str],
    *,
    security: Mapping[str, Any] | None = None,
) -> list[str]:
    """Create or update one SCRAM-SHA-512 user per principal (re-salted: rotation-friendly)."""
    admin = AIOKafkaAdminClient(
        **dict(security or {}), bootstrap_servers=bootstrap_servers, client_id="stockflow-init"
    )
    await admin.start()
    try:
        response = await admin._send_request(AlterUserScramCredentialsRequest(passwords))
    finally:
        await admin.close()
    failed = [(user, code, message) for user, code, message, _ in response.results if code]
    if failed:
        user, code, message = failed[0]
        raise for_code(code)(f"creating SCRAM user {user}: {message}")
    return sorted(user for user, *_ in response.results)


@dataclass(frozen=True)
class KafkaSetup:
    """What bootstrap creates in Kafka: the topics, and optionally SCRAM users and ACLs."""

    bootstrap_servers: str
    replication_factor: int = 1
    acls: bool = False
    scram_users: Mapping[str, str] | None = None
    security: Mapping[str, Any] | None = None


async def bootstrap(admin_url: str, kafka: KafkaSetup | None, *, local_passwords: bool) -> None:
    """Roles and schemas in PostgreSQL; then, unless `kafka` is None, what `kafka` asks for."""
    await ensure_roles_and_schemas(admin_url, local_passwords=local_passwords)
    if kafka is None:
        return
    servers, security = kafka.bootstrap_servers, kafka.security
    await ensure_topics(servers, replication_factor=kafka.replication_factor, security=security)
    if kafka.scram_users:
        await ensure_scram_users(servers, kafka.scram_users, security=security)
    if kafka.acls:
        await ensure_acls(servers, security=security)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--local-passwords", action="store_true")
    parser.add_argument("--skip-topics", action="store_true")
    parser.add_argument(
        "--acls",
        action="store_true",
        help="also create the Kafka ACLs of stockflow.runtime.security",
    )
    parser.add_argument(
        "--scram-users",
        action="store_true",
        help="also create a SCRAM user per principal (STOCKFLOW_KAFKA_PASSWORD_<PRINCIPAL>)",
    )
    args = parser.parse_args()
    if (args.acls or args.scram_users) and args.skip_topics:
        sys.exit("error: --acls and --scram-users need Kafka; drop --skip-topics")
    admin_url = os.environ.get("DATABASE_URL")
    if not admin_url:
        sys.exit("error: DATABASE_URL (an admin connection) is not set")
    kafka = None if args.skip_topics else os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not args.skip_topics and not kafka:
        sys.exit("error: KAFKA_BOOTSTRAP_SERVERS is not set")
    replication = int(os.environ.get("STOCKFLOW_TOPIC_REPLICATION_FACTOR", "1"))
    try:
        security = Settings().kafka_client_options()
    except ValueError as exc:
        sys.exit(f"error: {exc}")
    setup = None
    if kafka:
        scram_users = scram_passwords(local=args.local_passwords) if args.scram_users else None
        setup = KafkaSetup(
            kafka,
            replication_factor=replication,
            acls=args.acls,
            scram_users=scram_users,
            security=security,
        )
    asyncio.run(bootstrap(admin_url, setup, local_passwords=args.local_passwords))
    done = ["roles", "schemas", "topics"] if kafka else ["roles", "schemas"]
    done += ["SCRAM users"] if args.scram_users else []
    done += ["ACLs"] if args.acls else []
    print(f"bootstrap done: {', '.join(done[:-1])} and {done[-1]} are in place")


if __name__ == "__main__":
    main()
