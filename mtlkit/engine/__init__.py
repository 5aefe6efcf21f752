"""The public engine: every aggregator, mask and probe for any training loop.

:class:`MTLBackward` (``mtl.backward(losses)``) and the one-call :func:`mtl_backward`; the
gradient paths live in :mod:`mtlkit.engine.paths`, argument resolution in
:mod:`mtlkit.engine.resolve`.
"""

from mtlkit.engine.backward import BackwardReport, MTLBackward, mtl_backward

__all__ = ["BackwardReport", "MTLBackward", "mtl_backward"]
