"""Progress messages on stderr, stamped with the seconds since the harness started."""

from __future__ import annotations

import sys
import time

_START = time.perf_counter()


def log(message: str) -> None:
    """Print one progress line to stderr (the report itself goes to a file)."""
    print(f"[bench {time.perf_counter() - _START:7.1f}s] {message}", file=sys.stderr, flush=True)
