"""The accounting domain: money, the journal, valuation, posting rules, period close, reports.

Pure Python with no I/O; the store, handlers and HTTP API are adapters around it.
"""

from stockflow.accounting.domain.errors import (
    AccountingError,
    CurrencyMismatch,
    InsufficientStock,
    InvalidEntry,
)
from stockflow.accounting.domain.journal import (
    Account,
    Cause,
    JournalEntry,
    JournalLine,
    Side,
    period_of,
)
from stockflow.accounting.domain.money import ROUNDING, Money, minor_units, prorate, total
from stockflow.accounting.domain.periods import PeriodCalendar, next_period, period_start
from stockflow.accounting.domain.posting import (
    SoldLine,
    post_adjustment,
    post_receipt,
    post_refund,
    post_return_restocked,
    post_return_written_off,
    post_revenue,
    post_revenue_reversal,
    post_shipment_cost,
    post_shipping_cost,
)
from stockflow.accounting.domain.reports import (
    JOURNAL_CSV_HEADER,
    Grouping,
    InventoryValue,
    JournalFilter,
    ProfitRow,
    TrialBalanceRow,
    filter_journal,
    inventory_valuation,
    inventory_value_as_of,
    journal_csv,
    journal_jsonl,
    profitability,
    trial_balance,
)
from stockflow.accounting.domain.valuation import (
    CostLayer,
    CostMethod,
    CostSlice,
    IssuedCost,
    SkuValuation,
)

__all__ = [
    "JOURNAL_CSV_HEADER",
    "ROUNDING",
    "Account",
    "AccountingError",
    "Cause",
    "CostLayer",
    "CostMethod",
    "CostSlice",
    "CurrencyMismatch",
    "Grouping",
    "InsufficientStock",
    "InvalidEntry",
    "InventoryValue",
    "IssuedCost",
    "JournalEntry",
    "JournalFilter",
    "JournalLine",
    "Money",
    "PeriodCalendar",
    "ProfitRow",
    "Side",
    "SkuValuation",
    "SoldLine",
    "TrialBalanceRow",
    "filter_journal",
    "inventory_valuation",
    "inventory_value_as_of",
    "journal_csv",
    "journal_jsonl",
    "minor_units",
    "next_period",
    "period_of",
    "period_start",
    "post_adjustment",
    "post_receipt",
    "post_refund",
    "post_return_restocked",
    "post_return_written_off",
    "post_revenue",
    "post_revenue_reversal",
    "post_shipment_cost",
    "post_shipping_cost",
    "profitability",
    "prorate",
    "total",
    "trial_balance",
]
