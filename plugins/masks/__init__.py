"""Bundled masks: one module per plugin."""
