"""Run one service process, `python -m stockflow.runtime.serve stock --port 8082`, or a worker
beside its service, `python -m stockflow.runtime.serve replenishment --port 8086`."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import io
import signal
import sys

import uvicorn
from fastapi import FastAPI

from stockflow.runtime.service import ServiceDefinition, create_app
from stockflow.runtime.settings import SCHEMAS, WORKERS, Settings
from stockflow.runtime.worker import WorkerDefinition, create_worker_app


def load_definition(service: str) -> ServiceDefinition:
    module = importlib.import_module(f"stockflow.{service}.app")
    return module.service


def load_worker(worker: str) -> WorkerDefinition:
    module = importlib.import_module(f"stockflow.{WORKERS[worker]}.{worker}.app")
    return module.worker


def build_app(process: str, settings: Settings) -> FastAPI:
    """The app of a service or of a worker, by name."""
    if process in WORKERS:
        return create_worker_app(load_worker(process), settings)
    return create_app(load_definition(process), settings)


def dump_tasks() -> None:
    """Print every asyncio task's stack to stderr: `kill -USR1 <pid>` shows where a stuck
    process waits, without stopping it."""
    for task in asyncio.all_tasks():
        stack = io.StringIO()
        task.print_stack(limit=20, file=stack)
        print(f"--- task {task.get_name()}\n{stack.getvalue()}", file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description="Run a stockflow service or worker")
    parser.add_argument("process", choices=sorted([*SCHEMAS, *WORKERS]))
    parser.add_argument("--host", default=None)
    parser.add_argument("--port", type=int, default=None)
    args = parser.parse_args()
    # A worker works on its service's schema, as that service (CloudEvents source, roles).
    overrides = {"service": WORKERS.get(args.process, args.process)}
    if args.port:
        overrides["http_port"] = args.port
    if args.host:
        overrides["http_host"] = args.host
    settings = Settings(**overrides)
    app = build_app(args.process, settings)
    signal.signal(signal.SIGUSR1, lambda *_: dump_tasks())
    uvicorn.run(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
