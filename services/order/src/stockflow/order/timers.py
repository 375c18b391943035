"""The timer task: fires due payment deadlines and stock-reply timeouts into the saga.

Timers are rows (see store.claim_due_timers): they survive restarts, and any number of
instances may run this loop, since a claimed timer is locked and skipped by the others.
"""

from __future__ import annotations

import asyncio

from stockflow.order import usecases
from stockflow.order.domain import SagaPolicy
from stockflow.order.settings import OrderSettings
from stockflow.runtime.consumer import is_transient
from stockflow.runtime.logging import get_logger
from stockflow.runtime.service import ServiceContext

log = get_logger(__name__)


class TimerTask:
    """A background task of the service: `ServiceDefinition(background=[TimerTask(...).run])`."""

    def __init__(self, policy: SagaPolicy, settings: OrderSettings) -> None:
        self.policy = policy
        self.poll_interval_s = settings.timer_poll_interval_s
        self.batch_size = settings.timer_batch_size
        self.fired = 0

    async def run(self, ctx: ServiceContext) -> None:
        """Fire due timers until cancelled; a full batch is followed at once by the next."""
        backoff = self.poll_interval_s
        while True:
            try:
                async with ctx.unit_of_work() as uow:
                    due = await usecases.fire_due_timers(uow, self.batch_size, self.policy)
                self.fired += due
                backoff = self.poll_interval_s
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 — the task must outlive any failure
                level = log.warning if is_transient(exc) else log.error
                level("firing timers failed; retrying", error=repr(exc))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if due < self.batch_size:
                await asyncio.sleep(self.poll_interval_s)
