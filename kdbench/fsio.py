"""Writing files so that a reader never sees half of one, and only under the folder they belong in."""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from kdbench.errors import KdbenchError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: Path, data: str | bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename, so a
    reader sees the old file or the whole new one, never part of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a report is as readable as any file
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def within(root: str | Path, *parts: str) -> Path:
    """``root/part/...`` for parts made from names (run ids, task and role names...), refusing a
    result that is not strictly inside ``root`` (a part that is absolute or climbs out with ``..``):
    nothing kdbench writes lands outside the folder the user named."""
    path = Path(root).joinpath(*parts)
    base, full = os.path.abspath(root), os.path.abspath(path)
    if not full.startswith(base.rstrip(os.sep) + os.sep):
        raise KdbenchError(f"{path}: outside {root}, refused (a name with a path in it?)")
    return path


@contextmanager
def held(lock_path: Path, busy: str):
    """Hold the lock file ``lock_path`` for the block, or fail at once with ``busy`` (one line) when
    another process holds it: one writer per run or sweep folder."""
    from filelock import FileLock, Timeout

    lock = FileLock(lock_path)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise KdbenchError(busy) from None
    try:
        yield
    finally:
        lock.release()
