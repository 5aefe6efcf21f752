"""Bundled probes: one module per plugin."""
