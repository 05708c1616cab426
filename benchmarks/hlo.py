"""What a compiled step does, read off its optimized HLO: how many kernels it launches and
about how many bytes they move.

Every instruction of the entry computation that runs code is a kernel: fusions, and the
unfused operations left (``concatenate``, ``copy``, ...); parameters, constants, tuples,
tuple elements and bitcasts run nothing. A kernel moves the bytes of the operands it reads
plus those of the outputs it writes. An elementwise loop fusion (``kind=kLoop``) computes
only the elements it writes, so it reads at most that many elements of each operand: a
fusion that adds a 1,000-element slice of a long buffer to a parameter reads 1,000 elements
of the buffer, not all of it (XLA's own ``cost_analysis()`` counts the whole buffer there,
which is why this estimate is made here)."""

from __future__ import annotations

import math
import re
from typing import Any, NamedTuple

# Operations that launch nothing.
FREE_OPS = frozenset({"parameter", "constant", "tuple", "get-tuple-element", "bitcast",
                      "after-all", "partition-id", "replica-id"})

_DTYPE_BYTES = {"pred": 1, "s8": 1, "u8": 1, "f8e4m3fn": 1, "f8e5m2": 1, "s16": 2, "u16": 2,
                "f16": 2, "bf16": 2, "s32": 4, "u32": 4, "f32": 4, "s64": 8, "u64": 8,
                "f64": 8, "c64": 8, "c128": 16}
_ARRAY = re.compile(r"\b([a-z]\w*)\[([\d,]*)\]")
_INSTRUCTION = re.compile(
    r"^\s*(?:ROOT\s+)?%(?P<name>[\w.\-]+) = (?P<shape>.+?) (?P<op>[a-z][\w\-]*)\((?P<args>[^)]*)\)"
    r"(?P<attrs>.*)$"
)
_OPERAND = re.compile(r"%([\w.\-]+)")
_NUMBERED = re.compile(r"\.\d+$")


class _Value(NamedTuple):
    nbytes: int
    elements: int  # of its largest array (a tuple's)
    itemsize: int  # of its first array


def _value(shape: str) -> _Value:
    arrays = [(_DTYPE_BYTES.get(dtype, 0), math.prod(int(d) for d in dims.split(",") if d))
              for dtype, dims in _ARRAY.findall(shape)]
    if not arrays:
        return _Value(0, 0, 0)
    return _Value(sum(b * n for b, n in arrays), max(n for _, n in arrays), arrays[0][0])


class KernelGroup(NamedTuple):
    """Kernels of one kind (XLA's instruction name without its number, e.g.
    ``slice_add_fusion`` or ``concatenate``)."""

    count: int
    bytes_moved: int


class KernelStats(NamedTuple):
    """The kernels of a compiled program's entry computation.

    Attributes:
        kernels: how many (fusions and unfused operations).
        bytes_moved: estimated bytes they read and write together (see the module's doc).
        groups: the same, per kind of kernel, largest traffic first.
    """

    kernels: int
    bytes_moved: int
    groups: dict[str, KernelGroup]

    def bytes_per_param(self, n_params: int) -> float:
        return self.bytes_moved / n_params

    def summary(self, n_params: int, top: int = 4) -> str:
        """E.g. ``slice_add_fusion ×500 (12.0 B/param), concatenate ×1 (8.0 B/param)``."""
        parts = [f"`{name}` ×{g.count} ({g.bytes_moved / n_params:.1f} B/param)"
                 for name, g in list(self.groups.items())[:top]]
        rest = list(self.groups.values())[top:]
        if rest:
            parts.append(f"{sum(g.count for g in rest)} others "
                         f"({sum(g.bytes_moved for g in rest) / n_params:.1f} B/param)")
        return ", ".join(parts)


def entry_computation(hlo_text: str) -> list[str]:
    """The instruction lines of the ``ENTRY`` computation of an HLO module's text."""
    lines = hlo_text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("ENTRY "))
    body = []
    for line in lines[start + 1:]:
        if line.startswith("}"):
            break
        body.append(line)
    return body


def analyse_text(hlo_text: str) -> KernelStats:
    """Kernel count and estimated bytes moved of an optimized HLO module's text."""
    values: dict[str, _Value] = {}
    groups: dict[str, list[int]] = {}
    for line in entry_computation(hlo_text):
        match = _INSTRUCTION.match(line)
        if match is None:
            continue
        out = _value(match["shape"])
        values[match["name"]] = out
        op = match["op"]
        if op in FREE_OPS:
            continue
        loop_fusion = op == "fusion" and "kind=kLoop" in match["attrs"]
        moved = out.nbytes
        for operand in _OPERAND.findall(match["args"]):
            v = values.get(operand)
            if v is None:
                continue
            moved += min(v.nbytes, out.elements * v.itemsize) if loop_fusion else v.nbytes
        group = groups.setdefault(_NUMBERED.sub("", match["name"]), [0, 0])
        group[0] += 1
        group[1] += moved
    ordered = sorted(groups.items(), key=lambda kv: (-kv[1][1], kv[0]))
    return KernelStats(
        kernels=sum(count for count, _ in groups.values()),
        bytes_moved=sum(moved for _, moved in groups.values()),
        groups={name: KernelGroup(count, moved) for name, (count, moved) in ordered},
    )


def analyse(compiled: Any) -> KernelStats | None:
    """:func:`analyse_text` of a compiled executable, or ``None`` where it gives no text."""
    try:
        text = compiled.as_text()
    except Exception:  # noqa: BLE001 (a backend without HLO text: no analysis)
        return None
    if not text or "ENTRY " not in text:
        return None
    return analyse_text(text)
