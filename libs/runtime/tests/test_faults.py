"""The fault taxonomy: what a failure means for the record that caused it."""

from __future__ import annotations

import json

import asyncpg
import pytest
from asyncpg.exceptions._base import DataError as ArgumentEncodingError
from pydantic import BaseModel, ValidationError

from stockflow.contracts import InvalidMessage
from stockflow.runtime.faults import Fault, RetryLater, classify, is_transient, poison_reason


def validation_error() -> ValidationError:
    class Model(BaseModel):
        n: int

    with pytest.raises(ValidationError) as caught:
        Model.model_validate({"n": "x"})
    return caught.value


def recursion_error() -> RecursionError:
    with pytest.raises(RecursionError) as caught:
        json.loads("[" * 100_000 + "]" * 100_000)
    return caught.value


@pytest.mark.parametrize(
    "exc",
    [
        InvalidMessage("not a CloudEvent"),
        recursion_error(),
        validation_error(),
        ArgumentEncodingError("invalid input for query argument $1 (value out of int32 range)"),
        asyncpg.exceptions.NumericValueOutOfRangeError("numeric field overflow"),
        asyncpg.exceptions.StringDataRightTruncationError("value too long"),
        asyncpg.exceptions.CharacterNotInRepertoireError("invalid byte sequence: 0x00"),
        asyncpg.exceptions.StatementTooComplexError("stack depth limit exceeded"),
        asyncpg.exceptions.ProgramLimitExceededError("index row size exceeds maximum"),
    ],
)
def test_what_the_record_itself_gets_wrong_is_poison(exc):
    assert classify(exc) is Fault.POISON
    assert not is_transient(exc)


@pytest.mark.parametrize(
    "exc",
    [
        RetryLater(),
        ConnectionResetError(),
        TimeoutError(),
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"),
        asyncpg.exceptions.DeadlockDetectedError("deadlock detected"),
        asyncpg.exceptions.SerializationError("could not serialize access"),
        asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
        asyncpg.exceptions.AdminShutdownError("terminating connection"),
        asyncpg.exceptions.TooManyConnectionsError("too many clients"),
    ],
)
def test_failures_of_the_surroundings_are_transient(exc):
    assert classify(exc) is Fault.TRANSIENT


@pytest.mark.parametrize(
    "exc", [RuntimeError("a handler bug"), KeyError("x"), asyncpg.exceptions.UniqueViolationError()]
)
def test_anything_else_is_unknown_and_gets_its_attempts(exc):
    assert classify(exc) is Fault.UNKNOWN


def test_the_poison_reason_says_what_is_wrong():
    assert poison_reason(InvalidMessage("seq: not an int")) == "seq: not an int"
    assert poison_reason(recursion_error()).startswith("nested too deep to process")
    reason = poison_reason(asyncpg.exceptions.NumericValueOutOfRangeError("numeric field overflow"))
    assert reason == "poison: NumericValueOutOfRangeError: numeric field overflow"
