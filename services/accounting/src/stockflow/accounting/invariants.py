"""What must always hold in the accounting schema, as SQL (see stockflow.runtime.invariants).

The accounting service checks these itself (a gauge per invariant and an error log; it may not
publish stock.alerts.v1, where the alert event lives) and `stockflow check` runs them too.
"""

from __future__ import annotations

from stockflow.runtime.invariants import Invariant

ENTRY_BALANCED = Invariant(
    "journal_entry_balanced",
    "every journal entry has lines and its debits equal its credits",
    """SELECT e.entry_id::text AS subject,
              format('%s %s: debit %s, credit %s, %s lines', e.cause_type, e.cause_id,
                     coalesce(sum(l.debit), 0), coalesce(sum(l.credit), 0), count(l.line_no))
              AS detail
       FROM {schema}.journal_entries e
       LEFT JOIN {schema}.journal_lines l USING (entry_id)
       GROUP BY e.entry_id, e.cause_type, e.cause_id
       HAVING count(l.line_no) = 0 OR coalesce(sum(l.debit), 0) <> coalesce(sum(l.credit), 0)""",
)

JOURNAL_BALANCED = Invariant(
    "journal_balanced",
    "over the whole journal, debits equal credits in each currency",
    """SELECT e.currency::text AS subject,
              format('debit %s, credit %s', sum(l.debit), sum(l.credit)) AS detail
       FROM {schema}.journal_entries e JOIN {schema}.journal_lines l USING (entry_id)
       GROUP BY e.currency HAVING sum(l.debit) <> sum(l.credit)""",
)

# An entry's id is derived from (cause, rule, subject), so a cause posts each rule once per
# subject; two entries of one cause with the same accounts and subjects are one posting twice.
ENTRY_APPLIED_ONCE = Invariant(
    "journal_entry_applied_once",
    "a cause posts each of its entries once",
    """WITH shapes AS (
           SELECT e.entry_id, e.cause_type, e.cause_id,
                  string_agg(l.account || ':' || coalesce(l.sku, '') || ':'
                             || coalesce(l.order_id, '') || ':'
                             || CASE WHEN l.debit > 0 THEN 'dr' ELSE 'cr' END,
                             ',' ORDER BY l.account, l.sku, l.order_id, l.debit > 0) AS shape
           FROM {schema}.journal_entries e JOIN {schema}.journal_lines l USING (entry_id)
           GROUP BY e.entry_id, e.cause_type, e.cause_id)
       SELECT cause_type || ' ' || cause_id AS subject,
              count(*) || ' entries post ' || shape || ': '
              || string_agg(entry_id::text, ', ' ORDER BY entry_id) AS detail
       FROM shapes GROUP BY cause_type, cause_id, shape HAVING count(*) > 1""",
)

INVARIANTS = (ENTRY_BALANCED, JOURNAL_BALANCED, ENTRY_APPLIED_ONCE)
