#!/usr/bin/env python3
"""Local infrastructure for stockflow: Apache Kafka (KRaft) and PostgreSQL as plain processes.

Standard library only, so it runs before the virtualenv exists. Two profiles keep a developer's
running system apart from the test session's: `dev` (make up/run/demo) and `test` (started on
demand by the test fixtures). Each profile has its own ports and its own state folder
(.state/<profile>/, git-ignored) holding Kafka's log dirs, the PostgreSQL cluster, logs and pids.
A third, `secure` (make up-secure, tests/security), runs Kafka with SASL/SCRAM-SHA-512 and the
standard KRaft authorizer: one principal per service with the ACLs of
libs/runtime/src/stockflow/runtime/security.py. Its passwords (`<principal>-secret`) are for
local use only; `status --profile secure` prints the operator CLI's (principal `ops`).

  infra.py fetch                      resolve the Kafka jars from Maven Central into the cache
  infra.py up [--profile P]           start Kafka and PostgreSQL, then create roles/schemas/topics
  infra.py down [--profile P | --all] stop services, Kafka and PostgreSQL (--all: every profile)
  infra.py status [--profile P]       KEY=value lines (eval-able), then what is up as comments
  infra.py run [--profile P]          run the five services and the workers in the foreground
  infra.py start-services / stop-services
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import pwd
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SECURITY_PY = ROOT / "libs/runtime/src/stockflow/runtime/security.py"
KAFKA_POM = ROOT / "deploy/local/kafka/pom.xml"
KAFKA_LOG4J = ROOT / "deploy/local/kafka/log4j2.properties"
KAFKA_VERSION = "4.1.1"
SERVICES = ("catalog", "stock", "order", "fulfillment", "accounting")
# Workers run part of a service beside it, on its schema with its app role and without Kafka
# (stockflow.runtime.worker): worker -> service. They start after the services, which migrate.
WORKERS = {"replenishment": "stock"}
PROCESSES = (*SERVICES, *WORKERS)
# Database schema per service: `order` is a reserved word, so the order service owns `orders`.
SCHEMAS = {
    "catalog": "catalog",
    "stock": "stock",
    "order": "orders",
    "fulfillment": "fulfillment",
    "accounting": "accounting",
}
PG_BIN_CANDIDATES = ("/usr/lib/postgresql/15/bin", "/usr/local/bin", "/usr/bin")
READY_TIMEOUT_S = 90
# Local development tokens only; deployments set STOCKFLOW_API_TOKENS from a secret.
LOCAL_API_TOKENS = (
    '{"dev-admin-token": "admin", "dev-warehouse-token": "warehouse", '
    '"dev-support-token": "support", "dev-read-token": "read"}'
)


class InfraError(Exception):
    """A problem the user can fix; printed as one line."""


@dataclass(frozen=True)
class Profile:
    name: str
    kafka_port: int
    controller_port: int
    pg_port: int
    http_base: int
    # Set when the services run against infrastructure started elsewhere (e.g. the test
    # session's environment or testcontainers): "host:port" of Kafka and of PostgreSQL.
    kafka_endpoint: str | None = None
    pg_endpoint: str | None = None
    # SASL/SCRAM-SHA-512 for clients, StandardAuthorizer with deny-by-default (see `secure`).
    secure: bool = False
    kafka_heap: str = "1g"

    @property
    def state(self) -> Path:
        return ROOT / ".state" / self.name

    @property
    def kafka_bootstrap(self) -> str:
        return self.kafka_endpoint or f"127.0.0.1:{self.kafka_port}"

    @property
    def pg_address(self) -> str:
        return self.pg_endpoint or f"127.0.0.1:{self.pg_port}"

    @property
    def admin_database_url(self) -> str:
        return f"postgresql://postgres:postgres@{self.pg_address}/stockflow"

    def database_url(self, role: str) -> str:
        # Local-only credentials: each role's password is its name. Real deployments set
        # STOCKFLOW_DATABASE_URL from a secret (see deploy/helm).
        return f"postgresql://{role}:{role}@{self.pg_address}/stockflow"

    def http_port(self, process: str) -> int:
        return self.http_base + 1 + PROCESSES.index(process)

    def env(self) -> dict[str, str]:
        values = {
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap,
            "DATABASE_URL": self.admin_database_url,
        }
        for service in SERVICES:
            values[f"{service.upper()}_URL"] = f"http://127.0.0.1:{self.http_port(service)}"
        return values


PROFILES = {
    "dev": Profile("dev", 19092, 19093, 15432, 18080),
    "test": Profile("test", 29092, 29093, 25432, 28080),
    "secure": Profile("secure", 39092, 39093, 35432, 38080, secure=True, kafka_heap="512m"),
    # Extra test lanes (STOCKFLOW_TEST_PROFILE=test-N) so parallel test runs never share ports.
    **{
        f"test-{n}": Profile(
            f"test-{n}",
            40092 + n * 1000,
            40093 + n * 1000,
            40432 + n * 1000,
            40080 + n * 1000,
            kafka_heap="512m",
        )
        for n in range(1, 5)
    },
}
KAFKA_START_TIMEOUT_S = 90


# ----------------------------------------------------------------------------- helpers


def log(msg: str) -> None:
    print(f"[infra] {msg}", file=sys.stderr, flush=True)


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours counts as dead.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def read_pid(path: Path) -> int | None:
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def wait_until(what: str, check, timeout: float, proc_alive=None, log_file: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if proc_alive is not None and not proc_alive():
            raise InfraError(f"{what} exited during start-up; see {log_file}: {tail(log_file)}")
        time.sleep(0.25)
    raise InfraError(f"timed out after {timeout:.0f}s waiting for {what}; see {log_file}")


def tail(path: Path | None, lines: int = 3) -> str:
    if path is None or not path.exists():
        return "(no log)"
    text = path.read_text(errors="replace").strip().splitlines()[-lines:]
    return " | ".join(line.strip() for line in text)


def require_tool(name: str, hint: str) -> str:
    found = shutil.which(name)
    if not found:
        raise InfraError(f"{name} not found on PATH: {hint}")
    return found


def find_process(marker: str) -> int | None:
    """The pid of a live process whose command line mentions `marker` (e.g. its config file)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline and pid_alive(int(proc.name)):
            return int(proc.name)
    return None


