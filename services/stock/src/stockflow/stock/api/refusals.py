"""The use cases' refusals as HTTP answers: a conflict is 409, a missing resource 404."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse

from stockflow.runtime.http import idempotent_write
from stockflow.runtime.outbox import UnitOfWork
from stockflow.stock.usecases.refusals import Conflict, NotFound

Action = Callable[[UnitOfWork], Awaitable[tuple[int, Any]]]


def refused(exc: Conflict | NotFound) -> HTTPException:
    return HTTPException(404 if isinstance(exc, NotFound) else 409, str(exc))


async def write(request: Request, action: Action) -> JSONResponse:
    """Run `action` as `idempotent_write` does, answering its refusals with 409 or 404."""

    async def refusing(uow: UnitOfWork) -> tuple[int, Any]:
        try:
            return await action(uow)
        except (Conflict, NotFound) as exc:
            raise refused(exc) from exc

    return await idempotent_write(request, refusing)
