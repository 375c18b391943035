"""What the order adds to the contract for a checkout submission: nothing it could check itself.

The rules of a submission are the contract model's (`CheckoutOrderSubmitted`, one rule set);
here are only the parts the contract cannot express: the fingerprint that tells a re-delivery
from a different order under the same id, the backorder policy an order that names none gets,
and the contract's errors as the `Violation`s (the contract's, of order.rejected.v1) an invalid
order is rejected with, named like fields (`lines[2].quantity`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from stockflow.contracts.events import MAX_LINES
from stockflow.contracts.events.checkout import CheckoutOrderSubmitted
from stockflow.contracts.events.orders import Violation
from stockflow.order.domain.model import BackorderPolicy

DEFAULT_BACKORDER_POLICY = BackorderPolicy.PER_SKU
MAX_VIOLATIONS = MAX_LINES * 5
"""As many violations as order.rejected.v1 carries (more than a submission of 100 lines can
break: every one is reported)."""


def violations(errors: Iterable[Mapping[str, Any]]) -> list[Violation]:
    """The contract's validation errors (pydantic's `errors()`) as violations, in its order."""
    found: list[Violation] = []
    for error in errors:
        if len(found) == MAX_VIOLATIONS:
            break
        where = field_path(error["loc"]) or "(root)"
        found.append(Violation(field=where[:200], message=str(error["msg"])[:2000]))
    return found


def field_path(location: Iterable[int | str]) -> str:
    """('lines', 0, 'quantity') → 'lines[0].quantity'."""
    path = ""
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def submission_fingerprint(payload: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON form: equal for equal payloads whatever the key order."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def fingerprint_of(order: CheckoutOrderSubmitted) -> str:
    """The fingerprint of a valid submission: of the fields it gave, in their wire form.

    The same as the fingerprint of its JSON data, unless that carried fields the contract
    ignores or wrote a time with another offset: then it is the same order, and equal here.
    """
    return submission_fingerprint(order.model_dump(mode="json", exclude_unset=True))


def same_submission(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """True when two submissions are the same order (a re-delivery or a retry upstream)."""
    return submission_fingerprint(a) == submission_fingerprint(b)


def backorder_policy(order: CheckoutOrderSubmitted) -> BackorderPolicy:
    # null is the contract's "not given", as is leaving the field out.
    given = order.backorder_policy
    return DEFAULT_BACKORDER_POLICY if given is None else BackorderPolicy(given)
