"""Why applying a record failed, decided in one place: the consumer acts on the answer.

- TRANSIENT: the surroundings failed (database or network down, deadlock, serialization
  failure, a lost race). The record is not at fault: retry the batch with backoff, as long
  as it takes, and never dead-letter it.
- POISON: the record itself can never be applied (not a CloudEvent, invalid data, JSON nested
  too deep, a number or string PostgreSQL cannot hold). Retrying cannot help: dead-letter it on
  first sight, with the reason.
- UNKNOWN: anything else, most likely a handler bug. Give it `handler_attempts` tries with
  backoff, then dead-letter it.
"""

from __future__ import annotations

from enum import StrEnum

import asyncpg
from asyncpg.exceptions._base import DataError as ArgumentEncodingError
from pydantic import ValidationError

from stockflow.contracts import InvalidMessage


class RetryLater(Exception):
    """Raised by a handler when the batch should be retried as a whole (e.g. a lost race)."""


class RecordRefused(InvalidMessage):
    """Raised by a handler for a well-formed record its service refuses on its merits (a business
    key already applied with other values): the batch is replayed one record at a time and this
    record goes to the dead-letter topic at once, with `reason`, without retries (poison)."""


class Fault(StrEnum):
    TRANSIENT = "transient"
    POISON = "poison"
    UNKNOWN = "unknown"


TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    RetryLater,
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.LockNotAvailableError,
)

# Checked before TRANSIENT_ERRORS: asyncpg's client-side argument error (an int beyond int4,
# say) is an InterfaceError too, and would otherwise be retried for ever.
POISON_ERRORS: tuple[type[BaseException], ...] = (
    InvalidMessage,
    RecursionError,  # JSON (or a model) nested deeper than Python's stack allows
    ValidationError,  # a handler building a model from the record's values
    OverflowError,
    ArgumentEncodingError,  # a value asyncpg cannot encode for its column type
    asyncpg.exceptions.DataError,  # SQLSTATE class 22: out of range, too long, NUL, bad text
    asyncpg.exceptions.ProgramLimitExceededError,  # class 54: stack depth, index row too big
)


def classify(exc: BaseException) -> Fault:
    if isinstance(exc, POISON_ERRORS):
        return Fault.POISON
    if isinstance(exc, TRANSIENT_ERRORS):
        return Fault.TRANSIENT
    return Fault.UNKNOWN


def is_transient(exc: BaseException) -> bool:
    """Failures of the surroundings, not of the record: retry, never dead-letter."""
    return classify(exc) is Fault.TRANSIENT


def poison_reason(exc: BaseException) -> str:
    """The dead-letter reason of a poison record: what is wrong with it, short."""
    if isinstance(exc, InvalidMessage):
        return exc.reason
    if isinstance(exc, RecursionError):
        return f"nested too deep to process: {exc}"[:1000]
    return f"poison: {type(exc).__name__}: {exc}"[:1000]
