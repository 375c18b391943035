"""stockflow catalog."""
