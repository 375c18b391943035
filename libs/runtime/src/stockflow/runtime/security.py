"""Who may do what on Kafka: the single source of truth for principals and their ACLs.

One SCRAM principal per service (`User:<service>`), one per upstream producer and `ops`, the
operators' CLI; `admin` is the super user (bootstrap only: topics, SCRAM users, ACLs). Each
principal may
- WRITE (and DESCRIBE) the topics it publishes, nothing else;
- READ (and DESCRIBE) the topics it consumes;
- READ the consumer groups named `<service>.*` (a PREFIXED group ACL), so group suffixes such as
  `stock.commands.replay-2` keep working.
`ops` reads (and DESCRIBE_CONFIGS) every topic, DESCRIBEs every service's groups (lag), and
WRITEs `ops.audit.v1` and the topics the services consume: a DLQ replay re-publishes a dead
letter byte for byte to its source topic. It joins no group (the CLI reads with group_id=None).
No IDEMPOTENT_WRITE on the cluster: since Kafka 3.0 (KIP-679) WRITE on any topic allows an
idempotent producer (tests/security proves it against the real broker).

Used by `python -m stockflow.runtime.bootstrap --acls` (creates the ACLs), by
deploy/local/infra.py (creates the SCRAM users of the `secure` profile; it loads this file by
path, so this module uses the standard library only) and by tests/security (every consumer of
every ServiceDefinition is covered; every topic has exactly one writer).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

SUPER_USER = "admin"
OPERATOR = "ops"
AUDIT_TOPIC = "ops.audit.v1"
SCRAM_MECHANISM = "SCRAM-SHA-512"


def dlq(schema: str) -> str:
    return f"{schema}.dlq.v1"


@dataclass(frozen=True)
class Access:
    """What one principal may do. `group_prefix` is None for a principal that never consumes."""

    principal: str
    writes: frozenset[str]
    reads: frozenset[str] = frozenset()
    group_prefix: str | None = None
    upstream: bool = False
    # The operator only: DESCRIBE on these group prefixes, DESCRIBE_CONFIGS on what it reads.
    describes_groups: frozenset[str] = frozenset()
    operator: bool = False


def _service(name: str, schema: str, writes: set[str], reads: set[str]) -> Access:
    return Access(name, frozenset({*writes, dlq(schema)}), frozenset(reads), f"{name}.")


_PRINCIPALS: tuple[Access, ...] = (
    _service("catalog", "catalog", {"catalog.products.v1"}, set()),
    _service(
        "stock",
        "stock",
        {"stock.events.v1", "stock.levels.v1", "stock.movements.v1", "stock.alerts.v1"},
        {
            "stock.commands.v1",
            "warehouse.receipts.v1",
            "catalog.products.v1",
            "fulfillment.events.v1",
        },
    ),
    # The saga orchestrator writes the stock service's command topic (DESIGN.md: order
    # publishes stock.commands.v1, which the contract lists as owned by its reader, stock).
    _service(
        "order",
        "orders",
        {"stock.commands.v1", "orders.events.v1"},
        {"checkout.orders.v1", "stock.events.v1", "fulfillment.events.v1"},
    ),
    _service(
        "fulfillment",
        "fulfillment",
        {"fulfillment.events.v1"},
        {"orders.events.v1", "stock.events.v1", "catalog.products.v1"},
    ),
    _service(
        "accounting",
        "accounting",
        {"accounting.journal.v1"},
        {"stock.movements.v1", "orders.events.v1", "fulfillment.events.v1"},
    ),
    # Upstream systems only produce their input topic.
    Access("checkout", frozenset({"checkout.orders.v1"}), upstream=True),
    Access("warehouse", frozenset({"warehouse.receipts.v1"}), upstream=True),
)


def _operator(principals: tuple[Access, ...]) -> Access:
    """The CLI: reads everything, replays dead letters to what the services consume, audits."""
    services = [a for a in principals if a.group_prefix]
    consumed = {topic for a in services for topic in a.reads}
    every_topic = {topic for a in principals for topic in (*a.writes, *a.reads)} | {AUDIT_TOPIC}
    return Access(
        OPERATOR,
        frozenset({*consumed, AUDIT_TOPIC}),
        frozenset(every_topic),
        describes_groups=frozenset(a.group_prefix or "" for a in services),
        operator=True,
    )


ACCESS: dict[str, Access] = {a.principal: a for a in (*_PRINCIPALS, _operator(_PRINCIPALS))}

SERVICES = tuple(a.principal for a in ACCESS.values() if a.group_prefix)


def principals() -> tuple[str, ...]:
    """Every SCRAM user a secure cluster needs: the super user first, then ACCESS."""
    return (SUPER_USER, *ACCESS)


def writers(topic: str) -> set[str]:
    """Who publishes `topic` (the operator, who only re-publishes dead letters, left out)."""
    return {a.principal for a in ACCESS.values() if topic in a.writes and not a.operator}


def password_env(principal: str) -> str:
    """Where the init (bootstrap --scram-users) finds a principal's password."""
    return f"STOCKFLOW_KAFKA_PASSWORD_{principal.upper()}"


