"""The consumer watchdog: no consumer stops silently while its process stays up and ready.

Each consumer's BatchProcessor reports its progress (a batch in hand since when, batches
finished). Every `consumer_watchdog_interval_s` the watchdog checks each consumer: it is
stalled when its FastStream consume loop is not running, or when a fetched batch has made no
progress for `consumer_stall_timeout_s` (retrying a transient failure counts as progress: the
database being down is reported by /readyz's database check, not as a stall). An idle consumer,
with nothing in hand, is never stalled.

On a stall it fails /readyz naming the consumer, logs every asyncio task's stack once, and
restarts that consumer (stop: its handler is cancelled, the batch rolled back, the group left;
start: it rejoins and re-reads from the committed offsets). If the consumer has neither
finished a batch nor gone idle `consumer_restart_grace_s` after that, the process exits with
STALL_EXIT_CODE for its supervisor (systemd, Kubernetes, deploy/local) to restart it.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stockflow.runtime import metrics
from stockflow.runtime.logging import get_logger

log = get_logger(__name__)

STALL_EXIT_CODE = 75  # EX_TEMPFAIL: a restart is expected to help


@dataclass
class ConsumerProgress:
    """Where one consumer is: how many records it has in hand, since when it last moved."""

    clock: Callable[[], float] = time.monotonic
    in_hand: int = 0
    last_beat: float | None = None
    batches_done: int = 0

    def batch_started(self, records: int) -> None:
        self.in_hand, self.last_beat = records, self.clock()

    def beat(self) -> None:
        if self.in_hand:
            self.last_beat = self.clock()

    def batch_finished(self, *, done: bool) -> None:
        self.in_hand, self.last_beat = 0, None
        self.batches_done += done

    def idle_for_stall(self) -> float:
        """Seconds since the batch in hand last moved; 0 with nothing in hand."""
        return 0.0 if self.last_beat is None else self.clock() - self.last_beat


@dataclass
class WatchedConsumer:
    group: str
    subscriber: Any  # FastStream's Kafka subscriber of the group
    progress: ConsumerProgress
    problem: str | None = None
    restarted_at: float | None = None
    batches_at_restart: int = 0

    def diagnose(self, stall_timeout_s: float) -> str | None:
        tasks = getattr(self.subscriber, "tasks", [])
        if not self.subscriber.running or not any(not task.done() for task in tasks):
            return "consume loop not running"
        stuck = self.progress.idle_for_stall()
        if stuck > stall_timeout_s:
            return f"{self.progress.in_hand} fetched record(s) not processed for {stuck:.0f} s"
        return None


def _exit_for_supervisor(code: int) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # not a graceful shutdown: the thing that wedged could block it too


@dataclass
class ConsumerWatchdog:
    service: str
    consumers: list[WatchedConsumer]
    stall_timeout_s: float = 120.0
    restart_grace_s: float = 60.0
    interval_s: float = 5.0
    exit: Callable[[int], None] = _exit_for_supervisor
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        for consumer in self.consumers:  # a series from the start, so alerts see 0 -> 1
            metrics.CONSUMER_STALLED.labels(self.service, consumer.group).set(0)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            await self.check()

    def problems(self) -> dict[str, str]:
        """Stalled (or recovering) consumers by group, for /readyz."""
        return {c.group: c.problem for c in self.consumers if c.problem is not None}

    async def check(self) -> None:
        for consumer in self.consumers:
            if consumer.restarted_at is not None:
                await self._follow_restart(consumer)
                continue
            problem = consumer.diagnose(self.stall_timeout_s)
            if problem is not None:
                await self._on_stall(consumer, problem)

    async def _on_stall(self, consumer: WatchedConsumer, problem: str) -> None:
        consumer.problem = f"stalled: {problem}"
        metrics.CONSUMER_STALLED.labels(self.service, consumer.group).set(1)
        log.error(
            "consumer stalled; restarting it",
            group=consumer.group,
            problem=problem,
            tasks=task_stacks(),
        )
        consumer.restarted_at = self.clock()
        consumer.batches_at_restart = consumer.progress.batches_done
        metrics.CONSUMER_RESTARTS.labels(self.service, consumer.group).inc()
        try:
            await asyncio.wait_for(consumer.subscriber.stop(), self.restart_grace_s)
            await asyncio.wait_for(consumer.subscriber.start(), self.restart_grace_s)
        except Exception as exc:  # noqa: BLE001 — a consumer that cannot restart: leave
            log.error("consumer restart failed", group=consumer.group, error=repr(exc))
            self._give_up(consumer)
            return
        consumer.problem = f"restarted after stall: {problem}"

    async def _follow_restart(self, consumer: WatchedConsumer) -> None:
        """Recovered once it finishes a batch, or is running and idle at the end of the grace."""
        finished = consumer.progress.batches_done > consumer.batches_at_restart
        assert consumer.restarted_at is not None
        if not finished and self.clock() - consumer.restarted_at < self.restart_grace_s:
            return
        if finished or (consumer.diagnose(0) is None and not consumer.progress.in_hand):
            log.info("consumer recovered after restart", group=consumer.group)
            consumer.problem = consumer.restarted_at = None
            metrics.CONSUMER_STALLED.labels(self.service, consumer.group).set(0)
            return
        self._give_up(consumer)

    def _give_up(self, consumer: WatchedConsumer) -> None:
        log.error(
            "consumer still stalled after a restart; exiting for the supervisor to restart us",
            group=consumer.group,
            problem=consumer.problem,
            exit_code=STALL_EXIT_CODE,
        )
        self.exit(STALL_EXIT_CODE)


def task_stacks(limit: int = 50) -> list[dict[str, str]]:
    """Every asyncio task's name and where it waits, outermost call first, for one log line.

    Follows each suspended coroutine's await chain down to the innermost one (asyncio's own
    Task.get_stack stops at the task's outermost frame, which says little about a wedge).
    """
    return [
        {"task": task.get_name(), "stack": _await_chain(task, limit)}
        for task in asyncio.all_tasks()
    ]


def _await_chain(task: asyncio.Task[Any], limit: int) -> str:
    lines: list[str] = []
    awaitable: Any = task.get_coro()
    while awaitable is not None and len(lines) < limit:
        frame = getattr(awaitable, "cr_frame", None) or getattr(awaitable, "gi_frame", None)
        if frame is None:
            lines.append(f"  awaiting {awaitable!r}"[:200])
            break
        code = frame.f_code
        lines.append(f'  File "{code.co_filename}", line {frame.f_lineno}, in {code.co_name}')
        awaitable = getattr(awaitable, "cr_await", None) or getattr(awaitable, "gi_yieldfrom", None)
    return "\n".join(lines)
