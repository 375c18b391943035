"""The `secure` profile of deploy/local/infra.py for every test in tests/security.

Kafka with SASL/SCRAM-SHA-512 and the StandardAuthorizer on its own ports and .state/secure/
(the shared `test` and `dev` profiles are never touched). `infra.py up` runs the runtime
bootstrap with `--scram-users --acls`, so the principals and ACLs of
stockflow.runtime.security exist. Reused if already up; stopped at the end of the session only
if this session started it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "deploy/local/infra.py"
HOST, PORT = "127.0.0.1", 39092  # the `secure` profile of deploy/local/infra.py
UP_TIMEOUT_S = 240


def _port_open() -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((HOST, PORT)) == 0


def infra(command: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """`deploy/local/infra.py <command> --profile secure`."""
    return subprocess.run(
        [sys.executable, str(INFRA), command, "--profile", "secure"],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, "STOCKFLOW_PROFILE": "secure"},
    )


@pytest.fixture(scope="session")
def secure_kafka() -> Iterator[str]:
    """The secure profile's bootstrap address: reused if already up, started (bounded) if not."""
    started_here = not _port_open()
    try:
        result = infra("up", UP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        infra("down", 120)
        pytest.fail(
            f"the secure profile did not come up within {UP_TIMEOUT_S}s; "
            "see .state/secure/logs/kafka.log"
        )
    if result.returncode != 0:
        if started_here:
            infra("down", 120)
        pytest.fail(f"`infra.py up --profile secure` failed: {result.stderr.strip()[-800:]}")
    try:
        yield f"{HOST}:{PORT}"
    finally:
        if started_here:  # ours: free its memory; someone else's `make up-secure` stays up
            infra("down", 120)
