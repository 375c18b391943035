"""stockflow runtime."""
