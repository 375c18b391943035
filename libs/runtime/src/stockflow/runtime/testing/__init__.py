"""Test fixtures shared by every package."""
