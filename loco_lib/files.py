"""Files written whole or not at all.

Every cache, record and saved edit of loco is written to a temporary file beside its target and
then renamed into place (``os.replace``, atomic within one file system), so an interrupted run
never leaves half a file that the next run would read as finished. The temporary name is unique to
the process and the call, so processes of one ``accelerate launch`` that finish the same file do not
collide, and it is removed when writing fails.
"""
from __future__ import annotations

import json
import os
import uuid
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def replaced(path):
    """Yield a temporary path beside ``path``; when the block ends without an error the file written
    there becomes ``path``, otherwise it is removed. Nest two blocks to put two files in place: the
    inner one is renamed first."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(path, data: bytes) -> None:
    with replaced(path) as tmp:
        tmp.write_bytes(data)


def write_text(path, text: str) -> None:
    with replaced(path) as tmp:
        tmp.write_text(text)


def write_json(path, value, **dumps) -> None:
    """``json.dumps(value, **dumps)`` written whole to ``path``."""
    write_text(path, json.dumps(value, **dumps))
