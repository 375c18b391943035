"""The Makefile does what the README says: `eval "$(make -s status)"` makes `stockflow` a
command aimed at the system, `make down` stops every profile started here, `make test` stops
the infrastructure its tests started unless KEEP_INFRA=1."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load_infra():
    spec = importlib.util.spec_from_file_location(
        "stockflow_local_infra_targets", ROOT / "deploy/local/infra.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_status_puts_the_cli_on_path_once_and_exports_where_the_system_is() -> None:
    script = 'eval "$(make -s status)"; eval "$(make -s status)"; cd /; '
    script += 'command -v stockflow; stockflow --version; echo "$PATH"; printenv ORDER_URL'
    result = subprocess.run(
        ["bash", "-c", script],
        cwd=ROOT,
        env={"HOME": os.environ.get("HOME", "/tmp"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    where, version, path, order_url = result.stdout.splitlines()
    venv_bin = str(ROOT / ".venv" / "bin")
    assert where == f"{venv_bin}/stockflow"
    assert version.startswith("stockflow ")
    assert path.split(":").count(venv_bin) == 1
    assert order_url == "http://127.0.0.1:18083"


def _pretend_kafka(state: Path) -> subprocess.Popen:
    """A process standing for a profile's Kafka: its own process group, its pid in run/."""
    process = subprocess.Popen(["sleep", "300"], start_new_session=True)
    (state / "run").mkdir(parents=True)
    (state / "run" / "kafka.pid").write_text(str(process.pid))
    return process


def test_down_all_stops_every_profile_started_from_the_checkout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    infra = _load_infra()
    monkeypatch.setattr(infra, "ROOT", tmp_path)
    # dev and test are the script's own profiles; bench is tests/bench's.
    running = {
        name: _pretend_kafka(tmp_path / ".state" / name) for name in ("dev", "test", "bench")
    }
    try:
        assert infra.main(["down", "--all"]) == 0
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(p.poll() is None for p in running.values()):
            time.sleep(0.1)
        assert {name: p.poll() is not None for name, p in running.items()} == dict.fromkeys(
            running, True
        )
        assert not any((tmp_path / ".state" / n / "run" / "kafka.pid").exists() for n in running)
    finally:
        for process in running.values():
            process.kill()
            process.wait()


def test_make_down_stops_all_profiles() -> None:
    dry_run = subprocess.run(
        ["make", "-n", "down"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert "infra.py down --all" in dry_run.stdout


@pytest.mark.parametrize(("keep", "stops"), [("", True), ("1", False)])
def test_make_test_stops_its_infrastructure_unless_kept(keep: str, stops: bool) -> None:
    dry_run = subprocess.run(
        ["make", "-n", "test", f"KEEP_INFRA={keep}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    pytest_line = next(line for line in dry_run.stdout.splitlines() if "-m pytest" in line)
    # After pytest, whatever its outcome, in the same shell line so its status is kept.
    assert ("infra.py down --profile" in pytest_line) is stops
    assert pytest_line.endswith("exit $status")
