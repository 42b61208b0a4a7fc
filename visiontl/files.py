"""Writing output files safely, one way for every writer: into a temp file of its own in the
target's folder, then renamed over the name. A crash leaves the old file or the new one,
never half of one; concurrent writers never share a temp file; and a symlink already planted
at the name is replaced, never followed (its target is left alone)."""
from __future__ import annotations

import csv
import io
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Iterator, Sequence


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def replacing(path: str | Path, *, durable: bool = False) -> Iterator[Path]:
    """A temp path next to ``path`` (same suffix, so libraries pick the same format) for a
    writer to fill; renamed over ``path`` when the block ends, deleted if it fails. With
    ``durable``, the file and the folder are fsynced (checkpoints)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:80]}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # as open() would make it (mkstemp makes 0600)
        if durable:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
        if durable:
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: str | Path, write: Callable[[BinaryIO], Any], *, durable: bool = True) -> Path:
    """``write(file)`` into a binary file that replaces ``path`` whole (:func:`replacing`)."""
    with replacing(path, durable=durable) as tmp, open(tmp, "wb") as f:
        write(f)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    """``text`` (UTF-8) as ``path``, replaced whole (:func:`replacing`)."""
    return write_atomic(path, lambda f: f.write(text.encode("utf-8")), durable=False)


def write_csv(path: str | Path, rows: Iterable[Sequence]) -> Path:
    """``rows`` (the header first) as a CSV file at ``path``, replaced whole (:func:`replacing`)."""
    text = io.StringIO(newline="")
    csv.writer(text).writerows(rows)
    return write_text(path, text.getvalue())
