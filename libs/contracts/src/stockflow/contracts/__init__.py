"""stockflow contracts."""
