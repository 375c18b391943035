"""What must always hold in the orders schema, as SQL (see stockflow.runtime.invariants).

The order service checks these itself (a gauge per invariant and an error log; it may not
publish stock.alerts.v1, where the alert event lives) and `stockflow check` runs them from
outside, with the settle time the operator gives.
"""

from __future__ import annotations

from stockflow.order.domain.model import SETTLED_STATES, TERMINAL_STATES, OrderState
from stockflow.runtime.invariants import Invariant

DEFAULT_SETTLE_S = 300.0
WAITING_ON_FULFILLMENT = frozenset(
    {OrderState.CONFIRMED, OrderState.PARTIALLY_SHIPPED, OrderState.SHIPPED}
)


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


def orders_have_a_pending_step(settle_seconds: float = DEFAULT_SETTLE_S) -> Invariant:
    """An order past its reservation that is not over must be waiting for something: a
    shipment planned and not yet left, or a backorder, while units are left to ship; a shipment
    not yet delivered once everything shipped. Untouched for `settle_seconds` with none of
    these (the short pick nobody answered), it is stuck without anyone knowing."""
    return Invariant(
        "orders_have_a_pending_step",
        "a confirmed, partially shipped or shipped order waits for a planned shipment, a "
        "backorder or a delivery; none sits untouched for more than "
        f"{settle_seconds:g} s with nothing pending",
        f"""SELECT o.order_id AS subject,
                   format('%s since %s with %s unit(s) left to ship, %s backordered, '
                          '%s shipment(s) planned, %s in transit',
                          o.state, o.updated_at, w.left_to_ship, w.backordered, w.planned,
                          w.in_transit) AS detail
            FROM {{schema}}.orders o,
            LATERAL (
                SELECT
                  (SELECT coalesce(sum((l->>'quantity')::int - (l->>'shipped')::int
                                       - coalesce((l->>'cancelled')::int, 0)), 0)
                   FROM jsonb_array_elements(o.saga->'lines') l
                   WHERE NOT (l->>'untracked')::boolean) AS left_to_ship,
                  (SELECT coalesce(sum((l->>'backordered')::int), 0)
                   FROM jsonb_array_elements(o.saga->'lines') l) AS backordered,
                  jsonb_array_length(coalesce(o.saga->'planned', '[]'::jsonb)) AS planned,
                  (SELECT count(*) FROM jsonb_array_elements(o.saga->'shipments') s
                   WHERE NOT (s->>'delivered')::boolean) AS in_transit
            ) w
            WHERE o.state IN ({_states(WAITING_ON_FULFILLMENT)})
              AND o.updated_at < now() - make_interval(secs => {float(settle_seconds)!r})
              AND CASE WHEN o.state = '{OrderState.SHIPPED.value}' THEN w.in_transit = 0
                       ELSE w.left_to_ship = 0 OR (w.planned = 0 AND w.backordered = 0)
                  END""",
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
    return (
        orders_settled(settle_seconds),
        NO_TIMER_ON_TERMINAL_ORDER,
        orders_have_a_pending_step(settle_seconds),
    )
