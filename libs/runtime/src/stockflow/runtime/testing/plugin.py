"""pytest plugin: infrastructure fixtures (filled in by the backbone)."""
