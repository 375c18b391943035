"""stockflow accounting."""
