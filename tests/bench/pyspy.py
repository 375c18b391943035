"""Sampling profiles of running service processes with py-spy (no restart, no instrumentation).

cProfile inside an asyncio service mostly measures itself (every coroutine step is a call); a
sampler attached from outside costs the process nothing and sees C frames' time as the Python
line that called them. `record` attaches to each pid for the same window; `summarize` turns the
collapsed stacks into the functions where samples end (self) and those on the stack (inclusive).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import Any

SAMPLE_RATE = 200  # per second


def binary() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


async def record(pids: dict[str, int], seconds: float, out_dir: Path) -> dict[str, Path]:
    """Sample every process in `pids` for `seconds`; {name: collapsed-stack file}."""
    exe = binary()
    if exe is None:
        return {}
    await asyncio.to_thread(out_dir.mkdir, parents=True, exist_ok=True)
    procs = {}
    for name, pid in pids.items():
        path = out_dir / f"{name}.collapsed.txt"
        procs[name] = (
            path,
            await asyncio.create_subprocess_exec(
                exe,
                "record",
                "--pid",
                str(pid),
                "--duration",
                str(max(1, round(seconds))),
                "--rate",
                str(SAMPLE_RATE),
                "--format",
                "raw",
                "--nonblocking",
                "--output",
                str(path),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            ),
        )
    written = {}
    for name, (path, proc) in procs.items():
        _, err = await proc.communicate()
        if proc.returncode == 0 and path.exists():
            written[name] = path
        else:
            print(f"[bench] py-spy on {name} failed: {err.decode()[-300:]}", flush=True)
    return written


FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _frame(text: str) -> str:
    """`func (path/to/module.py:123)` → `func (module.py)`, so a function's lines add up."""
    match = FRAME.match(text)
    if not match:
        return text
    parts = Path(match["file"]).parts
    short = "/".join(parts[-2:]) if len(parts) > 1 else match["file"]
    return f"{match['func']} ({short})"


def summarize(path: Path, seconds: float, top: int = 25) -> dict[str, Any]:
    """Self and inclusive sample shares per function; `busy_percent` is samples / (rate *
    seconds), about the process's CPU in % of one core (py-spy skips idle threads)."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_frame(f) for f in stack.split(";")]
        # The first frame is the thread ("process 123:\"python\"" / thread name): skip it.
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n

    def share(counter: Counter[str]) -> list[list[Any]]:
        if not total:
            return []
        return [[f, round(100 * c / total, 1)] for f, c in counter.most_common(top)]

    return {
        "samples": total,
        "busy_percent": round(100 * total / (SAMPLE_RATE * seconds), 1),
        "self": share(own),
        "inclusive": share(inclusive),
    }
