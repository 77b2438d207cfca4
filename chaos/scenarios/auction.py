"""Scenario ``auction`` (placeholder, being written)."""
