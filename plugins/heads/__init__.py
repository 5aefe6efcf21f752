"""Bundled heads: one module per plugin."""
