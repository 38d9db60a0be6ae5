"""Small shared helpers: atomic file writes that honour the umask, content hashing, cache
digests, seeded streams.

Every module may import this one; it imports nothing from the package.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
import zlib
from pathlib import Path
from typing import Any

import numpy as np


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the new one, never a half.

    The temporary file is created with mode 0666 filtered by the process umask (as ``open``
    does), so results and caches shared between users get the permissions the user asked for.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: equal data give equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def content_hash(*parts: Any, length: int = 16) -> str:
    """A hex digest (``length`` characters) of the canonical JSON of ``parts``."""
    return hashlib.sha256(canonical_json(list(parts)).encode()).hexdigest()[:length]


def file_hash(path: str | Path, length: int = 16) -> str:
    """A hex digest of a file's bytes (read in chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:length]


# Cache digests: ``<file>.sha256`` beside a cache file, checked on load.

DIGEST_SUFFIX = ".sha256"


def _digest_path(path: Path) -> Path:
    return path.with_name(path.name + DIGEST_SUFFIX)


def write_digest(path: Path, data: bytes | None = None) -> None:
    """Store the SHA-256 of ``path`` (whose bytes are ``data`` if given) beside it, as
    ``<name>.sha256``, so a later load can tell an edited or damaged cache file."""
    path = Path(path)
    digest = hashlib.sha256(data).hexdigest() if data is not None else file_hash(path, length=64)
    atomic_write_bytes(_digest_path(path), f"{digest}  {path.name}\n".encode())


def adopt_digest(path: Path) -> None:
    """Store the digest of a cache file written before digests existed (after it loaded and
    passed its checks), so later edits are caught."""
    if not _digest_path(Path(path)).is_file():
        write_digest(Path(path))


def check_digest(path: Path) -> str | None:
    """Why ``path`` does not match the digest stored beside it, or ``None`` when it matches
    or has no digest (see :func:`adopt_digest`)."""
    path = Path(path)
    side = _digest_path(path)
    if not side.is_file():
        return None
    try:
        stored = side.read_text(encoding="ascii").split()[0]
    except (OSError, UnicodeDecodeError, IndexError):
        return f"its digest file {side.name} is unreadable"
    if stored != file_hash(path, length=64):
        return f"its content does not match the digest in {side.name} (edited or corrupt)"
    return None


def stream(seed: int, name: str) -> np.random.Generator:
    """The random stream of one component: the same for every policy of a run."""
    return np.random.default_rng([seed, zlib.crc32(name.encode())])
