"""Run one service process: `python -m stockflow.runtime.serve stock --port 8082`."""

from __future__ import annotations

import argparse
import importlib

import uvicorn

from stockflow.runtime.service import ServiceDefinition, create_app
from stockflow.runtime.settings import SCHEMAS, Settings


def load_definition(service: str) -> ServiceDefinition:
    module = importlib.import_module(f"stockflow.{service}.app")
    return module.service


def main() -> None:
    parser = argparse.ArgumentParser(description="Run a stockflow service")
    parser.add_argument("service", choices=sorted(SCHEMAS))
    parser.add_argument("--host", default=None)
    parser.add_argument("--port", type=int, default=None)
    args = parser.parse_args()
    overrides = {"service": args.service}
    if args.port:
        overrides["http_port"] = args.port
    if args.host:
        overrides["http_host"] = args.host
    settings = Settings(**overrides)
    app = create_app(load_definition(args.service), settings)
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
