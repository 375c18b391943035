"""stockflow fulfillment."""
