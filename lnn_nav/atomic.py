"""Atomic file writes: a reader sees the old file or the new one, never half.

Every file the package writes (episodes, checkpoints, policies, reports,
export bundles) goes through here: written to a temporary name in the target's
directory, flushed to disk, then renamed over the target. A killed process
leaves at worst a hidden `.<name>.*.tmp` file, which resumable writers remove.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


def _default_mode() -> int:
    # mkstemp creates 0600 files; give what a plain open() would (0666 less the
    # umask), since results and bundles are read by other users and machines.
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path next to `path` for a writer that needs a file
    name (ONNX export, video encoders); on success it is renamed to `path`,
    on any exception it is deleted. `suffix` keeps an extension that a
    writer reads its format from (e.g. ".tmp.mp4")."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        os.chmod(tmp, _default_mode())
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], object]) -> None:
    """Call `write(binary_file)` on a temporary file, fsync it, rename it to `path`."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: object) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True))