def stop_pid(pid_file: Path, what: str, timeout: float = 30) -> None:
    pid = read_pid(pid_file)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return
    log(f"stopping {what} (pid {pid})")
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and pid_alive(pid):
        time.sleep(0.2)
    if pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- kafka


def kafka_libs() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "stockflow" / f"kafka-{KAFKA_VERSION}" / "libs"


def fetch_kafka() -> Path:
    libs = kafka_libs()
    marker = libs / ".complete"
    if marker.exists():
        return libs
    require_tool("java", "install a Java 17+ runtime (apt-get install openjdk-17-jre-headless)")
    mvn = require_tool("mvn", "install Apache Maven (apt-get install maven)")
    log(f"fetching Apache Kafka {KAFKA_VERSION} jars from Maven Central into {libs}")
    shutil.rmtree(libs, ignore_errors=True)
    libs.mkdir(parents=True)
    result = subprocess.run(
        [
            mvn,
            "-q",
            "-B",
            "-f",
            str(KAFKA_POM),
            f"-Dkafka.version={KAFKA_VERSION}",
            "dependency:copy-dependencies",
            f"-DoutputDirectory={libs}",
            "-DincludeScope=runtime",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if result.returncode != 0:
        raise InfraError(f"maven could not resolve Kafka: {(result.stdout + result.stderr)[-400:]}")
    if not any(libs.glob("kafka_2.13-*.jar")):
        raise InfraError(f"maven finished but no kafka_2.13 jar is in {libs}")
    marker.touch()
    return libs


def kafka_java(libs: Path, *args: str, heap: str = "256m") -> list[str]:
    return [
        require_tool("java", "install a Java 17+ runtime"),
        f"-Xmx{heap}",
        f"-Dlog4j2.configurationFile={KAFKA_LOG4J}",
        "-cp",
        f"{libs}/*",
        *args,
    ]


def security_module():
    """stockflow.runtime.security loaded by path (it is standard library only)."""
    spec = importlib.util.spec_from_file_location("_stockflow_security", SECURITY_PY)
    if spec is None or spec.loader is None:
        raise InfraError(f"cannot load {SECURITY_PY}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def kafka_credentials(principal: str) -> dict[str, str]:
    """STOCKFLOW_KAFKA_* for `principal` on the secure profile (local passwords only)."""
    return {
        "STOCKFLOW_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "STOCKFLOW_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "STOCKFLOW_KAFKA_USERNAME": principal,
        "STOCKFLOW_KAFKA_PASSWORD": security_module().local_password(principal),
    }


def listener_properties(p: Profile) -> list[str]:
    client = f"127.0.0.1:{p.kafka_port}"
    controller = f"127.0.0.1:{p.controller_port}"
    if not p.secure:
        return [
            f"listeners=PLAINTEXT://{client},CONTROLLER://{controller}",
            f"advertised.listeners=PLAINTEXT://{client}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        ]
    # Clients (and the broker's own inter-broker client) authenticate with SCRAM-SHA-512 on
    # CLIENT; its users are written into the metadata log at format time (`--add-scram`).
    # KRaft cannot use SCRAM on the controller listener (the credentials live in the metadata
    # the controller serves), so CONTROLLER uses SASL/PLAIN with a static JAAS user `admin`.
    admin = security_module().SUPER_USER
    password = security_module().local_password(admin)
    plain = (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'username="{admin}" password="{password}" user_{admin}="{password}";'
    )
    scram = (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{admin}" password="{password}";'
    )
    return [
        f"listeners=CLIENT://{client},CONTROLLER://{controller}",
        f"advertised.listeners=CLIENT://{client}",
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=CLIENT",
        "listener.security.protocol.map=CLIENT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT",
        "sasl.enabled.mechanisms=SCRAM-SHA-512",
        "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512",
        "sasl.mechanism.controller.protocol=PLAIN",
        "listener.name.controller.sasl.enabled.mechanisms=PLAIN",
        f"listener.name.controller.plain.sasl.jaas.config={plain}",
        f"listener.name.client.scram-sha-512.sasl.jaas.config={scram}",
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "allow.everyone.if.no.acl.found=false",
        f"super.users=User:{admin}",
    ]


def kafka_properties(p: Profile) -> str:
    data = p.state / "kafka" / "data"
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{p.controller_port}",
            *listener_properties(p),
            f"log.dirs={data}",
            # A single node: every internal topic has one replica.
            "offsets.topic.replication.factor=1",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "default.replication.factor=1",
            "min.insync.replicas=1",
            "num.partitions=6",
            "offsets.topic.num.partitions=12",
            "auto.create.topics.enable=false",
            "group.initial.rebalance.delay.ms=0",
            "message.max.bytes=12582912",
            "replica.fetch.max.bytes=12582912",
            "log.retention.hours=168",
            "log.segment.bytes=268435456",
            "",
        ]
    )


def kafka_up(p: Profile) -> None:
    pid_file = p.state / "run" / "kafka.pid"
    kdir = p.state / "kafka"
    props = kdir / "server.properties"
    running = read_pid(pid_file) or find_process(str(props))
    if running and port_open(p.kafka_port):
        pid_file.write_text(str(running))  # adopt a broker whose pid file was lost
        log(f"kafka already up on {p.kafka_bootstrap}")
        return
    for port in (p.kafka_port, p.controller_port):
        if port_open(port):
            raise InfraError(
                f"port {port} is taken by another process; stop it, or "
                f"`make down` if it is a stale stockflow broker"
            )
    libs = fetch_kafka()
    data = kdir / "data"
    kdir.mkdir(parents=True, exist_ok=True)
    props.write_text(kafka_properties(p))
    if data.exists() and any(data.iterdir()) and not (data / "meta.properties").exists():
        raise InfraError(
            f"{data} exists but holds no meta.properties (corrupt state); "
            f"run `make clean-state` to start afresh"
        )
    if not (data / "meta.properties").exists():
        cluster_id = subprocess.run(
            kafka_java(libs, "kafka.tools.StorageTool", "random-uuid"),
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        scram: list[str] = []
        if p.secure:  # every principal of the access table, as SCRAM users in the metadata
            sec = security_module()
            for principal in sec.principals():
                scram += [
                    "--add-scram",
                    f"{sec.SCRAM_MECHANISM}=[name={principal},"
                    f"password={sec.local_password(principal)}]",
                ]
        result = subprocess.run(
            kafka_java(
                libs,
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cluster_id.splitlines()[-1],
                "-c",
                str(props),
                *scram,
            ),
            capture_output=True,
            text=True,
            timeout=KAFKA_START_TIMEOUT_S,
        )
        if result.returncode != 0:
            raise InfraError(
                f"kafka storage format failed: {(result.stdout + result.stderr)[-300:]}"
            )
    log_file = p.state / "logs" / "kafka.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as out:
        proc = subprocess.Popen(
            kafka_java(
                libs,
                "-XX:+UseG1GC",
                "-XX:MaxGCPauseMillis=20",
                "kafka.Kafka",
                str(props),
                heap=p.kafka_heap,
            ),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=kdir,
        )
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(str(proc.pid))
    log(f"starting kafka on {p.kafka_bootstrap} (log {log_file})")
    wait_until(
        f"kafka on {p.kafka_bootstrap}",
        lambda: port_open(p.kafka_port),
        KAFKA_START_TIMEOUT_S,
        proc_alive=lambda: proc.poll() is None,
        log_file=log_file,
    )


# ----------------------------------------------------------------------------- postgres


def pg_bin(tool: str) -> str:
    for base in PG_BIN_CANDIDATES:
        candidate = Path(base) / tool
        if candidate.exists():
            return str(candidate)
    raise InfraError(
        f"PostgreSQL binary {tool} not found (looked in {', '.join(PG_BIN_CANDIDATES)}); "
        "install postgresql-15"
    )


def as_pg_user(cmd: list[str]) -> list[str]:
    # The server refuses to run as root; the project cluster runs as the postgres user then.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


def pg_owner_ids() -> tuple[int, int] | None:
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam("postgres")
    except KeyError as exc:
        raise InfraError(
            "running as root needs a `postgres` OS user to own the cluster; "
            "create it (useradd postgres) or run as a normal user"
        ) from exc
    return entry.pw_uid, entry.pw_gid


def pg_init_cluster(p: Profile, data: Path, run: Path, owner: tuple[int, int] | None) -> None:
    """initdb a new cluster owned by `owner` and append the local settings to its config."""
    data.mkdir(parents=True, exist_ok=True)
    pwfile = run / "pgpass.init"
    pwfile.write_text("postgres\n")
    if owner:
        os.chown(data, *owner)
        os.chown(pwfile, *owner)
    result = subprocess.run(
        as_pg_user(
            [
                pg_bin("initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                f"--pwfile={pwfile}",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ]
        ),
        capture_output=True,
        text=True,
    )
    pwfile.unlink(missing_ok=True)
    if result.returncode != 0:
        raise InfraError(f"initdb failed: {(result.stdout + result.stderr)[-300:]}")
    with open(data / "postgresql.conf", "a") as conf:
        conf.write(
            "\n# stockflow local cluster\n"
            "listen_addresses = '127.0.0.1'\n"
            f"port = {p.pg_port}\n"
            f"unix_socket_directories = '{run}'\n"
            "max_connections = 300\n"
            "shared_buffers = 512MB\n"
            "wal_buffers = 16MB\n"
            "max_wal_size = 2GB\n"
            "checkpoint_timeout = 15min\n"
            "log_min_duration_statement = 2000\n"
        )


def pg_up(p: Profile) -> None:
    data = p.state / "pg"
    run = p.state / "run"
    logs = p.state / "logs"
    for d in (run, logs):
        d.mkdir(parents=True, exist_ok=True)
    owner = pg_owner_ids()
    pg_ctl = pg_bin("pg_ctl")
    status = subprocess.run(as_pg_user([pg_ctl, "status", "-D", str(data)]), capture_output=True)
    if data.exists() and status.returncode == 0 and port_open(p.pg_port):
        log(f"postgres already up on 127.0.0.1:{p.pg_port}")
        return
    if port_open(p.pg_port):
        raise InfraError(
            f"port {p.pg_port} is taken by another process; stop it, or `make down` "
            "if it is a stale stockflow cluster"
        )
    if data.exists() and any(data.iterdir()) and not (data / "PG_VERSION").exists():
        raise InfraError(
            f"{data} exists but is not a PostgreSQL cluster (corrupt state); "
            "run `make clean-state` to start afresh"
        )
    if owner:
        for d in (p.state, run, logs):
            os.chown(d, *owner)
    if not (data / "PG_VERSION").exists():
        pg_init_cluster(p, data, run, owner)
    log_file = logs / "postgres.log"
    if owner and log_file.exists():
        os.chown(log_file, *owner)
    log(f"starting postgres on 127.0.0.1:{p.pg_port} (log {log_file})")
    result = subprocess.run(
        as_pg_user(
            [
                pg_ctl,
                "start",
                "-D",
                str(data),
                "-l",
                str(log_file),
                "-w",
                "-t",
                str(READY_TIMEOUT_S),
            ]
        ),
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise InfraError(f"postgres did not start: {tail(log_file)}")
    wait_until(
        f"postgres on 127.0.0.1:{p.pg_port}",
        lambda: port_open(p.pg_port),
        READY_TIMEOUT_S,
        log_file=log_file,
    )
    exists = psql(p, "postgres", "SELECT 1 FROM pg_database WHERE datname = 'stockflow'")
    if exists.strip() != "1":
        psql(p, "postgres", "CREATE DATABASE stockflow")


def psql(p: Profile, db: str, sql: str) -> str:
    result = subprocess.run(
        as_pg_user(
            [
                pg_bin("psql"),
                "-h",
                str(p.state / "run"),
                "-p",
                str(p.pg_port),
                "-U",
                "postgres",
                "-d",
                db,
                "-tAX",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ]
        ),
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise InfraError(f"psql failed: {result.stderr.strip()[-300:]}")
    return result.stdout


def pg_down(p: Profile) -> None:
    data = p.state / "pg"
    if not (data / "PG_VERSION").exists():
        return
    subprocess.run(
        as_pg_user([pg_bin("pg_ctl"), "stop", "-D", str(data), "-m", "fast", "-w"]),
        capture_output=True,
    )


def pg_running(p: Profile) -> bool:
    data = p.state / "pg"
    if not (data / "PG_VERSION").exists():
        return False
    return (
        subprocess.run(
            as_pg_user([pg_bin("pg_ctl"), "status", "-D", str(data)]), capture_output=True
        ).returncode
        == 0
    )


# ----------------------------------------------------------------------------- services


def venv_python() -> str:
    candidate = ROOT / ".venv" / "bin" / "python"
    if not candidate.exists():
        raise InfraError("no virtualenv: run `make setup` first")
    return str(candidate)


def bootstrap(p: Profile) -> None:
    """Roles, schemas and topics: idempotent, done by the runtime so compose/helm share it."""
    args, env = ["--local-passwords"], {**os.environ, **p.env()}
    if p.secure:  # the super user creates topics, the SCRAM users and ACLs of the access table
        args += ["--scram-users", "--acls"]
        env.update(kafka_credentials(security_module().SUPER_USER))
    result = subprocess.run(
        [venv_python(), "-m", "stockflow.runtime.bootstrap", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    if result.returncode != 0:
        raise InfraError(f"bootstrap failed: {(result.stdout + result.stderr).strip()[-600:]}")


def service_env(p: Profile, process: str) -> dict[str, str]:
    if process in WORKERS:  # the service's app role only: no migrations, no Kafka principal
        schema = SCHEMAS[WORKERS[process]]
        return {
            **os.environ,
            "STOCKFLOW_SERVICE": WORKERS[process],
            "STOCKFLOW_DATABASE_URL": p.database_url(f"{schema}_app"),
            "STOCKFLOW_HTTP_PORT": str(p.http_port(process)),
        }
    schema = SCHEMAS[process]
    return {
        **os.environ,
        "STOCKFLOW_SERVICE": process,
        "STOCKFLOW_KAFKA_BOOTSTRAP_SERVERS": p.kafka_bootstrap,
        "STOCKFLOW_DATABASE_URL": p.database_url(f"{schema}_app"),
        "STOCKFLOW_MIGRATION_DATABASE_URL": p.database_url(f"{schema}_owner"),
        "STOCKFLOW_HTTP_PORT": str(p.http_port(process)),
        "STOCKFLOW_STATE_DIR": str(p.state),
        "STOCKFLOW_API_TOKENS": LOCAL_API_TOKENS,
        **{k: v for k, v in p.env().items() if k.endswith("_URL") and k != "DATABASE_URL"},
        **(kafka_credentials(process) if p.secure else {}),
    }


def service_cmd(service: str, port: int) -> list[str]:
    return [venv_python(), "-m", "stockflow.runtime.serve", service, "--port", str(port)]


def start_service(p: Profile, service: str) -> subprocess.Popen:
    log_file = p.state / "logs" / f"{service}.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as out:
        proc = subprocess.Popen(
            service_cmd(service, p.http_port(service)),
            env=service_env(p, service),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=ROOT,
        )
    (p.state / "run" / f"{service}.pid").write_text(str(proc.pid))
    return proc


def service_ready(p: Profile, service: str) -> bool:
    try:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{p.http_port(service)}/readyz", timeout=1
        ) as resp:
            return resp.status == 200
    except OSError:
        return False


def start_services(p: Profile) -> dict[str, subprocess.Popen]:
    """The services, then (once they are ready, so their schemas are migrated) the workers."""
    procs = start_processes(p, SERVICES)
    return {**procs, **start_processes(p, tuple(WORKERS))}


def start_processes(p: Profile, processes: tuple[str, ...]) -> dict[str, subprocess.Popen]:
    procs: dict[str, subprocess.Popen] = {}
    for process in processes:
        if read_pid(p.state / "run" / f"{process}.pid") and service_ready(p, process):
            continue
        if port_open(p.http_port(process)):
            raise InfraError(
                f"port {p.http_port(process)} for {process} is taken by another process"
            )
        procs[process] = start_service(p, process)
    for process, proc in procs.items():
        wait_until(
            f"{process} /readyz on port {p.http_port(process)}",
            lambda s=process: service_ready(p, s),
            READY_TIMEOUT_S,
            proc_alive=lambda pr=proc: pr.poll() is None,
            log_file=p.state / "logs" / f"{process}.log",
        )
        log(f"{process} ready on http://127.0.0.1:{p.http_port(process)}")
    return procs


def stop_services(p: Profile) -> None:
    for process in PROCESSES:
        stop_pid(p.state / "run" / f"{process}.pid", process, timeout=15)


def run_foreground(p: Profile) -> None:
    procs = start_services(p)
    log(
        "all five services and the workers are up; Ctrl-C stops them "
        "(Kafka and PostgreSQL stay up: make down)"
    )
    try:
        while True:
            for service, proc in procs.items():
                if proc.poll() is not None:
                    raise InfraError(
                        f"{service} exited with {proc.returncode}; "
                        f"see {p.state / 'logs' / (service + '.log')}"
                    )
            time.sleep(1)
    except KeyboardInterrupt:
        log("stopping services")
    finally:
        stop_services(p)


# ----------------------------------------------------------------------------- commands


def up(p: Profile) -> None:
    require_tool("java", "install a Java 17+ runtime (apt-get install openjdk-17-jre-headless)")
    p.state.mkdir(parents=True, exist_ok=True)
    pg_up(p)
    kafka_up(p)
    bootstrap(p)
    log(f"up: kafka {p.kafka_bootstrap}, postgres 127.0.0.1:{p.pg_port} ({p.name} profile)")


def down(p: Profile) -> None:
    if not p.state.exists():
        return
    stop_services(p)
    pid_file = p.state / "run" / "kafka.pid"
    if read_pid(pid_file) is None and (orphan := find_process(str(p.state / "kafka"))):
        pid_file.write_text(str(orphan))
    stop_pid(pid_file, "kafka", timeout=60)
    pg_down(p)


def down_all() -> None:
    """Stop every profile started from this checkout: each folder of .state/ (dev, test,
    test-N, secure, and tests/bench's `bench`, which this script does not define: stopping
    only needs its folder's pid files and PostgreSQL data)."""
    folders = (ROOT / ".state").iterdir() if (ROOT / ".state").is_dir() else ()
    for folder in sorted(f for f in folders if f.is_dir()):
        down(PROFILES.get(folder.name) or replace(PROFILES["dev"], name=folder.name))


def path_line(bin_dir: Path) -> str:
    """Shell that puts the virtualenv's bin (the `stockflow` CLI) first on PATH, once."""
    quoted = shlex.quote(str(bin_dir))
    return f'case ":$PATH:" in *:{quoted}:*) ;; *) PATH={quoted}:"$PATH" ;; esac'


def status(p: Profile) -> None:
    env = p.env()
    if p.secure:  # the operator CLI's own principal (stockflow.runtime.security.OPERATOR)
        env.update(kafka_credentials(security_module().OPERATOR))
    for key, value in env.items():
        print(f"{key}={shlex.quote(value)}")
    # After `eval`, the CLI sees these and finds itself: export them, put .venv/bin on PATH.
    print(f"export {' '.join(env)}")
    print(path_line(ROOT / ".venv" / "bin"))
    kafka = read_pid(p.state / "run" / "kafka.pid") is not None and port_open(p.kafka_port)
    print(f"# kafka: {'up' if kafka else 'down'} ({p.kafka_bootstrap})")
    print(f"# postgres: {'up' if pg_running(p) else 'down'} (127.0.0.1:{p.pg_port})")
    for process in PROCESSES:
        state = "up" if service_ready(p, process) else "down"
        print(f"# {process}: {state} (http://127.0.0.1:{p.http_port(process)})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "command",
        choices=["fetch", "up", "down", "status", "run", "start-services", "stop-services"],
    )
    parser.add_argument(
        "--profile", default=os.environ.get("STOCKFLOW_PROFILE", "dev"), choices=sorted(PROFILES)
    )
    parser.add_argument("--all", action="store_true", help="down: every profile, not one")
    args = parser.parse_args(argv)
    profile = PROFILES[args.profile]
    try:
        match args.command:
            case "fetch":
                fetch_kafka()
            case "up":
                up(profile)
            case "down" if args.all:
                down_all()
            case "down":
                down(profile)
            case "status":
                status(profile)
            case "run":
                run_foreground(profile)
            case "start-services":
                start_services(profile)
            case "stop-services":
                stop_services(profile)
    except InfraError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except subprocess.TimeoutExpired as exc:
        print(f"error: timed out running {exc.cmd[0]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
