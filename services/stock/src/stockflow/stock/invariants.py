"""What must always hold in the stock schema, as SQL (see stockflow.runtime.invariants).

The service checks these itself (`watch`, one gauge per invariant, `stock.invariant.violated.v1`
on stock.alerts.v1 when one breaks) and `stockflow check` runs them from outside. A level's
subject is `sku@location`, so an alert can name its sku and location.
"""

from __future__ import annotations

import re
from datetime import datetime

from stockflow.contracts.events.stock import InvariantViolated
from stockflow.runtime.invariants import Invariant, Violation

AVAILABLE = "l.available"  # the generated column (migration 0005)
LEVEL_BUCKETS = (
    "on_hand",
    "reserved",
    "backordered",
    "damaged",
    "quality_control",
    "safety_stock",
    "incoming",
)

NO_OVERSELL = Invariant(
    "no_oversell",
    "every bucket of a level is >= 0 and available is >= 0",
    f"""SELECT l.sku || '@' || l.location AS subject,
               format('on_hand=%s reserved=%s damaged=%s quality_control=%s safety_stock=%s '
                      'incoming=%s backordered=%s available=%s', l.on_hand, l.reserved,
                      l.damaged, l.quality_control, l.safety_stock, l.incoming, l.backordered,
                      {AVAILABLE}) AS detail
        FROM {{schema}}.levels l
        WHERE ({AVAILABLE}) < 0 OR least(l.on_hand, l.reserved, l.damaged, l.quality_control,
                                         l.safety_stock, l.incoming, l.backordered) < 0""",
)

RESERVED_IS_OPEN_RESERVATIONS = Invariant(
    "reserved_is_open_reservations",
    "a level's reserved equals the sum of its open reservations",
    """SELECT coalesce(l.sku, r.sku) || '@' || coalesce(l.location, r.location) AS subject,
              format('reserved=%s open reservations=%s', coalesce(l.reserved, 0),
                     coalesce(r.held, 0)) AS detail
       FROM {schema}.levels l
       FULL JOIN (SELECT sku, location, sum(quantity) AS held
                  FROM {schema}.reservations GROUP BY sku, location) r
         ON r.sku = l.sku AND r.location = l.location
       WHERE coalesce(l.reserved, 0) <> coalesce(r.held, 0)""",
)

BACKORDERED_IS_OPEN_BACKORDERS = Invariant(
    "backordered_is_open_backorders",
    "a level's backordered equals the sum of the open backorders waiting there",
    """SELECT coalesce(l.sku, b.sku) || '@' || coalesce(l.location, b.location) AS subject,
              format('backordered=%s open backorders=%s', coalesce(l.backordered, 0),
                     coalesce(b.open, 0)) AS detail
       FROM {schema}.levels l
       FULL JOIN (SELECT sku, location, sum(open) AS open
                  FROM {schema}.backorders GROUP BY sku, location) b
         ON b.sku = l.sku AND b.location = l.location
       WHERE coalesce(l.backordered, 0) <> coalesce(b.open, 0)""",
)

# Each kind's effect per bucket (domain/levels.py). The ledger stores signed quantities
# (ledger.OUTFLOWS are negative), so unsigned kinds use abs(quantity) and only adjustment and
# safety_stock_set carry their own sign. A transfer_out's units are in transit towards the
# transfer's destination: its `incoming` grows there, found through the transfers table.
_q = "abs(quantity)"
_LEDGER_EFFECTS = {
    "on_hand": f"""CASE kind WHEN 'receipt' THEN {_q} WHEN 'return_restock' THEN {_q}
                     WHEN 'transfer_in' THEN {_q} WHEN 'adjustment' THEN quantity
                     WHEN 'transfer_out' THEN -{_q} WHEN 'shipment' THEN -{_q}
                     WHEN 'write_off' THEN -{_q} ELSE 0 END""",
    "reserved": f"""CASE kind WHEN 'reservation' THEN {_q} WHEN 'backorder_allocated' THEN {_q}
                      WHEN 'release' THEN -{_q} WHEN 'shipment' THEN -{_q} ELSE 0 END""",
    "backordered": f"""CASE kind WHEN 'backorder_opened' THEN {_q}
                         WHEN 'backorder_allocated' THEN -{_q}
                         WHEN 'backorder_cancelled' THEN -{_q} ELSE 0 END""",
    "damaged": f"""CASE kind WHEN 'to_damaged' THEN {_q} WHEN 'from_damaged' THEN -{_q}
                     WHEN 'write_off' THEN -{_q} ELSE 0 END""",
    "quality_control": f"""CASE kind WHEN 'to_quality_control' THEN {_q}
                             WHEN 'from_quality_control' THEN -{_q} ELSE 0 END""",
    "safety_stock": "CASE kind WHEN 'safety_stock_set' THEN quantity ELSE 0 END",
    "incoming": f"""CASE kind WHEN 'transfer_in' THEN -{_q} WHEN 'incoming_announced' THEN {_q}
                      WHEN 'incoming_closed' THEN -{_q} ELSE 0 END""",
}
_ledger_columns = ",\n".join(f"sum({sql}) AS {bucket}" for bucket, sql in _LEDGER_EFFECTS.items())
_in_transit_columns = ", ".join(
    "sum(abs(m.quantity))" if bucket == "incoming" else "0" for bucket in LEVEL_BUCKETS
)
_differs = " OR ".join(f"coalesce(l.{b}, 0) <> coalesce(g.{b}, 0)" for b in LEVEL_BUCKETS)
_detail = ", ".join(
    f"CASE WHEN coalesce(l.{b}, 0) <> coalesce(g.{b}, 0) THEN "
    f"format('{b} %s, ledger says %s', coalesce(l.{b}, 0), coalesce(g.{b}, 0)) END"
    for b in LEVEL_BUCKETS
)

