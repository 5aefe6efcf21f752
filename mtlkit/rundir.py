"""Run folders: one run at a time, nothing overwritten silently.

Every command that writes a run folder (``train``, ``recon``, ``search``) opens it with
:func:`open_run_dir`, which

* refuses an ``--out`` that is a file or cannot be created or written (:class:`OutputError`,
  exit code 5) before any training starts;
* takes an exclusive lock, ``fcntl.flock`` on ``DIR/.lock``, held for the run's lifetime: a
  second run started into the same folder exits at once naming the first one's pid. The OS
  drops the lock when the process dies, however it dies, so a killed run never blocks the
  folder; the lock *file* then stays behind with the dead run's pid, and the next run says
  that the previous one was interrupted;
* removes temporary files of atomic writes a kill left behind (safe: the lock is held);
* refuses a folder holding files unless the command resumes (``--resume``) or was told to
  replace its outputs (``--overwrite``, which deletes only the files and folders the command
  itself writes, never anything else).
"""

from __future__ import annotations

import os
import shutil
import socket
import time
import warnings
from collections.abc import Iterable
from pathlib import Path

from mtlkit.errors import OutputError
from mtlkit.results import TMP_SUFFIX, clean_stale_temporaries

LOCK_NAME = ".lock"


class RunDirWarning(UserWarning):
    """Something about the run folder the user should know (e.g. an interrupted run)."""


class RunLock:
    """An exclusive ``flock`` on ``DIR/.lock`` (see the module docstring)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / LOCK_NAME
        self._fd: int | None = None
        #: folders this run created (deepest last): removed again if the run leaves them empty
        self.created: list[Path] = []
        #: "pid host time" of an earlier holder that did not release (it was killed)
        self.previous: str | None = None

    def acquire(self) -> RunLock:
        import fcntl

        for _ in range(10):  # the file can be unlinked by a releasing holder between open+lock
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read(fd)
                os.close(fd)
                pid = holder.split()[0] if holder else "?"
                raise OutputError(f"{self.folder} is in use by another mtlkit run (pid {pid}); "
                                  "wait for it to finish or choose another --out") from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # we locked a file its holder had just removed: try the new one
                os.close(fd)
                continue
            self.previous = _read(fd) or None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {socket.gethostname()} {time.time():.0f}\n".encode(),
                      0)
            self._fd = fd
            return self
        raise OutputError(f"cannot lock {self.path}: it keeps being replaced")

    def previous_note(self) -> str | None:
        """A sentence about an earlier run that died holding the folder, if there was one."""
        if not self.previous:
            return None
        parts = self.previous.split()
        pid = parts[0] if parts else "?"
        when = ""
        if len(parts) > 2 and parts[2].isdigit():
            when = time.strftime(", started %Y-%m-%d %H:%M:%S", time.localtime(int(parts[2])))
        return (f"the previous run in {self.folder} (pid {pid}{when}) was interrupted before it "
                "finished")

    def release(self) -> None:
        if self._fd is None:
            return
        # unlink while still holding the lock: a waiter that opened the old file notices the
        # inode changed and retries on a fresh one
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)
            self._fd = None
        # a run that failed before writing anything (e.g. a bad plugin name) leaves no folder
        for folder in reversed(self.created):
            try:
                folder.rmdir()
            except OSError:
                break

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read(fd: int) -> str:
    try:
        return os.pread(fd, 200, 0).decode(errors="replace").strip()
    except OSError:
        return ""


def prepare_folder(folder: Path, flag: str = "--out") -> list[Path]:
    """Create ``folder`` (and parents) and check it is a writable folder; returns the folders
    it created, outermost first."""
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"invalid {flag} {str(folder)!r}: it is a file, not a folder")
    missing = [p for p in (folder, *folder.parents) if not p.exists()][::-1]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"invalid {flag} {str(folder)!r}: cannot create it "
                          f"({exc.strerror or exc})") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"invalid {flag} {str(folder)!r}: not writable")
    return missing


def contents(folder: Path) -> list[str]:
    """Names in ``folder`` other than the lock file and stale temporaries, sorted."""
    return sorted(p.name for p in folder.iterdir()
                  if p.name != LOCK_NAME and not p.name.endswith(TMP_SUFFIX))


def open_run_dir(folder: str | Path, *, outputs: Iterable[str], resume: bool = False,
                 overwrite: bool = False, resumable: bool = True,
                 command: str = "train") -> RunLock:
    """Lock ``folder`` for one run of ``command`` and check it may be written.

    ``outputs`` are the names (files or folders, glob patterns allowed) the command writes;
    ``--overwrite`` deletes those. A folder holding anything (other than a lock and stale
    temporaries) is refused unless ``resume`` or ``overwrite``; ``resumable=False`` makes the
    message not suggest ``--resume``. The caller releases the returned lock (a context
    manager) when the run ends.
    """
    folder = Path(folder).expanduser()
    created = prepare_folder(folder)
    lock = RunLock(folder).acquire()
    lock.created = created
    try:
        note = lock.previous_note()
        if note:
            warnings.warn(note + ("; resuming" if resume else ""), RunDirWarning, stacklevel=2)
        clean_stale_temporaries(folder)
        if overwrite:
            for pattern in outputs:
                for p in folder.glob(pattern):
                    if p.name == LOCK_NAME:
                        continue
                    if p.is_dir() and not p.is_symlink():
                        shutil.rmtree(p)
                    else:
                        p.unlink(missing_ok=True)
        elif not resume:
            held = contents(folder)
            if held:
                listing = ", ".join(held[:5]) + (", ..." if len(held) > 5 else "")
                hint = ("use --resume to continue it, --overwrite to replace its outputs"
                        if resumable else "use --overwrite to replace its outputs")
                raise OutputError(f"invalid --out {str(folder)!r}: it is not empty ({listing}); "
                                  f"{hint}, or choose another folder")
    except BaseException:
        lock.release()
        raise
    return lock
