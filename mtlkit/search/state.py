"""Keeps Ray Tune's experiment state resumable when the driver dies at any moment.

Tune's saved state is several files (``experiment_state-*.json``: the trials; the searcher's
``*-state-*``: which trials it has handed out; the callbacks'), rewritten in place in a local
staging folder and then copied to ``DIR/tune/`` file by file from a background thread. A
driver killed during the copy leaves ``DIR/tune/`` truncated (``Tuner.restore`` cannot parse
it) or mixed: a searcher state newer than the trial list. Mixed is worse than truncated: the
grid generator believes it handed out a trial that the restored trial list lacks, and with
``max_concurrent`` it waits for that trial forever.

The staging folder is consistent at the end of each controller step: Tune writes it in the
same thread, before the step's callbacks run. :class:`StateKeeper` (a Tune callback on the
driver) copies it there into a fresh ``DIR/tune-state/snap-<time>`` folder, renamed into place
so that a snapshot is whole or absent. :func:`restore_snapshot` runs before ``--resume`` and
replaces Tune's state files with the newest snapshot. A snapshot can be a fraction of a second
older than ``DIR/tune/``; trials that moved on since continue from their own per-epoch
checkpoints (``runner.run_trial``), and the searcher state of the same snapshot re-issues
trials it had not yet handed out under the same ids.
"""

from __future__ import annotations

import json
import pickletools
import shutil
import time
from pathlib import Path
from typing import Any

from mtlkit.errors import ConfigError

KEEP_DIR = "tune-state"
SNAPSHOT_PREFIX = "snap-"
PICKLE_PROTO = b"\x80"  # the first byte of every pickle of protocol 2 or later
# experiment_state-*.json, basic-variant-state-*.json (a pickle despite its name),
# searcher-state-*.pkl and callback-states-*.pkl: Tuner.restore reads them all back.
STATE_PATTERNS = ("*state-*.json", "*-state-*.pkl", "*-states-*.pkl")


def state_files(folder: Path) -> list[Path]:
    found: set[Path] = set()
    for pattern in STATE_PATTERNS:
        found.update(p for p in folder.glob(pattern) if p.is_file())
    return sorted(found)


def is_complete(path: Path) -> bool:
    """True if the file parses: JSON as JSON; pickles read through to their STOP opcode,
    checked with pickletools: nothing is unpickled."""
    try:
        data = path.read_bytes()
        if data[:1] != PICKLE_PROTO:
            json.loads(data)
            return True
        ops = list(pickletools.genops(data))
        return bool(ops) and ops[-1][0].name == "STOP"
    except (OSError, ValueError, UnicodeDecodeError):
        return False


def snapshots(keep_dir: Path) -> list[Path]:
    """Whole snapshots, oldest first (a snapshot being written has a ``.tmp`` name)."""
    if not keep_dir.is_dir():
        return []
    return sorted(p for p in keep_dir.iterdir()
                  if p.is_dir() and p.name.startswith(SNAPSHOT_PREFIX)
                  and not p.name.endswith(".tmp"))


def take_snapshot(staging: Path, keep_dir: Path, keep: int = 2) -> Path | None:
    """Copy the state files of ``staging`` into a new snapshot; drop all but the newest
    ``keep``. None when ``staging`` holds no experiment state yet."""
    files = state_files(staging)
    if not any(p.name.startswith("experiment_state-") for p in files):
        return None
    keep_dir.mkdir(parents=True, exist_ok=True)
    # Zero-padded nanoseconds: names sort in time order.
    final = keep_dir / f"{SNAPSHOT_PREFIX}{time.time_ns():020d}"
    tmp = final.with_name(final.name + ".tmp")
    tmp.mkdir()
    for path in files:
        shutil.copyfile(path, tmp / path.name)
    tmp.rename(final)
    for old in snapshots(keep_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    for stray in keep_dir.glob(f"{SNAPSHOT_PREFIX}*.tmp"):  # left by a killed driver
        if stray != tmp:
            shutil.rmtree(stray, ignore_errors=True)
    return final


def restore_snapshot(exp_dir: Path) -> str | None:
    """Before ``Tuner.restore``: replace Tune's state files in ``exp_dir`` by the newest whole
    snapshot. Returns a line to show when Tune's own files were unreadable, else None.

    Without a snapshot (a search killed before its first controller step ended) Tune's files
    are used as they are, and an unreadable one is one clear error."""
    broken = [p for p in state_files(exp_dir) if not is_complete(p)]
    usable = [s for s in snapshots(exp_dir.parent / KEEP_DIR)
              if all(is_complete(p) for p in state_files(s))]
    if not usable:
        if broken:
            raise ConfigError(
                f"invalid --resume: {broken[0]} is truncated or corrupt (the driver was killed "
                f"while writing it) and {exp_dir.parent / KEEP_DIR} holds no snapshot of the "
                "search's state; it cannot be resumed, start it again in a new --out folder")
        return None
    snapshot = usable[-1]
    for path in state_files(exp_dir):
        path.unlink()
    for path in state_files(snapshot):
        shutil.copyfile(path, exp_dir / path.name)
    if broken:
        return (f"{', '.join(p.name for p in broken)} unreadable (the driver was killed while "
                f"writing it); resumed from the state snapshot {snapshot}")
    return None


def make_state_keeper(every_s: float = 0.5) -> Any:
    from ray.tune import Callback

    class StateKeeper(Callback):
        """Snapshots Tune's staging state after controller steps (at most every ``every_s``).

        Paths come from the trials, not from here: Tune pickles its callbacks into
        ``tuner.pkl`` and ``--resume`` may run on a moved folder or a new Ray session."""

        def __init__(self) -> None:
            self.last = 0.0

        def _snapshot(self, trials: list[Any]) -> None:
            self.last = time.monotonic()
            if trials:
                storage = trials[0].storage
                keep_dir = Path(storage.experiment_fs_path).parent / KEEP_DIR
                take_snapshot(Path(storage.experiment_driver_staging_path), keep_dir)

        def on_step_end(self, iteration, trials, **info):
            if time.monotonic() - self.last >= every_s:
                self._snapshot(trials)

        def on_experiment_end(self, trials, **info):
            self._snapshot(trials)

    return StateKeeper()
