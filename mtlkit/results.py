"""Run output files, written atomically so an interrupted run never leaves half a file.

``results.json`` (the contract in DESIGN.md), ``epochs.csv`` (one row per epoch),
``steps.csv`` (one row per probed step) and ``checkpoint.pt`` (state to resume from).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any


def replace_atomically(path: Path, write) -> None:
    """Write ``path`` through ``write(binary_file)`` into a temporary file, then rename it
    over ``path``: readers see the old file or the whole new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def jsonable(value: Any) -> Any:
    """Plain JSON types; NaN and Inf become null (JSON has no such numbers)."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    # tensors and numpy arrays/scalars, without importing torch here (the CLI imports this
    # module at start-up; torch costs ~1.5 s)
    if hasattr(value, "tolist") and callable(value.tolist):
        return jsonable(value.tolist())
    return value


def write_json(path: str | Path, data: Mapping[str, Any]) -> None:
    text = json.dumps(jsonable(data), indent=2, sort_keys=False) + "\n"
    replace_atomically(Path(path), lambda f: f.write(text.encode()))


def write_csv(path: str | Path, rows: Iterable[Mapping[str, Any]]) -> None:
    rows = list(rows)
    fields: list[str] = []
    for row in rows:
        fields.extend(k for k in row if k not in fields)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: jsonable(v) for k, v in row.items()})
    replace_atomically(Path(path), lambda f: f.write(buf.getvalue().encode()))


def save_checkpoint(path: str | Path, state: Mapping[str, Any]) -> None:
    import torch

    replace_atomically(Path(path), lambda f: torch.save(dict(state), f))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    import torch

    # The checkpoint holds pickled aggregator/probe objects written by this same code.
    return torch.load(path, map_location="cpu", weights_only=False)
