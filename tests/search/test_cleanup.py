"""No Ray process outlives ``mtlkit search``: after it ends, after a resumed search, after
Ctrl-C (SIGINT). Every process below the command seen while it ran must be gone after it."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest
from search_helpers import mtlkit_command, write_spec

from mtlkit.search.cleanup import _stat, descendants

pytestmark = pytest.mark.ray

SPEC = '[search]\nname = "c"\n[grid]\nseed = [0, 1]\n'


def _run_watched(args, *, interrupt_when=None, on_start=None, timeout: float = 240):
    """Run the command, polling its process tree; returns (returncode, output, seen)."""
    proc = subprocess.Popen(mtlkit_command(*args), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    if on_start is not None:
        on_start(proc.pid)
    seen: dict[int, int] = {}
    start = time.monotonic()
    sent = False
    while proc.poll() is None:
        seen.update(descendants(proc.pid))
        if interrupt_when is not None and not sent and interrupt_when():
            proc.send_signal(signal.SIGINT)
            sent = True
        if time.monotonic() - start > timeout:
            proc.kill()
            raise AssertionError("search did not finish")
        time.sleep(0.2)
    out = proc.stdout.read() if proc.stdout else ""
    return proc.returncode, out, seen


def _left(seen: dict[int, int]) -> list[str]:
    time.sleep(1.0)  # the command has returned: give a SIGTERM'd process a moment to go
    left = []
    for pid, start in seen.items():
        st = _stat(pid)
        if st is not None and st[1] == start:
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
            if state not in ("Z", "X"):
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
                left.append(f"{pid} {cmdline[:120]}")
    return left


def test_search_and_resumed_search_leave_no_ray_process(tmp_path, ray_tmpdir):
    spec = write_spec(tmp_path, SPEC, epochs=1, n_train=128)
    out = tmp_path / "out"
    code, text, seen = _run_watched(("search", str(spec), "--out", str(out), "--quiet"))
    assert code == 0, text
    assert len(seen) >= 2  # Ray really ran below the command (GCS, raylet, ...)
    assert _left(seen) == [], text
    code, text, seen = _run_watched(("search", str(spec), "--out", str(out), "--quiet",
                                     "--resume"))
    assert code == 0, text
    assert seen and _left(seen) == [], text


@pytest.mark.parametrize("when", ["starting", "training"])
def test_interrupted_search_leaves_no_ray_process(when, tmp_path, ray_tmpdir):
    """Ctrl-C while Ray starts (inside ray.init) or while trials train."""
    spec = write_spec(tmp_path, SPEC, epochs=4, n_train=512)
    out = tmp_path / "out"
    seen_now: dict[int, int] = {}

    def due() -> bool:
        if when == "training":
            return any(out.glob("trials/*/attempts.jsonl"))
        if proc_pid:
            seen_now.update(descendants(proc_pid[0]))
        return len(seen_now) >= 2

    proc_pid: list[int] = []
    code, text, seen = _run_watched(("search", str(spec), "--out", str(out), "--quiet"),
                                    interrupt_when=due, on_start=proc_pid.append)
    assert seen and _left(seen) == [], text
    assert code == 130, text
    assert text.strip().splitlines()[-1].startswith("mtlkit: interrupted"), text
