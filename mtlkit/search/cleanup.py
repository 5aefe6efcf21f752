"""No Ray process outlives ``mtlkit search``.

``ray.shutdown()`` stops the processes the driver started (GCS, raylet), but some of theirs
(the dashboard agent and runtime-env agent of each raylet, idle workers) are re-parented to
init when the raylet goes and can stay behind, e.g. after a resumed search. So while Ray is
up the driver records its descendant processes (pid and start time, read from ``/proc``), and
after shutdown it ends those still alive: SIGTERM, then SIGKILL after a grace period. The start
time guards against a recycled pid; processes that existed before the search are never
touched. Without ``/proc`` (not Linux) nothing is recorded and only ``ray.shutdown()`` runs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time in clock ticks) of ``pid``, or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (2nd field) may hold spaces and parentheses: split after the last ')'
    fields = text[text.rindex(")") + 2:].split()
    return int(fields[1]), int(fields[19])


def descendants(root: int | None = None) -> dict[int, int]:
    """``{pid: start time}`` of every process below ``root`` (default: this process)."""
    root = os.getpid() if root is None else root
    children: dict[int, list[int]] = {}
    starts: dict[int, int] = {}
    try:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return {}
    for pid in pids:
        st = _stat(pid)
        if st is not None:
            children.setdefault(st[0], []).append(pid)
            starts[pid] = st[1]
    found: dict[int, int] = {}
    todo = list(children.get(root, []))
    while todo:
        pid = todo.pop()
        if pid in found or pid not in starts:
            continue
        found[pid] = starts[pid]
        todo.extend(children.get(pid, []))
    return found


class ProcessTracker:
    """Remembers the processes a block of code started below this one and ends them."""

    def __init__(self) -> None:
        self.before = descendants()
        self.seen: dict[int, int] = {}

    def record(self) -> None:
        """Add the current descendants (call while Ray is up, and again before shutdown)."""
        for pid, start in descendants().items():
            if self.before.get(pid) != start:
                self.seen[pid] = start

    def alive(self) -> list[int]:
        out = []
        for pid, start in self.seen.items():
            st = _stat(pid)
            if st is not None and st[1] == start and not _zombie(pid):
                out.append(pid)
        return out

    def end_leftovers(self, grace_s: float = 5.0) -> list[int]:
        """SIGTERM the recorded processes still alive, SIGKILL them after ``grace_s``;
        returns the pids that had been left over."""
        left = self.alive()
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in left:
                with contextlib.suppress(OSError):  # it may have exited meanwhile
                    os.kill(pid, sig)
            deadline = time.monotonic() + grace_s
            while time.monotonic() < deadline and self.alive():
                time.sleep(0.1)
            if not self.alive():
                break
        return left


def _zombie(pid: int) -> bool:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return text[text.rindex(")") + 2:].split()[0] in ("Z", "X")
