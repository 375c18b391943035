"""The five services and the workers as real processes for system tests (and chaos), on the test
profile's ports."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from urllib.parse import urlsplit

from stockflow.runtime.testing.infra import INFRA_SCRIPT, Infra, lane_profile


def _infra_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("stockflow_local_infra", INFRA_SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


class System:
    """Start, stop, kill and restart service and worker processes; their logs land in
    .state/<profile>/logs."""

    def __init__(self, infra: Infra, env: dict[str, str] | None = None) -> None:
        self.local = _infra_module()
        self.env = env or {}
        db = urlsplit(infra.admin_database_url)
        self.profile = dataclasses.replace(
            self.local.PROFILES[lane_profile()],
            kafka_endpoint=infra.kafka_bootstrap,
            pg_endpoint=f"{db.hostname}:{db.port}",
        )
        # Services first: they migrate the schemas their workers use.
        self.groups: tuple[tuple[str, ...], ...] = (self.local.SERVICES, tuple(self.local.WORKERS))
        self.procs: dict[str, subprocess.Popen] = {}

    @property
    def kafka_bootstrap(self) -> str:
        return self.profile.kafka_bootstrap

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.profile.http_port(service)}"

    @property
    def logs(self) -> Path:
        return self.profile.state / "logs"

    def start_all(self) -> None:
        (self.profile.state / "run").mkdir(parents=True, exist_ok=True)
        self.local.stop_services(self.profile)  # never reuse processes running older code
        for group in self.groups:
            for process in group:
                self.procs[process] = self._spawn(process)
            for process in group:
                self.wait_ready(process)

    def start(self, service: str) -> None:
        self.procs[service] = self._spawn(service)
        self.wait_ready(service)

    def _spawn(self, service: str) -> subprocess.Popen:
        saved = {key: os.environ.get(key) for key in self.env}
        os.environ.update(self.env)  # the service's environment is built from ours
        try:
            return self.local.start_service(self.profile, service)
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    def wait_ready(self, service: str, timeout_s: float = 90) -> None:
        proc = self.procs[service]
        self.local.wait_until(
            f"{service} /readyz",
            lambda: self.local.service_ready(self.profile, service),
            timeout_s,
            proc_alive=lambda: proc.poll() is None,
            log_file=self.logs / f"{service}.log",
        )

    def kill(self, service: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs[service]
        os.killpg(proc.pid, sig)
        proc.wait(timeout=30)

    def restart(self, service: str, sig: int = signal.SIGKILL) -> None:
        self.kill(service, sig)
        self.start(service)

    def stop_all(self) -> None:
        self.local.stop_services(self.profile)
        deadline = time.monotonic() + 30
        for proc in self.procs.values():
            while proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
