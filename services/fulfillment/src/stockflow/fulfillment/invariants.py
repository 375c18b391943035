"""What must always hold in the fulfillment schema, as SQL (see stockflow.runtime.invariants).

The fulfillment service checks these itself (a gauge per invariant and an error log; it may not
publish stock.alerts.v1, where the alert event lives) and `stockflow check` runs them too.
Whether a shipment took its units out of stock once is the stock service's
`shipment_applied_once`: the stock ledger is where that effect is applied.
"""

from __future__ import annotations

from stockflow.runtime.invariants import Invariant

# Statuses before the goods leave the building: cancelling an order cancels these.
NOT_LEFT = ("created", "picking", "on_hold", "picked", "packed", "labelled")
LEFT = ("shipped", "in_transit", "delivered")

CANCELLED_ORDER_SHIPS_NOTHING = Invariant(
    "cancelled_order_ships_nothing",
    "a cancelled order has no shipment still waiting to leave",
    f"""SELECT s.shipment_id AS subject,
               format('order %s is cancelled but the shipment is %s', s.order_id, s.status)
               AS detail
        FROM {{schema}}.shipments s JOIN {{schema}}.orders o USING (order_id)
        WHERE o.status = 'cancelled'
          AND s.status IN ({", ".join(f"'{s}'" for s in NOT_LEFT)})""",
)

SHIPPED_HAS_TRACKING = Invariant(
    "shipped_has_tracking",
    "a shipment that left has a tracking number and a shipping time",
    f"""SELECT shipment_id AS subject,
               format('%s without %s', status,
                      concat_ws(' and ', CASE WHEN tracking_number IS NULL
                                              THEN 'tracking number' END,
                                         CASE WHEN shipped_at IS NULL THEN 'shipped_at' END))
               AS detail
        FROM {{schema}}.shipments
        WHERE status IN ({", ".join(f"'{s}'" for s in LEFT)})
          AND (tracking_number IS NULL OR shipped_at IS NULL)""",
)

INVARIANTS = (CANCELLED_ORDER_SHIPS_NOTHING, SHIPPED_HAS_TRACKING)
