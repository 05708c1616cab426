"""Number formats shared by the tables and the target verdicts (verdicts are computed on the
rounded values that are printed, so a reader can check them against the tables)."""

from __future__ import annotations

RATIO_DIGITS = 2
SECONDS_DIGITS = 3
PCT_DIGITS = 1
NA = "n/a"


def ms(seconds: float | None) -> str:
    return NA if seconds is None else f"{seconds * 1e3:.4g}"


def ratio(value: float | None) -> str:
    return NA if value is None else f"{value:.{RATIO_DIGITS}f}×"


def seconds(value: float | None) -> str:
    return NA if value is None else f"{value:.{SECONDS_DIGITS}f}"


def pct(value: float | None) -> str:
    return NA if value is None else f"{value:.{PCT_DIGITS}f}%"


def mb(nbytes: int | None) -> str:
    return NA if nbytes is None else f"{nbytes / 1e6:.2f}"


def table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
