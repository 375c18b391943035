"""A worker: a process that runs part of a service beside it, on the service's schema.

Some work does not belong in a service's transactional process: it is CPU-bound, or it needs
heavy libraries the hot path should not load. A worker runs it apart. It connects with the
service's runtime role only (the service migrates the schema) and has no Kafka client at all:
events it stages go into the service's outbox, and the service's relay publishes them, so every
topic keeps one publisher per schema and its per-key order. It serves the ops endpoints
(/healthz, /readyz for the database, /metrics) and runs its background tasks.

Run one with `python -m stockflow.runtime.serve <worker>` (settings.WORKERS names them).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from stockflow.runtime.db import create_pool
from stockflow.runtime.logging import configure_logging, get_logger
from stockflow.runtime.service import TaskContext, _retry_until, database_check
from stockflow.runtime.settings import WORKERS, Settings

log = get_logger(__name__)

WorkerTask = Callable[[TaskContext], Coroutine[Any, Any, None]]


@dataclass
class WorkerDefinition:
    """Everything that makes one worker: the runtime turns it into a process."""

    name: str
    description: str
    background: list[WorkerTask] = field(default_factory=list)


def create_worker_app(definition: WorkerDefinition, settings: Settings | None = None) -> FastAPI:
    """The worker process: FastAPI serves the ops endpoints; its lifespan runs the tasks."""
    settings = settings or Settings(service=WORKERS[definition.name])
    configure_logging(definition.name, settings.log_level)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await _retry_until(
            "postgres",
            lambda: create_pool(
                settings.database_url,
                settings.schema_name,
                application_name=definition.name,
                min_size=settings.db_pool_min,
                max_size=settings.db_pool_max,
            ),
        )
        app.state.pool = pool
        context = TaskContext(settings, pool)
        tasks = [
            asyncio.create_task(task(context), name=getattr(task, "__name__", "task"))
            for task in definition.background
        ]
        log.info("worker started", port=settings.http_port, schema=settings.schema_name)
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await pool.close()
            log.info("worker stopped")

    app = FastAPI(
        title=f"stockflow {definition.name}",
        description=definition.description,
        version="1.0.0",
        lifespan=lifespan,
    )

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        """Liveness: the process and its event loop answer."""
        return {"status": "ok", "service": definition.name}

    @app.get("/readyz", tags=["ops"])
    async def readyz() -> JSONResponse:
        """Readiness: the database is reachable (a worker uses no Kafka)."""
        checks = {"database": await database_check(app.state.pool)}
        ok = checks["database"] == "ok"
        return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)

    @app.get("/metrics", tags=["ops"])
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app
