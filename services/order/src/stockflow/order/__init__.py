"""stockflow order."""
