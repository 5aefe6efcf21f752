"""Errors users see, and the exit codes of the ``mtlkit`` command line.

Every error caused by user input or the environment derives from :class:`MtlkitError`; the CLI
prints its message on one line and exits with the class's :attr:`~MtlkitError.exit_code` (no
traceback unless ``--debug``). Messages name the field, the value given and what is allowed, so
the user can fix the input without reading code.

Exit codes (also in ``mtlkit --help`` and the README):

===  =====================================================================================
0    success
1    internal error (a bug: one line, ``--debug`` shows the traceback); a search with
     failed trials
2    invalid configuration, command line, plugin name/parameters, or a resume whose
     configuration differs from the checkpoint's
3    bad data: dataset missing/malformed, checkpoint unreadable or not an mtlkit checkpoint
4    numerical failure: non-finite gradients, too many skipped steps
5    output folder refused: not empty (without --resume/--overwrite), in use by another
     run, not writable, or not a folder
130  interrupted (Ctrl-C / SIGINT)
===  =====================================================================================
"""

from __future__ import annotations

from collections.abc import Iterable

#: exit code -> meaning, for ``mtlkit --help`` (the table above)
EXIT_CODES: dict[int, str] = {
    0: "success",
    1: "internal error (a bug; --debug shows the traceback) or a search with failed trials",
    2: "invalid configuration, flags, plugin, or a resume whose configuration differs",
    3: "bad data: dataset missing or malformed, checkpoint unreadable or not mtlkit's",
    4: "numerical failure: non-finite gradients, too many skipped steps",
    5: "output folder refused: not empty (use --resume/--overwrite), in use, not writable",
    130: "interrupted",
}


class MtlkitError(Exception):
    """Base class for errors caused by user input or the environment (exit code 2)."""

    exit_code = 2


class ConfigError(MtlkitError, ValueError):
    """A configuration value is malformed or out of range."""


class PluginError(MtlkitError, LookupError):
    """A plugin name is unknown, registered twice, or its parameters are wrong."""


class DataError(MtlkitError):
    """A dataset or checkpoint is missing, truncated or inconsistent (exit code 3)."""

    exit_code = 3


class GradientError(MtlkitError, FloatingPointError):
    """Task gradients are not finite (NaN/Inf), so no update can be trusted (exit code 4)."""

    exit_code = 4


class OutputError(MtlkitError):
    """The output folder cannot be used: it holds another run's files, another run is using
    it, or it cannot be written (exit code 5)."""

    exit_code = 5


def invalid_value(field: str, value: object, allowed: str) -> ConfigError:
    """The one-line message format for an out-of-range or malformed value."""
    return ConfigError(f"invalid {field}={value!r}: {allowed}")


def unknown_name(kind: str, name: str, available: Iterable[str]) -> PluginError:
    names = sorted(available)
    listing = ", ".join(names) if names else "(none installed)"
    return PluginError(f"unknown {kind} {name!r}; available: {listing}")
