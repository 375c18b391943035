"""stockflow cli."""
