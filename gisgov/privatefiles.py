"""Files only their owner may read (keys, passwords, personal data): mode 0600 from the first byte,
whatever the umask."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path


def write_private(path: Path, data: str | bytes) -> None:
    """Write ``path`` readable by its owner only (0600) before any byte is written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data.encode() if isinstance(data, str) else data)
    os.chmod(path, 0o600)


def create_once(path: Path, make: Callable[[], str]) -> str:
    """The text of ``path``, creating it (0600) with ``make()`` if missing. Written under a private
    name, then linked into place: processes starting together all end up with the first one's
    content (never two secrets, never a readable file)."""
    path = Path(path)
    if not path.exists():
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        try:
            write_private(tmp, make())
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    if path.stat().st_mode & 0o077:
        os.chmod(path, 0o600)
    return path.read_text().strip()
