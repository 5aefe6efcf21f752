"""Bundled aggregators: one module per plugin."""
