"""Business rules for a checkout submission, beyond what the JSON schema can say.

Functions take the `data` of `checkout.order.submitted.v1` as a plain dict and never raise on
malformed input: each problem becomes a `Violation` naming the field at fault.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from stockflow.contracts.currencies import MINOR_UNITS
from stockflow.order.domain.messages import OrderSubmitted
from stockflow.order.domain.model import BackorderPolicy, OrderLine, PaymentStatus

MAX_LINES = 100
MAX_LINE_QUANTITY = 10_000
MAX_ORDER_ID_LENGTH = 128
DEFAULT_BACKORDER_POLICY = BackorderPolicy.PER_SKU
_PRICE = re.compile(r"^-?\d+(\.(\d+))?$")


@dataclass(frozen=True)
class Violation:
    """One broken rule; `field` is a path such as `lines[2].quantity`."""

    field: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


def usable_order_id(payload: Any) -> str | None:
    """The order id if the submission can be answered at all; None means dead-letter it."""
    if not isinstance(payload, Mapping):
        return None
    order_id = payload.get("order_id")
    if isinstance(order_id, str) and 0 < len(order_id.strip()) <= MAX_ORDER_ID_LENGTH:
        return order_id
    return None


def validate_order(payload: Mapping[str, Any]) -> list[Violation]:
    """Every business rule the submission breaks; an empty list means it can be accepted."""
    violations: list[Violation] = []
    if usable_order_id(payload) is None:
        violations.append(Violation("order_id", "must be a non-empty string"))
    currency = payload.get("currency")
    minor_digits = MINOR_UNITS.get(currency) if isinstance(currency, str) else None
    if minor_digits is None:
        violations.append(Violation("currency", f"unknown ISO 4217 currency {currency!r}"))
    violations += _line_violations(payload.get("lines"), minor_digits)
    violations += _payment_violations(payload.get("payment"))
    policy = _backorder_policy(payload)
    # Membership in a list, not a set: a malformed value may be unhashable JSON.
    if policy not in list(BackorderPolicy):
        violations.append(Violation("backorder_policy", "must be 'allow' or 'reject'"))
    return violations


def submission_fingerprint(payload: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON form: equal for equal payloads whatever the key order.

    Pass the submission's `data` as decoded from JSON, not a parsed model (decimals and times
    must still be strings).
    """
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def same_submission(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """True when two submissions are the same order (a re-delivery or a retry upstream)."""
    return submission_fingerprint(a) == submission_fingerprint(b)


def parse_submission(payload: Mapping[str, Any], cause_id: str) -> OrderSubmitted:
    """The saga's input for a submission. Precondition: `validate_order(payload)` is empty."""
    payment = payload["payment"]
    deadline = payment.get("deadline")
    return OrderSubmitted(
        cause_id=cause_id,
        order_id=payload["order_id"],
        currency=payload["currency"],
        lines=tuple(
            OrderLine(
                line_id=line["line_id"],
                sku=line["sku"],
                quantity=line["quantity"],
                unit_price=Decimal(line["unit_price"]),
            )
            for line in payload["lines"]
        ),
        payment=PaymentStatus(payment["status"]),
        payment_deadline=None if deadline is None else _parse_time(deadline),
        backorder_policy=BackorderPolicy(_backorder_policy(payload)),
        fingerprint=submission_fingerprint(payload),
    )


def _backorder_policy(payload: Mapping[str, Any]) -> Any:
    # null is the contract's "not given", as is leaving the field out.
    policy = payload.get("backorder_policy")
    return DEFAULT_BACKORDER_POLICY.value if policy is None else policy


def _line_violations(lines: Any, minor_digits: int | None) -> list[Violation]:
    if not isinstance(lines, list) or not lines:
        return [Violation("lines", "an order needs at least one line")]
    if len(lines) > MAX_LINES:
        return [Violation("lines", f"at most {MAX_LINES} lines per order, got {len(lines)}")]
    violations: list[Violation] = []
    seen_ids: set[str] = set()
    for index, line in enumerate(lines):
        where = f"lines[{index}]"
        if not isinstance(line, Mapping):
            violations.append(Violation(where, "must be an object"))
            continue
        line_id = line.get("line_id")
        if not isinstance(line_id, str) or not line_id:
            violations.append(Violation(f"{where}.line_id", "must be a non-empty string"))
        elif line_id in seen_ids:
            violations.append(Violation(f"{where}.line_id", f"duplicate line id {line_id!r}"))
        else:
            seen_ids.add(line_id)
        sku = line.get("sku")
        if not isinstance(sku, str) or not sku:
            violations.append(Violation(f"{where}.sku", "must be a non-empty string"))
        violations += _quantity_violations(line.get("quantity"), f"{where}.quantity")
        violations += _price_violations(line.get("unit_price"), minor_digits, f"{where}.unit_price")
    return violations


def _quantity_violations(quantity: Any, where: str) -> list[Violation]:
    # bool is an int in Python, and 2.0 is not a quantity on the wire.
    if not isinstance(quantity, int) or isinstance(quantity, bool):
        return [Violation(where, "must be an integer")]
    if not 0 < quantity <= MAX_LINE_QUANTITY:
        return [Violation(where, f"must be between 1 and {MAX_LINE_QUANTITY}, got {quantity}")]
    return []


def _price_violations(price: Any, minor_digits: int | None, where: str) -> list[Violation]:
    match = _PRICE.match(price) if isinstance(price, str) else None
    if match is None:
        return [Violation(where, 'must be a decimal string such as "12.50"')]
    if Decimal(price) < 0:
        return [Violation(where, "must not be negative")]
    decimals = len(match.group(2) or "")
    if minor_digits is not None and decimals > minor_digits:
        return [Violation(where, f"at most {minor_digits} decimals for this currency")]
    return []


def _payment_violations(payment: Any) -> list[Violation]:
    if not isinstance(payment, Mapping):
        return [Violation("payment", "must be an object")]
    status = payment.get("status")
    if status not in list(PaymentStatus):
        return [Violation("payment.status", "must be 'authorized' or 'pending'")]
    deadline = payment.get("deadline")
    if deadline is None:
        if status == PaymentStatus.PENDING:
            return [Violation("payment.deadline", "required when payment is pending")]
        return []
    if _parse_time(deadline) is None:
        return [Violation("payment.deadline", "must be an RFC 3339 time with an offset")]
    return []


def _parse_time(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return moment.astimezone(UTC)
