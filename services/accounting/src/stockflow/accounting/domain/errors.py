"""What the accounting domain refuses: all ValueErrors, so an adapter can catch one type."""


class AccountingError(ValueError):
    """Input the books cannot accept."""


class InvalidEntry(AccountingError):
    """A journal entry or line that would break double entry (unbalanced, negative, two-sided)."""


class CurrencyMismatch(AccountingError):
    """Amounts in different currencies met; the books never convert without an exchange rate."""


class InsufficientStock(AccountingError):
    """More units issued than the valuation holds; accounting never invents cost for them."""
