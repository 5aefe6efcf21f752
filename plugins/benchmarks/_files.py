"""Locating and reading raw dataset files that may be gzip-compressed."""

from __future__ import annotations

import gzip
from collections.abc import Iterable
from pathlib import Path

from mtlkit.errors import DataError


def find_data_file(root: Path, name: str, what: str, source: str,
                   folders: Iterable[str] = ("",)) -> Path:
    """``root/<folder>/name`` or its ``.gz``; the error names the expected path and the source."""
    for folder in folders:
        base = root / folder if folder else root
        for candidate in (base / name, base / (name + ".gz")):
            if candidate.is_file():
                return candidate
    raise DataError(f"missing file {root / name} (or {name}.gz); expected the official "
                    f"{what} from {source}")


def read_raw(path: Path) -> bytes:
    """The file's bytes, decompressed if it ends in ``.gz``; unreadable data is a DataError."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path) as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError) as exc:
        raise DataError(f"cannot read {path}: {exc} (corrupted or truncated file?)") from None
