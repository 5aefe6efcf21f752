"""Adapters that put :class:`mtlkit.MTLBackward` into other training loops (Lightning)."""
