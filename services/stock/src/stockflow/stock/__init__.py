"""stockflow stock."""
