"""Who may do what on Kafka: the single source of truth for principals and their ACLs.

One SCRAM principal per service (`User:<service>`) and one per upstream producer; `admin` is
the super user (bootstrap, operators' CLI, DLQ replays and `ops.audit.v1`). Each principal may
- WRITE (and DESCRIBE) the topics it publishes, nothing else;
- READ (and DESCRIBE) the topics it consumes;
- READ the consumer groups named `<service>.*` (a PREFIXED group ACL), so group suffixes such as
  `stock.commands.replay-2` keep working.
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


def _service(name: str, schema: str, writes: set[str], reads: set[str]) -> Access:
    return Access(name, frozenset({*writes, dlq(schema)}), frozenset(reads), f"{name}.")


ACCESS: dict[str, Access] = {
    a.principal: a
    for a in (
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
}

SERVICES = tuple(name for name, access in ACCESS.items() if not access.upstream)


def principals() -> tuple[str, ...]:
    """Every SCRAM user a secure cluster needs: the super user first, then ACCESS."""
    return (SUPER_USER, *ACCESS)


def writers(topic: str) -> set[str]:
    return {a.principal for a in ACCESS.values() if topic in a.writes}


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
