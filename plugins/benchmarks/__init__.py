"""Bundled benchmarks: one module per plugin."""