LEDGER_EXPLAINS_LEVELS = Invariant(
    "ledger_explains_levels",
    "replaying the movement ledger gives every bucket of every level (stock is conserved)",
    f"""WITH effects AS (
            SELECT sku, location, {", ".join(LEVEL_BUCKETS)} FROM (
                SELECT sku, location, {_ledger_columns}
                FROM {{schema}}.movements GROUP BY sku, location) own
            UNION ALL
            SELECT m.sku, t.destination, {_in_transit_columns}
            FROM {{schema}}.movements m
            JOIN {{schema}}.transfers t ON t.transfer_id = m.reference_id
            WHERE m.kind = 'transfer_out' AND m.reference_type = 'transfer'
            GROUP BY m.sku, t.destination),
        ledger AS (
            SELECT sku, location, {", ".join(f"sum({b}) AS {b}" for b in LEVEL_BUCKETS)}
            FROM effects GROUP BY sku, location)
        SELECT coalesce(l.sku, g.sku) || '@' || coalesce(l.location, g.location) AS subject,
               concat_ws('; ', {_detail}) AS detail
        FROM {{schema}}.levels l
        FULL JOIN ledger g ON g.sku = l.sku AND g.location = l.location
        WHERE {_differs}""",
)

# A reserve command reserves once per order; the reservations a backorder fill makes come with
# a backorder movement of the same cause and order, so they are not reserve commands.
RESERVATION_APPLIED_ONCE = Invariant(
    "reservation_applied_once",
    "an order's stock is reserved by one reserve command, never by two",
    """WITH reserve_commands AS (
           SELECT DISTINCT m.order_id, m.cause_event_id
           FROM {schema}.movements m
           WHERE m.kind = 'reservation' AND m.order_id IS NOT NULL
             AND NOT EXISTS (
                 SELECT 1 FROM {schema}.movements b
                 WHERE b.cause_event_id = m.cause_event_id AND b.order_id = m.order_id
                   AND b.kind IN ('backorder_allocated', 'backorder_cancelled')))
       SELECT order_id AS subject,
              count(*) || ' reserve commands reserved stock for it: '
              || string_agg(cause_event_id, ', ' ORDER BY cause_event_id) AS detail
       FROM reserve_commands GROUP BY order_id HAVING count(*) > 1""",
)

SHIPMENT_APPLIED_ONCE = Invariant(
    "shipment_applied_once",
    "a shipment takes its units out of stock once, by one cause",
    """SELECT order_id || ' ' || reference_id AS subject,
              count(DISTINCT cause_event_id) || ' causes shipped it: '
              || string_agg(DISTINCT cause_event_id, ', ') AS detail
       FROM {schema}.movements
       WHERE kind = 'shipment' AND reference_type = 'shipment'
       GROUP BY order_id, reference_id HAVING count(DISTINCT cause_event_id) > 1""",
)

# A backordered bundle is announced in whole units as its components' fills make them whole,
# by the transaction that makes them: a lost or repeated announcement shows here. A released
# order's lines are closed (open 0), not filled, so they are left out.
BUNDLE_ALLOCATED_WHOLE = Invariant(
    "bundle_backorder_allocated_whole",
    "a backordered bundle is announced allocated exactly as far as its components' fills make "
    "whole bundles",
    """WITH parts AS (
           SELECT bb.order_id, bb.line_id, bb.quantity, bb.allocated,
                  coalesce(b.quantity - b.open, 0) / (c.value->>'quantity')::int AS whole
           FROM {schema}.bundle_backorders bb
           CROSS JOIN LATERAL jsonb_array_elements(bb.components) c
           LEFT JOIN {schema}.backorders b ON b.order_id = bb.order_id
                AND b.line_id = bb.line_id AND b.sku = c.value->>'sku'
           WHERE NOT EXISTS (SELECT 1 FROM {schema}.order_reservations r
                             WHERE r.order_id = bb.order_id AND r.status = 'released'))
       SELECT order_id || ' ' || line_id AS subject,
              format('%s of %s bundles announced allocated; the fills make %s whole',
                     allocated, quantity, least(min(whole), quantity)) AS detail
       FROM parts GROUP BY order_id, line_id, quantity, allocated
       HAVING least(min(whole), quantity) <> allocated""",
)

