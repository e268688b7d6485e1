"""Writes into a run folder that fail (a full disk, a lost mount) leave the previous file whole:
the new content goes to a temporary file first and replaces the old one only when complete."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A path to write `path`'s new content to; it replaces `path` when the block ends without
    an error and is removed otherwise. It has the same name, in a hidden folder beside `path`,
    because some writers record the file name inside the file (torch.export's .pt2)."""
    path = Path(path)
    scratch = Path(tempfile.mkdtemp(prefix=".writing-", dir=path.parent))
    try:
        yield scratch / path.name
        os.replace(scratch / path.name, path)
    except OSError as exc:  # name the file the user knows, not the temporary one (or none:
        # a full disk found when the file is closed)
        if not exc.filename or Path(exc.filename).parent == scratch:
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def write_text(path: Path, text: str) -> None:
    with replacing(path) as tmp:
        tmp.write_text(text)