def local_password(principal: str) -> str:
    """Local development only (deploy/local `secure` profile); deployments use secrets."""
    return f"{principal}-secret"


# Kafka's wire codes (org.apache.kafka.common.acl / resource).
class ResourceType(IntEnum):
    TOPIC = 2
    GROUP = 3
    CLUSTER = 4


class PatternType(IntEnum):
    LITERAL = 3
    PREFIXED = 4


class Operation(IntEnum):
    READ = 3
    WRITE = 4
    DESCRIBE = 8
    DESCRIBE_CONFIGS = 10
    IDEMPOTENT_WRITE = 12


ALLOW = 3  # AclPermissionType.ALLOW
ANY_HOST = "*"


@dataclass(frozen=True, order=True)
class AclBinding:
    """One ALLOW rule for `User:<principal>` from any host."""

    principal: str
    resource_type: ResourceType
    resource_name: str
    pattern_type: PatternType
    operation: Operation

    @property
    def kafka_principal(self) -> str:
        return f"User:{self.principal}"

    def __str__(self) -> str:
        return (
            f"{self.kafka_principal} {self.operation.name} {self.resource_type.name}:"
            f"{self.resource_name} ({self.pattern_type.name})"
        )


def acl_bindings(access: dict[str, Access] | None = None) -> list[AclBinding]:
    """Every ALLOW binding the table implies, sorted; the super user needs none."""
    out: set[AclBinding] = set()
    topic, literal = ResourceType.TOPIC, PatternType.LITERAL
    for a in (access or ACCESS).values():
        for name in a.writes:
            out.add(AclBinding(a.principal, topic, name, literal, Operation.WRITE))
            out.add(AclBinding(a.principal, topic, name, literal, Operation.DESCRIBE))
        for name in a.reads:
            out.add(AclBinding(a.principal, topic, name, literal, Operation.READ))
            out.add(AclBinding(a.principal, topic, name, literal, Operation.DESCRIBE))
            if a.operator:  # `stockflow topics list` shows each topic's cleanup.policy
                out.add(AclBinding(a.principal, topic, name, literal, Operation.DESCRIBE_CONFIGS))
        for prefix in a.describes_groups:
            out.add(
                AclBinding(
                    a.principal,
                    ResourceType.GROUP,
                    prefix,
                    PatternType.PREFIXED,
                    Operation.DESCRIBE,
                )
            )
        if a.group_prefix:
            out.add(
                AclBinding(
                    a.principal,
                    ResourceType.GROUP,
                    a.group_prefix,
                    PatternType.PREFIXED,
                    Operation.READ,
                )
            )
    return sorted(out)