# LevelBook.flush writes a level's version and published_version in one statement, beside the
# record it stages; a trigger (migration 0006) moves the version on any other change of a bucket.
LEVEL_CHANGES_PUBLISHED = Invariant(
    "level_changes_published",
    "every change of a level staged its record on stock.levels.v1",
    """SELECT l.sku || '@' || l.location AS subject,
              format('version %s, last published %s', l.version, l.published_version) AS detail
       FROM {schema}.levels l
       WHERE l.version <> l.published_version""",
)

# A receipt is applied once per receipt_id, whatever event ids or requests brought it again: the
# ledger's receipt movements of a receipt_id are one movement of the recorded receipt's quantity.
RECEIPT_APPLIED_ONCE = Invariant(
    "receipt_applied_once",
    "each receipt_id is in the ledger once, with the quantity its recorded receipt says",
    """SELECT 'receipt ' || m.reference_id AS subject,
              format('%s receipt movement(s) of %s units in all (causes %s); the receipt says %s',
                     count(*), sum(m.quantity), string_agg(m.cause_event_id, ', '),
                     coalesce(f.says->>'quantity', 'nothing: it was never recorded')) AS detail
       FROM {schema}.movements m
       LEFT JOIN {schema}.applied_facts f ON f.kind = 'receipt' AND f.key = m.reference_id
       WHERE m.kind = 'receipt' AND m.reference_type = 'receipt'
       GROUP BY m.reference_id, f.says
       HAVING count(*) <> 1 OR sum(m.quantity)::text IS DISTINCT FROM f.says->>'quantity'""",
)

# A return is applied once per RMA line: the ledger's return movements of an RMA add up to its
# recorded lines (RMAs recorded before business keys existed have no lines and are not checked).
RETURN_APPLIED_ONCE = Invariant(
    "return_applied_once",
    "the return movements of an RMA add up to the units of its lines, each applied once",
    """WITH lines AS (
           SELECT says->>'rma_id' AS rma_id, sum((says->>'quantity')::int) AS units
           FROM {schema}.applied_facts WHERE kind = 'return_line' GROUP BY says->>'rma_id'),
       ledger AS (
           SELECT reference_id AS rma_id, sum(quantity) AS units
           FROM {schema}.movements
           WHERE kind IN ('return_restock', 'return_written_off') AND reference_type = 'rma'
           GROUP BY reference_id)
       SELECT 'rma ' || l.rma_id AS subject,
              format('its lines return %s units, the ledger moved %s', l.units,
                     coalesce(g.units, 0)) AS detail
       FROM lines l LEFT JOIN ledger g ON g.rma_id = l.rma_id
       WHERE l.units <> coalesce(g.units, 0)""",
)

# A cycle count adjusts on hand at most once per count id.
COUNT_APPLIED_ONCE = Invariant(
    "count_applied_once",
    "a cycle count adjusts stock at most once per count id",
    """SELECT 'count ' || reference_id AS subject,
              count(*) || ' adjustments: ' || string_agg(quantity::text, ', ') AS detail
       FROM {schema}.movements
       WHERE kind = 'adjustment' AND reference_type = 'count'
       GROUP BY reference_id HAVING count(*) > 1""",
)

INVARIANTS = (
    NO_OVERSELL,
    RESERVED_IS_OPEN_RESERVATIONS,
    LEDGER_EXPLAINS_LEVELS,
    RESERVATION_APPLIED_ONCE,
    SHIPMENT_APPLIED_ONCE,
    BACKORDERED_IS_OPEN_BACKORDERS,
    LEVEL_CHANGES_PUBLISHED,
    RECEIPT_APPLIED_ONCE,
    RETURN_APPLIED_ONCE,
    COUNT_APPLIED_ONCE,
    BUNDLE_ALLOCATED_WHOLE,
)

_LEVEL_SUBJECT = re.compile(
    r"^(?P<sku>[A-Za-z0-9][A-Za-z0-9._-]{0,63})@(?P<location>[A-Za-z0-9][A-Za-z0-9._-]{0,31})$"
)


def alert(violation: Violation, detected_at: datetime) -> InvariantViolated:
    """The stock.alerts.v1 event of a violation: its level when the subject names one."""
    level = _LEVEL_SUBJECT.match(violation.subject)
    detail = violation.detail if level else f"{violation.subject}: {violation.detail}"
    return InvariantViolated(
        sku=level["sku"] if level else "*",
        location=level["location"] if level else None,
        invariant=violation.invariant,
        detail=detail[:2000],
        detected_at=detected_at,
    )
