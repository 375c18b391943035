"""HTTP pieces every service shares: bearer-token roles and idempotent writes."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from fastapi import Depends, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse

from stockflow.runtime.outbox import UnitOfWork

ROLES = ("admin", "warehouse", "support", "read")


def _token_roles(request: Request) -> dict[str, str]:
    return request.app.state.settings.api_tokens


def require_role(*allowed: str) -> Callable[[Request], str]:
    """A FastAPI dependency: the bearer token must map to one of `allowed` (admin always may)."""

    def check(request: Request) -> str:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise HTTPException(401, "missing bearer token", {"WWW-Authenticate": "Bearer"})
        role = _token_roles(request).get(token)
        if role is None:
            raise HTTPException(401, "unknown bearer token", {"WWW-Authenticate": "Bearer"})
        if role != "admin" and role not in allowed:
            raise HTTPException(403, f"role {role} may not do this")
        return role

    return check


WriteAction = Callable[[UnitOfWork], Awaitable[tuple[int, Any]]]


async def idempotent_write(request: Request, action: WriteAction) -> JSONResponse:
    """Run `action` in one transaction, honouring an `Idempotency-Key` header.

    A retry with the same key and body returns the first response and changes nothing; the same
    key with a different body or query string is refused with 422. Concurrent retries
    serialise on the key row.
    `action` returns (status code, JSON-able body) and may raise HTTPException (nothing is kept).
    """
    pool: asyncpg.Pool = request.app.state.pool
    source: str = request.app.state.source
    key = request.headers.get("idempotency-key")
    body = await request.body()
    # The query string is part of the request: same key, other options is another request.
    fingerprint = hashlib.sha256(request.url.query.encode() + b"\0" + body).hexdigest()
    async with pool.acquire() as conn, conn.transaction():
        uow = UnitOfWork(conn, source=source)
        if key:
            if len(key) > 200:
                raise HTTPException(422, "Idempotency-Key: at most 200 characters")
            claimed = await conn.fetchval(
                "INSERT INTO http_idempotency (idempotency_key, method, path, fingerprint) "
                "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING true",
                key,
                request.method,
                request.url.path,
                fingerprint,
            )
            if not claimed:
                row = await conn.fetchrow(
                    "SELECT fingerprint, status_code, response FROM http_idempotency "
                    "WHERE idempotency_key = $1 AND method = $2 AND path = $3",
                    key,
                    request.method,
                    request.url.path,
                )
                if row["fingerprint"] != fingerprint:
                    raise HTTPException(
                        422, "Idempotency-Key: this key was used with a different request body"
                    )
                return JSONResponse(
                    row["response"],
                    status_code=row["status_code"],
                    headers={"Idempotent-Replayed": "true"},
                )
        status_code, payload = await action(uow)
        content = jsonable_encoder(payload)
        if key:
            await conn.execute(
                "UPDATE http_idempotency SET status_code = $4, response = $5::jsonb "
                "WHERE idempotency_key = $1 AND method = $2 AND path = $3",
                key,
                request.method,
                request.url.path,
                status_code,
                json.loads(json.dumps(content)),
            )
        await uow.flush()
    return JSONResponse(content, status_code=status_code)


def get_pool(request: Request) -> asyncpg.Pool:
    return request.app.state.pool


PoolDep = Depends(get_pool)
