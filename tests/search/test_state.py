"""Keeping a search resumable: snapshots of Tune's state, and each trial's own checkpoint."""

from __future__ import annotations

import json
import pickle

import pytest

from mtlkit.errors import ConfigError
from mtlkit.search.state import (
    KEEP_DIR,
    is_complete,
    restore_snapshot,
    snapshots,
    state_files,
    take_snapshot,
)

STATE = "experiment_state-2026-01-01_00-00-00.json"
# Tune pickles the grid generator's state into a file it names .json
VARIANTS = "basic-variant-state-2026-01-01_00-00-00.json"


def write_state(folder, trials):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / STATE).write_text(json.dumps({"trial_data": trials}))
    (folder / VARIANTS).write_bytes(pickle.dumps({"_live_trials": set(trials)}))
    (folder / "tuner.pkl").write_bytes(b"not a state file")


def truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_whole_json_and_pickles_are_complete_truncated_ones_are_not(tmp_path):
    write_state(tmp_path, list(range(50)))
    for name in (STATE, VARIANTS):
        assert is_complete(tmp_path / name)
        truncate(tmp_path / name)
        assert not is_complete(tmp_path / name)
    empty = tmp_path / "searcher-state-x.pkl"
    empty.write_bytes(b"")
    assert not is_complete(empty)


def test_snapshots_are_whole_sets_and_only_the_newest_are_kept(tmp_path):
    staging, keep = tmp_path / "staging", tmp_path / KEEP_DIR
    assert take_snapshot(tmp_path, keep) is None          # no experiment state yet
    for n in range(4):
        write_state(staging, list(range(n + 1)))
        take_snapshot(staging, keep)
    snaps = snapshots(keep)
    assert len(snaps) == 2
    assert sorted(p.name for p in snaps[-1].iterdir()) == sorted([STATE, VARIANTS])
    assert json.loads((snaps[-1] / STATE).read_text()) == {"trial_data": [0, 1, 2, 3]}
    (keep / "snap-99999999999999999999.tmp").mkdir()         # a copy a killed driver left
    assert snapshots(keep) == snaps


def test_resume_uses_the_newest_snapshot_as_one_consistent_set(tmp_path):
    exp, keep = tmp_path / "tune", tmp_path / KEEP_DIR
    write_state(tmp_path / "staging", ["t0"])
    take_snapshot(tmp_path / "staging", keep)
    # Tune's copy caught mid-sync: a newer searcher state beside an older trial list
    write_state(exp, ["t0"])
    (exp / VARIANTS).write_bytes(pickle.dumps({"_live_trials": {"t0", "t1"}}))
    assert restore_snapshot(exp) is None                   # nothing unreadable: silent
    assert pickle.loads((exp / VARIANTS).read_bytes()) == {"_live_trials": {"t0"}}
    truncate(exp / STATE)
    note = restore_snapshot(exp)
    assert STATE in note and "resumed from the state snapshot" in note
    assert json.loads((exp / STATE).read_text()) == {"trial_data": ["t0"]}
    # a state file of a newer session missing from the snapshot is dropped with the rest
    (exp / "experiment_state-2026-01-02_00-00-00.json").write_text("{")
    restore_snapshot(exp)
    assert sorted(p.name for p in state_files(exp)) == sorted([STATE, VARIANTS])


def test_without_a_snapshot_tunes_files_are_used_or_refused_clearly(tmp_path):
    exp = tmp_path / "tune"
    write_state(exp, ["t0"])
    assert restore_snapshot(exp) is None
    assert json.loads((exp / STATE).read_text()) == {"trial_data": ["t0"]}
    truncate(exp / STATE)
    with pytest.raises(ConfigError, match=r"invalid --resume: .*experiment_state-.*truncated"):
        restore_snapshot(exp)


# -- a trial's own checkpoint against the epoch Tune recorded ---------------------------------


def position_checkpoint(tmp_path, epoch):
    from ray import tune

    from mtlkit.search.runner import POSITION_FILE

    folder = tmp_path / f"position_{epoch}"
    folder.mkdir()
    (folder / POSITION_FILE).write_text(json.dumps({"epoch": epoch, "step": 10 * epoch}))
    return tune.Checkpoint.from_directory(str(folder))


def test_a_trial_continues_from_its_own_checkpoint_even_ahead_of_tunes_record(tmp_path):
    from mtlkit.results import CHECKPOINT_FORMAT, save_checkpoint
    from mtlkit.search.runner import trial_state

    own = tmp_path / "checkpoint.pt"
    assert trial_state(None, own, "t0") is None                # fresh start
    save_checkpoint(own, {"format": CHECKPOINT_FORMAT, "epoch": 3, "step": 30})
    assert trial_state(None, own, "t0")["epoch"] == 3          # stale Tune state: no record
    assert trial_state(position_checkpoint(tmp_path, 2), own, "t0")["epoch"] == 3


def test_a_checkpoint_behind_tunes_record_means_an_unshared_folder(tmp_path):
    from mtlkit.results import CHECKPOINT_FORMAT, save_checkpoint
    from mtlkit.search.runner import trial_state

    own = tmp_path / "checkpoint.pt"
    with pytest.raises(RuntimeError, match=r"reported epoch 2 but its checkpoint .* does not "
                                           r"exist.*filesystem every Ray node shares"):
        trial_state(position_checkpoint(tmp_path, 2), own, "t0")
    save_checkpoint(own, {"format": CHECKPOINT_FORMAT, "epoch": 1, "step": 10})
    with pytest.raises(RuntimeError, match="holds epoch 1"):
        trial_state(position_checkpoint(tmp_path, 4), own, "t0")
