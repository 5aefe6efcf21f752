"""Parsing of repeatable ``KEY=VALUE`` plugin parameters (``--aggregator-param c=0.4``)."""

from __future__ import annotations

import sys
from typing import Any

from mtlkit.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def parse_value(text: str) -> Any:
    """A TOML literal (``0.4``, ``true``, ``[1, 2]``, ``"x"``) or else the bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_params(items: list[str] | None, flag: str) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"invalid {flag} {item!r}: expected KEY=VALUE, e.g. c=0.4")
        params[key.strip()] = parse_value(value.strip())
    return params
