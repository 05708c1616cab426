"""A large run: Adam on 500M float32 parameters on the CPU, memory against the theory.

Steps ``gx.adam`` on 500M parameters (4 leaves of 125M; 5M with ``--quick``) with a jitted step
that donates the parameters and the state, for a few steps, with one set of gradients made once
and reused. Reports the process's peak resident memory (``resource.getrusage``) and XLA's buffer
assignment for the step (``compiled.memory_analysis()``) against what any implementation must
hold: parameters, gradients and Adam's two moments, 16 bytes per parameter (8 GB at 500M).

It is a benchmark, not a test: the full run needs about 9 GB of memory.
``python -m benchmarks.large_run [--quick]`` prints the section.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp

import gradtx as gx
from benchmarks.memory import MemoryRow, analyse
from benchmarks.progress import log

LEAVES = 4
FULL_LEAF = (12_500, 10_000)  # 125M parameters per leaf, 500M in all
QUICK_LEAF = (125, 10_000)  # 1.25M per leaf, 5M in all
STEPS = 3
# Parameters, gradients and Adam's two moments, float32 each.
BYTES_PER_PARAM = 16


def peak_rss() -> int:
    """The process's peak resident set size so far, in bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def make_tree(seed: int, shape: tuple[int, ...]) -> dict[str, jax.Array]:
    """LEAVES normal float32 leaves, made on the device one at a time (so that only one leaf's
    random bits are ever alive besides the finished leaves)."""
    normal = jax.jit(lambda key: jax.random.normal(key, shape, jnp.float32))
    keys = jax.random.split(jax.random.key(seed), LEAVES)
    tree = {}
    for i in range(LEAVES):
        tree[f"w{i}"] = normal(keys[i]).block_until_ready()
    return tree


def measure(quick: bool) -> dict:
    shape = QUICK_LEAF if quick else FULL_LEAF
    n = LEAVES * shape[0] * shape[1]
    jnp.zeros(()).block_until_ready()  # start the backend first: its memory is not the run's
    baseline = peak_rss()
    t0 = time.perf_counter()
    log(f"large run: making {n / 1e6:.0f}M parameters and one set of gradients")
    params = make_tree(0, shape)
    grads = make_tree(1, shape)
    opt = gx.adam(1e-3)
    state = opt.init(params)
    jax.block_until_ready(state)
    made = time.perf_counter() - t0

    def step(params, state, grads):
        updates, state = opt.update(grads, state, params)
        return gx.apply_updates(params, updates), state

    t0 = time.perf_counter()
    compiled = jax.jit(step, donate_argnums=(0, 1)).lower(params, state, grads).compile()
    compile_seconds = time.perf_counter() - t0
    memory = analyse(compiled, BYTES_PER_PARAM * n, None)
    seconds = []
    for i in range(STEPS):
        log(f"large run: step {i + 1} of {STEPS}")
        t0 = time.perf_counter()
        params, state = compiled(params, state, grads)
        jax.block_until_ready((params, state))
        seconds.append(time.perf_counter() - t0)
    finite = all(bool(jnp.isfinite(leaf).all()) for leaf in jax.tree.leaves(params))
    return {
        "params": n,
        "baseline_rss": baseline,
        "peak_rss": peak_rss(),
        "memory": memory,
        "make_seconds": made,
        "compile_seconds": compile_seconds,
        "step_seconds": seconds,
        "finite": finite,
        "count": int(state.count),  # steps the optimizer counted: STEPS
    }


def gb(nbytes: int | float | None) -> str:
    return "n/a" if nbytes is None else f"{nbytes / 1e9:.2f}"


def render(r: dict, quick: bool, seconds: float) -> str:
    n = r["params"]
    theory = BYTES_PER_PARAM * n
    m: MemoryRow | None = r["memory"]
    rss = r["peak_rss"] - r["baseline_rss"]
    rows = [
        ("Theory: params + grads + Adam state (16 B/param)", gb(theory), "1.00"),
        ("Process peak RSS, above the RSS before the run", gb(rss), f"{rss / theory:.2f}"),
        ("Process peak RSS, whole process", gb(r["peak_rss"]), f"{r['peak_rss'] / theory:.2f}"),
    ]
    if m is not None:
        peak = m.argument + m.output - m.alias + m.temp
        rows += [
            ("XLA step: arguments (params, state, grads)", gb(m.argument),
             f"{m.argument / theory:.2f}"),
            ("XLA step: outputs (params, state)", gb(m.output), f"{m.output / theory:.2f}"),
            ("XLA step: outputs aliased to donated inputs", gb(m.alias),
             f"{m.alias / theory:.2f}"),
            ("XLA step: temporaries", gb(m.temp), f"{m.temp / theory:.2f}"),
            ("XLA step peak: arguments + outputs − aliased + temporaries", gb(peak),
             f"{peak / theory:.2f}"),
        ]
    table = ["| Memory | GB | × theory |", "|---|---|---|"]
    table += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    step = statistics.median(r["step_seconds"])
    return "\n".join([
        "## Large run",
        "",
        f"`gx.adam` on {n / 1e6:.0f}M float32 parameters ({LEAVES} leaves) on the CPU: a jitted "
        f"step donating the parameters and the state, {len(r['step_seconds'])} steps, one set "
        "of gradients made once and reused.",
        "",
        "\n".join(table),
        "",
        f"Median step {step:.2f} s ({step / n * 1e9:.2f} ns per parameter); compile "
        f"{r['compile_seconds']:.2f} s; making the "
        f"parameters, gradients and state {r['make_seconds']:.1f} s. Parameters finite after "
        f"the run: {'yes' if r['finite'] else 'NO'}; steps counted by the optimizer: "
        f"{r['count']}.",
        "",
        f"*{'Quick run (5M parameters). ' if quick else ''}Measured in {seconds:.0f} s.*",
        "",
    ])


def run(quick: bool) -> str:
    """The Markdown section "Large run"."""
    t0 = time.perf_counter()
    result = measure(quick)
    return render(result, quick, time.perf_counter() - t0)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.large_run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="5M parameters: a smoke run")
    args = parser.parse_args(argv)
    print(run(args.quick))


if __name__ == "__main__":
    main()
