"""Disk full 磁盘已满: telling a write that failed for lack of space from other failures.

Python's own writes say so (``OSError`` with ENOSPC / EDQUOT, or EFBIG past the file size limit), but
GDAL and SQLite report a failed write as "Cannot write feature" or an ``sqlite3_exec`` failure with no
errno. So :func:`storage_full` also looks at the folder that was being written (before the partial file
is removed): it tries to write a small probe file there (a full filesystem refuses it), and checks
whether a file there reached this process's file size limit.
"""

from __future__ import annotations

import errno
import os
import resource
import shutil
import uuid
from pathlib import Path

#: what an export that ran out of disk says (job error, or the 507 answer of a direct export)
DISK_FULL = (
    "服务器磁盘空间不足，导出未完成，未完成的文件已删除；请清理磁盘（GISGOV_HOME 与临时目录）后重试 "
    "disk full on the server: the export could not be written and its partial file was removed; free space "
    "(GISGOV_HOME and the temporary folder) and try again"
)
FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
# what GDAL / SQLite / zip writers say when a write fails for lack of space (when they say it at all)
_FULL_WORDS = ("no space left on device", "database or disk is full", "disk quota", "file too large")
PROBE_BYTES = 64 * 1024


def storage_full(exc: BaseException | None, folder: Path | None = None, need: int | None = None) -> bool:
    """True when ``exc`` (or what caused it) is a write that failed for lack of space; with ``folder``
    also when that folder has no room for a small probe file, or holds a file that reached the file
    size limit, or (``need``: about how many bytes the file needed) has less room than that — SQLite
    rolls its failed transaction back, which frees the space again before anyone can look."""
    if exc is None:
        return False
    seen = 0
    e: BaseException | None = exc
    while e is not None and seen < 10:
        if isinstance(e, OSError) and e.errno in FULL_ERRNOS:
            return True
        if any(w in str(e).lower() for w in _FULL_WORDS):
            return True
        e = e.__cause__ or e.__context__
        seen += 1
    if folder is None:
        return False
    return no_room(Path(folder)) or (need is not None and room(Path(folder)) < need)


def room(folder: Path) -> int:
    """Bytes a new file in ``folder`` can take: free space, and at most the file size limit."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return 0
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    return free if limit == resource.RLIM_INFINITY else min(free, int(limit))


def no_room(folder: Path) -> bool:
    """True when ``folder``'s filesystem refuses a :data:`PROBE_BYTES` write, or a file in ``folder``
    reached this process's file size limit (RLIMIT_FSIZE)."""
    try:
        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        if limit != resource.RLIM_INFINITY and any(
            f.stat().st_size >= limit - PROBE_BYTES for f in folder.rglob("*") if f.is_file()
        ):
            return True
    except OSError:
        pass
    probe = folder / f".space-probe-{uuid.uuid4().hex}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as e:
        return e.errno in FULL_ERRNOS
    try:
        os.write(fd, b"\0" * PROBE_BYTES)
        os.fsync(fd)
        return False
    except OSError as e:
        return e.errno in FULL_ERRNOS
    finally:
        os.close(fd)
        probe.unlink(missing_ok=True)
