"""Compile and step time of Muon's jitted step on a transformer-shaped tree of matrices, with
one Newton–Schulz per leaf (``gx.muon``'s default), with the matrices of one shape stacked
into one vmapped Newton–Schulz (``gx.muon(..., batch_by_shape=True)``), and Optax's
``contrib.muon`` (which runs Newton–Schulz in the update's dtype: compare it with
``ns_dtype=None``), in one process. Run: ``python -m benchmarks.muon_compile``.
"""

from __future__ import annotations

import statistics
import sys
import time

import jax
import jax.numpy as jnp

import gradtx as gx
from benchmarks import formatting as fmt

LAYERS, D = 24, 256


def transformer_matrices(layers: int = LAYERS, d: int = D) -> dict[str, jax.Array]:
    """The hidden matrices of a decoder: per layer q, k, v, o (d×d) and the MLP's d×4d, 4d×d."""
    params = {}
    for i in range(layers):
        for name in ("wq", "wk", "wv", "wo"):
            params[f"layer_{i:02d}/{name}"] = jnp.zeros((d, d), jnp.float32)
        params[f"layer_{i:02d}/w_up"] = jnp.zeros((d, 4 * d), jnp.float32)
        params[f"layer_{i:02d}/w_down"] = jnp.zeros((4 * d, d), jnp.float32)
    return params


def seconds(params, make_opt=lambda: gx.muon(0.02),
            steps: int = 5) -> tuple[float, float, float]:
    """(trace and lower, compile, median step) seconds of a fresh step of ``make_opt()``."""
    opt = make_opt()
    state = opt.init(params)

    def step(p, s, g):
        updates, s = opt.update(g, s, p)
        return gx.apply_updates(p, updates), s

    t0 = time.perf_counter()
    lowered = jax.jit(step, donate_argnums=(0, 1)).lower(params, state, params)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    grads = jax.tree_util.tree_map(lambda x: x + 0.01, params)
    params = jax.tree_util.tree_map(jnp.copy, params)
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        params, state = compiled(params, state, grads)
        jax.block_until_ready(params)
        times.append(time.perf_counter() - start)
    return t1 - t0, t2 - t1, statistics.median(times[1:])


def contenders() -> tuple:
    """(label, optimizer factory) of each contender."""
    import optax  # a benchmark reference only

    return (
        ("gradtx per leaf (NS in bfloat16, torch's)", lambda: gx.muon(0.02)),
        ("gradtx batch_by_shape=True (bfloat16)", lambda: gx.muon(0.02, batch_by_shape=True)),
        ("gradtx per leaf, ns_dtype=None (float32)", lambda: gx.muon(0.02, ns_dtype=None)),
        ("optax.contrib.muon (float32)", lambda: optax.contrib.muon(0.02)),
    )


def measure(quick: bool) -> tuple[dict, list[tuple[str, float, float, float]]]:
    """The tree's description and, per contender, (label, trace+lower s, compile s, step s),
    medians over fresh compilations (2; 1 with ``quick``, on a 2-layer d=32 tree)."""
    layers, d, repeats = (2, 32, 1) if quick else (LAYERS, D, 2)
    params = transformer_matrices(layers, d)
    rows = []
    for label, make_opt in contenders():
        runs = [seconds(params, make_opt) for _ in range(repeats)]
        rows.append((label, *(statistics.median(r[i] for r in runs) for i in range(3))))
    return {"matrices": len(params), "layers": layers, "d": d, "repeats": repeats}, rows


def render(tree: dict, rows, quick: bool) -> str:
    """The Markdown section "Muon: compile and step time"."""
    optax_step = rows[-1][3]
    table = ["| Muon step | trace + lower (s) | compile (s) | step (ms) | step × Optax's |",
             "|---|---|---|---|---|"]
    table += [f"| {label} | {lower:.2f} | {compile_:.2f} | {fmt.ms(step)} | "
              f"{fmt.ratio(step / optax_step)} |" for label, lower, compile_, step in rows]
    return "\n".join([
        "## Muon: compile and step time",
        "",
        f"A jitted Muon step (donating parameters and state) on the hidden matrices of a "
        f"{tree['layers']}-layer decoder, d = {tree['d']} ({tree['matrices']} matrices of 3 "
        f"shapes: q, k, v, o and the MLP's), medians over {tree['repeats']} fresh "
        "compilations; the step is the median of 5. Optax's `contrib.muon` runs Newton–Schulz "
        "in the update's dtype (float32 here): compare it with `ns_dtype=None`. Command: "
        "`python -m benchmarks.muon_compile`.",
        "",
        "\n".join(table),
        "",
        *(["*Quick run (2 layers, d = 32).*", ""] if quick else []),
    ])


def run(quick: bool) -> str:
    """The section, for ``python -m benchmarks`` (an optional section)."""
    return render(*measure(quick), quick)


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv[1:]))
