"""A file written once by whichever process comes first: the generated secret key, a run's recorded split."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_once(path: Path, text: str) -> str:
    """``text`` into ``path`` unless it exists, readable by its owner only; the file's text either way. Written
    whole beside it, then linked into place, so processes that race agree on the first one written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        fd, draft = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")  # mode 0600
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(draft)
    return path.read_text()
