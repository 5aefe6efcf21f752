"""Bundled backbones: one module per plugin."""
