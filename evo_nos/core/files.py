"""Files written whole or not at all (write to a temporary file, then rename), and
exclusive file locks that die with their process."""
from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

try:
    import fcntl
except ImportError:         # Windows: no flock; FileLock does nothing there
    fcntl = None


def write_atomic(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write ``data`` (bytes, or text as UTF-8) to ``path`` so that a crash at any point
    leaves either the old file or the new one, never half of it; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


class LockedError(RuntimeError):
    """The lock is held by another live process; the message names it."""


class FileLock:
    """An exclusive lock on the file ``path``, held until :meth:`release` or until the
    process ends (a killed process never leaves a stale lock: the kernel drops it).

    ``flock`` locks (POSIX); where the platform has none (Windows) the lock is a no-op.
    The holder writes its pid and host into the file, so a refusal can name it::

        with FileLock(folder / "lock", blocking=False):   # LockedError if held
            ...
    """

    def __init__(self, path: str | os.PathLike, *, blocking: bool = True):
        self.path, self.blocking = Path(path), blocking
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> "FileLock":
        if self._fd is not None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if self.blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                os.lseek(fd, 0, os.SEEK_SET)
                holder = os.read(fd, 200).decode(errors="replace").strip()
                os.close(fd)
                raise LockedError(f"{self.path} is held by {holder or 'another process'}") \
                    from None
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        os.ftruncate(fd, 0)
        os.close(fd)                 # closing the descriptor drops the flock

    def __enter__(self) -> "FileLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
