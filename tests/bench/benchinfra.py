"""The benchmark's own Kafka and PostgreSQL: deploy/local with a dedicated `bench` profile.

The `dev` and `test` profiles belong to other people's runs; the benchmark starts its own
broker and cluster (own ports, own state in .state/bench/) so it never disturbs theirs and
their traffic never lands in its figures. Services are started the way deploy/local starts
them (py-spy attaches to them from outside when the bench profiles; see pyspy.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import psutil

ROOT = Path(__file__).resolve().parents[2]
INFRA_SCRIPT = ROOT / "deploy" / "local" / "infra.py"
BENCH_DIR = Path(__file__).resolve().parent


def local_infra() -> ModuleType:
    spec = importlib.util.spec_from_file_location("stockflow_local_infra", INFRA_SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


LOCAL = local_infra()
# Below the kernel's ephemeral range (32768+), where a client socket could take a listen port.
PROFILE = LOCAL.Profile("bench", 30092, 30093, 30432, 30080)
SERVICES: tuple[str, ...] = LOCAL.SERVICES
ADMIN_TOKEN = "dev-admin-token"  # deploy/local's LOCAL_API_TOKENS


@dataclasses.dataclass
class BenchInfra:
    profile: object = PROFILE

    @property
    def kafka_bootstrap(self) -> str:
        return PROFILE.kafka_bootstrap

    @property
    def admin_url(self) -> str:
        return PROFILE.admin_database_url

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{PROFILE.http_port(service)}"

    @property
    def state(self) -> Path:
        return PROFILE.state

    def up(self) -> None:
        """Start (or reuse) the bench broker and cluster; roles, schemas and topics in place."""
        LOCAL.up(PROFILE)

    def down(self) -> None:
        LOCAL.down(PROFILE)

    def kafka_pid(self) -> int | None:
        return LOCAL.read_pid(PROFILE.state / "run" / "kafka.pid")

    def postgres_pid(self) -> int | None:
        with contextlib.suppress(OSError, ValueError):
            return int((PROFILE.state / "pg" / "postmaster.pid").read_text().split()[0])
        return None

    def psql(self, db: str, sql: str) -> str:
        return LOCAL.psql(PROFILE, db, sql)

    def pg_run_dir(self) -> Path:
        return PROFILE.state / "run"


class Services:
    """The five service processes on the bench profile (`standin_stock`: see standin_stock.py)."""

    def __init__(self, env: dict[str, str] | None = None, standin_stock: bool = False) -> None:
        self.env = env or {}
        self.standin_stock = standin_stock
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs = PROFILE.state / "logs"

    def start_all(self) -> None:
        (PROFILE.state / "run").mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        LOCAL.stop_services(PROFILE)
        try:
            for service in SERVICES:
                self.procs[service] = self._spawn(service)
            for service in SERVICES:
                proc = self.procs[service]
                LOCAL.wait_until(
                    f"{service} /readyz",
                    lambda s=service: LOCAL.service_ready(PROFILE, s),
                    120,
                    proc_alive=lambda p=proc: p.poll() is None,
                    log_file=self.logs / f"{service}.log",
                )
        except BaseException:
            self.stop_all()
            raise

    def _spawn(self, service: str) -> subprocess.Popen:
        env = {**LOCAL.service_env(PROFILE, service), **self.env}
        cmd = LOCAL.service_cmd(service, PROFILE.http_port(service))
        if service == "stock" and self.standin_stock:
            cmd = [cmd[0], str(BENCH_DIR / "standin_stock.py"), *cmd[3:]]
        log_file = self.logs / f"{service}.log"
        with open(log_file, "ab") as out:
            proc = subprocess.Popen(
                cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT
            )
        (PROFILE.state / "run" / f"{service}.pid").write_text(str(proc.pid))
        return proc

    def stop(self, service: str, timeout_s: float = 30) -> None:
        """SIGTERM one service and wait for it (SIGKILL after `timeout_s`)."""
        proc = self.procs.pop(service, None)
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        (PROFILE.state / "run" / f"{service}.pid").unlink(missing_ok=True)

    def start(self, service: str) -> None:
        """Start one (stopped) service and wait until it is ready."""
        proc = self.procs[service] = self._spawn(service)
        LOCAL.wait_until(
            f"{service} /readyz",
            lambda: LOCAL.service_ready(PROFILE, service),
            120,
            proc_alive=lambda: proc.poll() is None,
            log_file=self.logs / f"{service}.log",
        )

    def pids(self) -> dict[str, int]:
        return {s: p.pid for s, p in self.procs.items() if p.poll() is None}

    def stop_all(self, timeout_s: float = 30) -> None:
        """SIGTERM each (uvicorn shuts down gracefully), then wait; SIGKILL after `timeout_s`."""
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for proc in self.procs.values():
            while proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        for service in SERVICES:
            (PROFILE.state / "run" / f"{service}.pid").unlink(missing_ok=True)


class CpuMeter:
    """CPU seconds per process group between two readings (psutil), as % of one core."""

    def __init__(self, groups: dict[str, list[int]], recursive: frozenset[str] = frozenset()):
        self.groups = groups
        self.recursive = recursive  # groups whose children count too (postgres backends)
        self._start: dict[str, dict[int, float]] = {}
        self._t0 = 0.0
        self.seconds: dict[str, float] = {}

    @staticmethod
    def _tree(pid: int, recursive: bool) -> list[psutil.Process]:
        try:
            root = psutil.Process(pid)
            return [root, *root.children(recursive=True)] if recursive else [root]
        except psutil.Error:
            return []

    def _cpu(self, name: str) -> dict[int, float]:
        """CPU seconds per live pid of the group."""
        found: dict[int, float] = {}
        for pid in self.groups[name]:
            for proc in self._tree(pid, name in self.recursive):
                with contextlib.suppress(psutil.Error):
                    times = proc.cpu_times()
                    found[proc.pid] = times.user + times.system
        return found

    def _used(self, name: str) -> float:
        """Per pid, so a backend that exits during the interval does not count negative
        (its CPU is lost instead) and one that starts during it counts from zero."""
        before = self._start.get(name, {})
        return sum(max(cpu - before.get(pid, 0.0), 0.0) for pid, cpu in self._cpu(name).items())

    @staticmethod
    def _machine() -> float:
        times = psutil.cpu_times()
        return sum(times) - times.idle - getattr(times, "iowait", 0.0)

    def start(self) -> None:
        self._t0 = time.perf_counter()
        self._start = {name: self._cpu(name) for name in self.groups}
        self._start_machine = self._machine()

    def stop(self) -> dict[str, float]:
        """{group: %}, plus `machine` (all CPUs; 100 per core) and `other` (not ours).

        The CPU seconds themselves stay in `seconds` ({group: s}, plus `elapsed`)."""
        elapsed = max(time.perf_counter() - self._t0, 1e-9)
        self.seconds = {name: self._used(name) for name in self.groups} | {"elapsed": elapsed}
        used = {name: round(100 * self.seconds[name] / elapsed, 1) for name in self.groups}
        machine = round(100 * (self._machine() - self._start_machine) / elapsed, 1)
        return used | {"machine": machine, "other": round(max(machine - sum(used.values()), 0), 1)}
