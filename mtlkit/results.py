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
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

#: suffix of the temporary files of :func:`replace_atomically` (removed at the next start by
#: :func:`clean_stale_temporaries` if a kill left one behind)
TMP_SUFFIX = ".mtlkit-tmp"



def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: mode of written files: 0666 less the process umask (read once, at import)
_FILE_MODE = 0o666 & ~_umask()


def replace_atomically(path: Path, write) -> None:
    """Write ``path`` through ``write(binary_file)`` into a temporary file, then rename it
    over ``path``: readers see the old file or the whole new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    try:
        os.fchmod(fd, _FILE_MODE)  # mkstemp makes 0600; outputs are as readable as any file
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


#: ``checkpoint.pt["format"]``: what :func:`load_checkpoint` accepts
CHECKPOINT_FORMAT = "mtlkit-checkpoint-v2"


def save_checkpoint(path: str | Path, state: Mapping[str, Any]) -> None:
    """Write plain data only (tensors, numbers, str, bool, None, lists/dicts): what
    :func:`load_checkpoint` reads back with ``weights_only=True``."""
    import torch

    replace_atomically(Path(path), lambda f: torch.save(dict(state), f))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint without running code: ``torch.load(weights_only=True)`` refuses any
    pickled class or function before it is called, so a crafted file cannot execute anything.
    A file that does not parse as plain data, or is not an mtlkit checkpoint, is one
    :class:`~mtlkit.errors.DataError`."""
    import pickle

    import torch

    from mtlkit.errors import DataError

    path = Path(path)
    refused = (f"cannot resume from {path}: it is not a valid mtlkit checkpoint "
               "(truncated, from another program or version, or holding pickled objects, "
               "which are never loaded); delete it or start with --overwrite")
    try:
        with warnings.catch_warnings():  # torch's notes on odd pickles: the refusal says it
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, TypeError,
            AttributeError, KeyError, IndexError, ImportError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{refused} [{first[:200]}]") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise DataError(refused)
    return state


def check_resumable(state: Mapping[str, Any], config: Mapping[str, Any], version: str) -> None:
    """Refuse to resume ``state`` under a different run: one
    :class:`~mtlkit.errors.ConfigError` listing every differing key (``was -> now``), except
    :data:`mtlkit.config.RESUMABLE_KEYS`; a different mtlkit version is refused too (its
    state may mean something else)."""
    from mtlkit.config import RESUMABLE_KEYS
    from mtlkit.errors import ConfigError

    saved = state.get("config")
    if not isinstance(saved, Mapping):
        raise ConfigError("cannot resume: the checkpoint records no configuration")
    diffs = []
    if state.get("mtlkit_version") != version:
        diffs.append(f"mtlkit_version: {state.get('mtlkit_version')!r} -> {version!r}")
    for key in sorted(set(saved) | set(config)):
        if key in RESUMABLE_KEYS:
            continue
        missing = "(unset)"
        was, now = saved.get(key, missing), config.get(key, missing)
        if was != now:
            diffs.append(f"{key}: {was!r} -> {now!r}")
    if diffs:
        raise ConfigError(
            "cannot resume: the configuration differs from the checkpoint's (" + "; ".join(diffs)
            + "); only " + ", ".join(RESUMABLE_KEYS) + " may change on --resume. Use the "
            "original settings, or --overwrite to start over")


def clean_stale_temporaries(folder: str | Path) -> list[Path]:
    """Remove temporary files that :func:`replace_atomically` left behind when a process was
    killed between writing and renaming (``.NAME.XXXXXXXX.mtlkit-tmp``), in ``folder`` and
    below. Call only while holding the folder's run lock (:mod:`mtlkit.rundir`), so no live
    writer owns them."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = [p for p in folder.rglob(f".*{TMP_SUFFIX}") if p.is_file()]
    for p in removed:
        p.unlink(missing_ok=True)
    return removed
