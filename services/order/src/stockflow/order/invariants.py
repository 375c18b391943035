"""What must always hold in the orders schema, as SQL (see stockflow.runtime.invariants).

The order service checks these itself (a gauge per invariant and an error log; it may not
publish stock.alerts.v1, where the alert event lives) and `stockflow check` runs them from
outside, with the settle time the operator gives.
"""

from __future__ import annotations

from stockflow.order.domain.model import SETTLED_STATES, TERMINAL_STATES
from stockflow.runtime.invariants import Invariant

DEFAULT_SETTLE_S = 300.0


def _states(states) -> str:
    return ", ".join(f"'{state.value}'" for state in sorted(states))


def orders_settled(settle_seconds: float = DEFAULT_SETTLE_S) -> Invariant:
    """An order whose reservation saga is not over, that nothing has moved for `settle_seconds`
    and that no timer will move either (a stuck saga, a lost reply, a dead timer task)."""
    return Invariant(
        "orders_settled",
        f"an order reaches a settled state ({', '.join(sorted(SETTLED_STATES))}) or has a "
        f"timer armed; none sits untouched for more than {settle_seconds:g} s",
        f"""SELECT o.order_id AS subject,
                   format('%s since %s', o.state, o.updated_at) AS detail
            FROM {{schema}}.orders o
            WHERE o.state NOT IN ({_states(SETTLED_STATES)})
              AND o.updated_at < now() - make_interval(secs => {float(settle_seconds)!r})
              AND NOT EXISTS (SELECT 1 FROM {{schema}}.timers t
                              WHERE t.order_id = o.order_id AND t.fire_at > now())""",
    )


# Timers only serve the reservation and payment steps: a terminal order has none armed.
NO_TIMER_ON_TERMINAL_ORDER = Invariant(
    "no_timer_on_terminal_order",
    "a terminal order has no timer armed",
    f"""SELECT o.order_id AS subject,
               o.state || ' but a ' || string_agg(t.kind, ', ') || ' timer is armed' AS detail
        FROM {{schema}}.orders o JOIN {{schema}}.timers t USING (order_id)
        WHERE o.state IN ({_states(TERMINAL_STATES)})
        GROUP BY o.order_id, o.state""",
)


def invariants(settle_seconds: float = DEFAULT_SETTLE_S) -> tuple[Invariant, ...]:
    return (orders_settled(settle_seconds), NO_TIMER_ON_TERMINAL_ORDER)
