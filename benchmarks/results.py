"""What a benchmark run measured (the report is rendered from this alone)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from benchmarks.bandwidth import Bandwidth
from benchmarks.hlo import KernelStats
from benchmarks.memory import MemoryRow
from benchmarks.settings import Settings
from benchmarks.shapes import Shape

Key = tuple[str, str]  # (optimizer name, contender name)


@dataclass
class ShapeResult:
    """Measurements on one parameter tree.

    ``step_seconds[key]`` is ``None`` where the contender has no version of the optimizer or
    cannot run here (n/a); ``compile_seconds`` (a median of ``compile_counts`` compilations),
    ``memory``, ``kernels`` (the compiled step's kernels, :mod:`benchmarks.hlo`) and
    ``faulted_bytes`` (host memory first touched per step) exist for JAX contenders only.
    """

    shape: Shape
    optimizers: list[str]
    contenders: list[str]
    step_seconds: dict[Key, float | None] = field(default_factory=dict)
    compile_seconds: dict[Key, float] = field(default_factory=dict)
    compile_counts: dict[Key, int] = field(default_factory=dict)
    kernels: dict[Key, KernelStats] = field(default_factory=dict)
    faulted_bytes: dict[Key, int] = field(default_factory=dict)  # host page faults per step
    memory: dict[Key, MemoryRow] = field(default_factory=dict)
    rounds: dict[str, int] = field(default_factory=dict)  # timing rounds used per optimizer

    def ratio(self, optimizer: str, contender: str, baseline: str) -> float | None:
        """contender time / baseline time (> 1: the baseline is faster), or ``None``."""
        t = self.step_seconds.get((optimizer, contender))
        base = self.step_seconds.get((optimizer, baseline))
        if t is None or base is None:
            return None
        return t / base


class EagerRow(NamedTuple):
    """One contender's un-jitted steps of one optimizer.

    Attributes:
        first_seconds: the first step after ``init``, caches cleared just before it (so it
            includes every compilation the step needs).
        first_compiles: XLA compilations during that first step.
        step_seconds: median seconds per step over the timed steps (after the warm-up steps).
        compiles: XLA compilations during the timed steps.
    """

    first_seconds: float
    first_compiles: int
    step_seconds: float
    compiles: int


@dataclass
class EagerResult:
    """Eager (un-jitted) steps on one tree: ``rows[(optimizer, contender)]``."""

    shape: Shape
    optimizers: list[str]
    contenders: list[str]
    warmup_steps: int
    steps: int
    rows: dict[Key, EagerRow] = field(default_factory=dict)

    @property
    def timed_steps(self) -> str:
        """The timed steps' numbers, e.g. ``"3–42"`` (steps count from 1)."""
        return f"{self.warmup_steps + 1}–{self.warmup_steps + self.steps}"

    def ratio(self, optimizer: str, contender: str, baseline: str) -> float | None:
        """contender's median step time / baseline's (> 1: the baseline is faster), or
        ``None``."""
        row, base = self.rows.get((optimizer, contender)), self.rows.get((optimizer, baseline))
        if row is None or base is None:
            return None
        return row.step_seconds / base.step_seconds


@dataclass
class Results:
    """Everything one run measured, plus the context to report it."""

    settings: Settings
    command: str
    date: str
    platform: str
    machine: dict[str, str]
    bandwidth: Bandwidth
    shapes: list[ShapeResult]
    large: ShapeResult | None  # the GPU-only ≥1B-parameter Adam row
    bytes_per_param: dict[str, int]
    eager: EagerResult | None = None  # un-jitted steps (``benchmarks.eager``)
    extra_sections: list[str] = field(default_factory=list)


def effective_gbps(results: Results, shape: Shape, optimizer: str, seconds: float) -> float:
    """GB/s an ideal fused step would have streamed in ``seconds``."""
    return results.bytes_per_param[optimizer] * shape.n_params / seconds / 1e9


def roofline_pct(results: Results, shape: Shape, optimizer: str, seconds: float) -> float:
    """Effective bandwidth as a percentage of the measured copy bandwidth."""
    return 100 * effective_gbps(results, shape, optimizer, seconds) / results.bandwidth.best
