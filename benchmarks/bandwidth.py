"""The machine's streaming bandwidth, the roofline that step times are compared with.

Every method moves ``2 × buffer`` bytes per call (read the source, write the destination),
and a method's bandwidth is the fastest of several timed calls. The best method is the
reference: an optimizer step can at best stream its bytes at that rate."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import torch

from benchmarks.progress import log


class Bandwidth(NamedTuple):
    """GB/s (10⁹ bytes, read + write) of each method, and the buffer size used."""

    by_method: dict[str, float]
    buffer_bytes: int

    @property
    def best_method(self) -> str:
        return max(self.by_method, key=self.by_method.get)

    @property
    def best(self) -> float:
        return self.by_method[self.best_method]


def _numpy_copy(n: int) -> Callable[[int], None]:
    src, dst = np.ones(n, np.float32), np.zeros(n, np.float32)

    def run(reps: int) -> None:
        for _ in range(reps):
            np.copyto(dst, src)

    return run


def _torch_copy(n: int, device: str) -> Callable[[int], None]:
    src = torch.ones(n, dtype=torch.float32, device=device)
    dst = torch.zeros(n, dtype=torch.float32, device=device)

    def run(reps: int) -> None:
        for _ in range(reps):
            dst.copy_(src)
        if device == "cuda":
            torch.cuda.synchronize()

    return run


def _jax_loop(fn: Callable, buffer: jax.Array, *extra: jax.Array) -> Callable[[int], None]:
    box = [buffer]

    def run(reps: int) -> None:
        for _ in range(reps):
            box[0] = fn(box[0], *extra)
        box[0].block_until_ready()

    return run


def _jax_copy(n: int) -> Callable[[int], None]:
    """Copy a source array into a donated destination buffer."""
    copy = jax.jit(lambda dst, src: dst.at[:].set(src), donate_argnums=0)
    src = jnp.ones(n, jnp.float32)
    return _jax_loop(copy, jnp.zeros(n, jnp.float32), src)


def _jax_in_place(n: int) -> Callable[[int], None]:
    """``x + 1`` into x's own (donated) buffer: the in-place access pattern of an optimizer
    step, which on CPUs avoids the extra read a write to a fresh cache line costs."""
    add = jax.jit(lambda x: x + 1.0, donate_argnums=0)
    return _jax_loop(add, jnp.zeros(n, jnp.float32))


def _time(run: Callable[[int], None], reps: int, trials: int) -> float:
    run(reps)  # warm-up: page faults, compilation
    best = float("inf")
    for _ in range(trials):
        start = time.perf_counter()
        run(reps)
        best = min(best, (time.perf_counter() - start) / reps)
    return best


def measure(buffer_bytes: int, trials: int, platform: str, torch_device: str | None) -> Bandwidth:
    """Copy bandwidth of numpy, torch and jitted JAX on ``platform`` (``"cpu"`` or a GPU)."""
    n = buffer_bytes // 4
    methods: dict[str, Callable[[], Callable[[int], None]]] = {}
    if platform == "cpu":
        methods["numpy.copyto"] = lambda: _numpy_copy(n)
    if torch_device is not None:
        methods[f"torch copy_ ({torch_device}, {torch.get_num_threads()} threads)"] = (
            lambda: _torch_copy(n, torch_device)
        )
    methods["jax jit copy into donated buffer"] = lambda: _jax_copy(n)
    methods["jax jit in-place x+1 (donated)"] = lambda: _jax_in_place(n)
    reps = 1 if platform == "cpu" else 10  # GPU copies are short: amortise the dispatch
    result = {}
    for name, make in methods.items():
        seconds = _time(make(), reps, trials)
        result[name] = 2 * buffer_bytes / seconds / 1e9
        log(f"copy bandwidth {name}: {result[name]:.1f} GB/s")
    return Bandwidth(result, buffer_bytes)


def best_of(*measurements: Bandwidth) -> Bandwidth:
    """Per method, the highest of several measurements (e.g. before and after the timings, so
    that a burst of other load during one of them does not lower the roofline)."""
    methods = measurements[0].by_method
    best = {m: max(b.by_method[m] for b in measurements) for m in methods}
    return Bandwidth(best, measurements[0].buffer_bytes)
