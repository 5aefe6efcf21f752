"""Errors users see.

Every error caused by user input derives from :class:`MtlkitError`; the CLI prints its message on
one line and exits with code 2 (no traceback unless ``--debug``). Messages name the field, the
value given and what is allowed, so the user can fix the input without reading code.
"""

from __future__ import annotations

from collections.abc import Iterable


class MtlkitError(Exception):
    """Base class for errors caused by user input or the environment (exit code 2)."""

    exit_code = 2


class ConfigError(MtlkitError, ValueError):
    """A configuration value is malformed or out of range."""


class PluginError(MtlkitError, LookupError):
    """A plugin name is unknown, registered twice, or its parameters are wrong."""


class DataError(MtlkitError):
    """A dataset is missing, truncated or inconsistent."""


class GradientError(MtlkitError, FloatingPointError):
    """Task gradients are not finite (NaN/Inf), so no update can be trusted."""


def invalid_value(field: str, value: object, allowed: str) -> ConfigError:
    """The one-line message format for an out-of-range or malformed value."""
    return ConfigError(f"invalid {field}={value!r}: {allowed}")


def unknown_name(kind: str, name: str, available: Iterable[str]) -> PluginError:
    names = sorted(available)
    listing = ", ".join(names) if names else "(none installed)"
    return PluginError(f"unknown {kind} {name!r}; available: {listing}")
