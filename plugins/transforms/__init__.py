"""Bundled model transforms: one module per plugin."""
