"""`python tests/bench/profiled_serve.py SERVICE --port N`: serve under cProfile.

The benchmark's profiling switch without touching service code: the same entry point as
`python -m stockflow.runtime.serve`, with cProfile around it; the stats are written to
$BENCH_PROFILE_OUT when the process is stopped with SIGTERM (uvicorn shuts down gracefully,
then re-raises the signal, which lands in the handler below once uvicorn has put it back).
"""

from __future__ import annotations

import cProfile
import os
import signal
import sys

from stockflow.runtime.serve import main


def _exit(signum: int, _frame: object) -> None:
    sys.exit(128 + signum)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _exit)
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        main()
    finally:
        profiler.disable()
        profiler.dump_stats(os.environ["BENCH_PROFILE_OUT"])
