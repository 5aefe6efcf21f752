"""Searches over training configurations with Ray Tune (``mtlkit search SPEC.toml``).

``spec``   reads a TOML search spec, validates every key and plugin, expands the trial list;
``runner`` runs the trials with Ray Tune (embedded local Ray, or ``--address`` for a cluster);
``report`` writes ``summary.csv``, the seed-aggregated Markdown table and the plots.

Importing this package sets the two environment variables that keep an embedded Ray on
127.0.0.1 without an auth token (see docs/searches.md); it must happen before ``import ray``,
and Ray's worker processes inherit it from the driver.
"""

from __future__ import annotations

import os

# Without this Ray binds 0.0.0.0 and talks over the machine's external address.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
# Without this every ray.init writes ~/.ray/auth_token and logs a warning.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
# The classic reporter honours verbose=0; the new one prints banners and TensorBoard hints.
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
# Save Tune's experiment state at every controller step, not every >= 10 s: a driver killed
# right after a trial finished must not re-run that trial on --resume.
os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "0")
# ... which Tune would otherwise warn about as "excessive" for short epochs.
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")

from mtlkit.search.spec import SearchSpec, Trial, load_spec

__all__ = ["SearchSpec", "Trial", "load_spec"]
