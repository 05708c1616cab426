"""Low-memory optimizer state: does training with a compressed optimizer state end where
float32 state does? Trains the digits CNN and a 1M-parameter MLP with Adam and AdamW, float32
state against :func:`gradtx.wrappers.quantized.quantize_state` (8-bit block-wise), from the same
initial weights on the same minibatches, and reports the final losses, test accuracies and state
bytes per parameter. ``python -m benchmarks.state_quality [--quick]`` prints the section."""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import gradtx as gx
from benchmarks import formatting as fmt
from benchmarks.progress import log
from gradtx.compare import digits
from gradtx.wrappers.quantized import quantize_state, state_nbytes

Factory = Callable[..., gx.GradientTransformation]

# The target: a compressed state ends within this fraction of float32 state's final train loss.
TOLERANCE = 0.01
SEED = 0
# The reference row: the baseline again with the minibatches in another order (another shuffle
# seed), which shows how much the final loss moves between runs for reasons other than the state.
REFERENCE_SHUFFLE_SEED = 1


@dataclass(frozen=True)
class StateVariant:
    """One way of keeping the optimizer state: ``build(factory, kwargs)`` makes the optimizer
    (e.g. ``lambda f, kw: f(**kw)`` for the factory's own float32 state); ``description`` is
    one sentence for the section's text."""

    name: str
    build: Callable[[Factory, Mapping[str, Any]], gx.GradientTransformation]
    description: str = ""


# The first variant is the baseline the others are compared with; append a variant to add a
# row per task and optimizer.
STATE_VARIANTS: list[StateVariant] = [
    StateVariant("fp32", lambda f, kw: f(**kw), "the optimizer's own float32 state"),
    StateVariant(
        "bf16 moments",
        lambda f, kw: f(**kw, mu_dtype=jnp.bfloat16, nu_dtype=jnp.bfloat16),
        "`adam(..., mu_dtype=jnp.bfloat16, nu_dtype=jnp.bfloat16)`: both moments stored in "
        "bfloat16 (4 bytes per parameter), updated in float32",
    ),
    StateVariant(
        "8-bit block-wise",
        lambda f, kw: quantize_state(f(**kw)),
        "`quantize_state(opt)` (`gradtx.wrappers.quantized`): every state leaf of at least "
        "4096 elements stored as one byte per element plus a float32 scale per 256 elements "
        "(Dettmers et al., 2021)",
    ),
]

OPTIMIZERS: list[tuple[str, Factory, dict[str, Any]]] = [
    ("adam", gx.adam, {"learning_rate": 1e-3}),
    ("adamw", gx.adamw, {"learning_rate": 1e-3, "weight_decay": 1e-2}),
]


@dataclass(frozen=True)
class Task:
    name: str
    init: Callable[[int], Any]
    logits: Callable[[Any, jax.Array], jax.Array]
    epochs: int


def init_wide_mlp(seed: int, hidden: int = 1024) -> dict[str, dict[str, jax.Array]]:
    """64 -> ``hidden`` -> ``hidden`` -> 10 with ReLUs, He-initialised as the digits models."""
    rng = np.random.default_rng([seed, 0])
    sizes = [(64, hidden), (hidden, hidden), (hidden, 10)]
    params = {}
    for i, (fan_in, fan_out) in enumerate(sizes):
        gain = 1.0 if i == len(sizes) - 1 else 2.0
        w = math.sqrt(gain / fan_in) * rng.standard_normal((fan_in, fan_out))
        params[f"dense{i}"] = {
            "w": jnp.asarray(w, jnp.float32),
            "b": jnp.zeros(fan_out, jnp.float32),
        }
    return params


def wide_mlp_logits(params, x: jax.Array) -> jax.Array:
    h = x.reshape(x.shape[0], -1)
    names = sorted(params)
    for name in names[:-1]:
        h = jax.nn.relu(h @ params[name]["w"] + params[name]["b"])
    return h @ params[names[-1]]["w"] + params[names[-1]]["b"]


TASKS = [
    Task("digits CNN", digits.init_cnn, digits.cnn_logits, epochs=15),
    Task("digits MLP 64-1024-1024-10", init_wide_mlp, wide_mlp_logits, epochs=10),
]


@dataclass(frozen=True)
class Run:
    task: str
    optimizer: str
    variant: str
    n_params: int
    steps: int
    train_loss: float  # mean minibatch loss over the last `window` steps
    window: int
    test_loss: float
    test_accuracy: float
    state_bytes: int
    seconds: float

    @property
    def bytes_per_param(self) -> float:
        return self.state_bytes / self.n_params


def train(
    task: Task, opt: gx.GradientTransformation, steps: int, window: int, shuffle_seed: int = SEED
) -> dict:
    """``steps`` minibatch steps as one compiled scan: the same initial weights, and the same
    batches for a given ``shuffle_seed``, for every optimizer."""
    data = digits.load()
    params = task.init(SEED)

    def evaluate(final):
        logits = task.logits(final, data.x_test)
        return digits.cross_entropy(logits, data.y_test), digits.accuracy(logits, data.y_test)

    losses, state, (test_loss, accuracy) = digits.train_scan(
        opt, params, task.logits, steps, shuffle_seed, evaluate
    )
    loss = jnp.mean(losses[-window:])
    n_params = sum(x.size for x in jax.tree_util.tree_leaves(params))
    return {
        "train_loss": float(loss),
        "test_loss": float(test_loss),
        "test_accuracy": float(accuracy),
        "state_bytes": state_nbytes(state),
        "n_params": n_params,
    }


def run_all(quick: bool, variants: Sequence[StateVariant] = ()) -> list[Run]:
    """Every task, optimizer and state variant, then the reference row (full runs only)."""
    variants = list(variants) or STATE_VARIANTS
    per_epoch = digits.steps_per_epoch(digits.load())
    jobs = [(v.name, v, SEED) for v in variants]
    if not quick:
        jobs.append((reference_name(variants[0].name), variants[0], REFERENCE_SHUFFLE_SEED))
    runs = []
    for task in TASKS:
        steps = 3 if quick else task.epochs * per_epoch
        window = min(steps, per_epoch)
        # A smoke run trains with the first optimizer only: compilation dominates its time.
        for opt_name, factory, kwargs in OPTIMIZERS[:1] if quick else OPTIMIZERS:
            for name, variant, shuffle_seed in jobs:
                log(f"state quality: {task.name}, {opt_name}, {name}, {steps} steps")
                t0 = time.perf_counter()
                out = train(task, variant.build(factory, kwargs), steps, window, shuffle_seed)
                runs.append(Run(task.name, opt_name, name, steps=steps, window=window,
                                seconds=time.perf_counter() - t0, **out))
    return runs


def reference_name(baseline_name: str) -> str:
    return f"{baseline_name}, batch order {REFERENCE_SHUFFLE_SEED}"


def percent_difference(value: float, baseline: float) -> float:
    """100 (value - baseline) / baseline, rounded as printed (2 decimals, never -0.00)."""
    return round(100 * (value - baseline) / baseline, 2) + 0.0


def render(
    runs: Sequence[Run], quick: bool, seconds: float, variants: Sequence[StateVariant] = ()
) -> str:
    variants = list(variants) or STATE_VARIANTS
    baseline_name = runs[0].variant
    reference = reference_name(baseline_name)
    baselines = {(r.task, r.optimizer): r for r in runs if r.variant == baseline_name}
    rows, verdicts, worse_verdicts, compressed, references = [], [], [], [], []
    for r in runs:
        base = baselines[(r.task, r.optimizer)]
        delta = percent_difference(r.train_loss, base.train_loss)
        test_delta = percent_difference(r.test_loss, base.test_loss)
        if r is base:
            shown, shown_test, verdict = "—", "—", "baseline"
        else:
            shown, shown_test = f"{delta:+.2f}%", f"{test_delta:+.2f}%"
            if r.variant == reference:
                verdict = "reference"
                references.append(abs(delta))
            else:
                # The verdicts are read off the printed (rounded) percentage: |Δ| within the
                # tolerance, and (what costs a user) no more than the tolerance *worse*.
                met = abs(delta) <= 100 * TOLERANCE
                not_worse = delta <= 100 * TOLERANCE
                verdict = f"{'MET' if met else 'MISSED'} / {'MET' if not_worse else 'MISSED'}"
                verdicts.append(met)
                worse_verdicts.append(not_worse)
                compressed.append(delta)
        rows.append([
            r.task, r.optimizer, r.variant, f"{r.train_loss:.4g}", shown, f"{r.test_loss:.4g}",
            shown_test, f"{100 * r.test_accuracy:.1f}%", f"{r.bytes_per_param:.2f}", verdict,
        ])
    tasks = {r.task: r for r in runs}
    tol = f"{100 * TOLERANCE:g}%"
    lines = [
        "## Low-memory optimizer state",
        "",
        "Training with the optimizer state kept in less memory, against float32 state: does "
        "training end at the same loss?",
        "",
        *(f"- `{v.name}`: {v.description}." for v in variants if v.description),
        "- Same initial weights (seed 0), same minibatches of 64 in the same order and the same "
        "number of steps for every row of a task, except the reference row; each run is one "
        "`jax.lax.scan` over float32 parameters.",
        "- " + "; ".join(
            f"{t.task}: {t.n_params:,} parameters, {t.steps} steps" for t in tasks.values()
        ) + ".",
        "- Hyperparameters: " + "; ".join(
            f"{name} " + ", ".join(f"{k}={v:g}" for k, v in kw.items())
            for name, _, kw in OPTIMIZERS
            if any(r.optimizer == name for r in runs)
        ) + ".",
        f"- Train loss: the mean minibatch loss over the last {runs[0].window} steps"
        f"{'' if quick else ' (one epoch)'}. Test loss and accuracy: on the "
        f"{len(digits.load().y_test)} held-out images after the last step. "
        "Δ: relative to the fp32 row of the same task and optimizer. State B/param: "
        "`state_nbytes(state)` over the number of parameters (float32 Adam: 8 plus its "
        "scalars).",
        f"- Target: the train loss within {tol} of the float32 state's: the last column gives "
        f"|Δ train loss| ≤ {tol}, then Δ train loss ≤ +{tol} (no more than {tol} worse), "
        "both read off the printed percentage.",
    ]
    if references:
        lines.append(
            f"- Reference row (`{reference}`): float32 state with the minibatches shuffled by "
            "another seed: how far the final loss moves between runs for reasons other than "
            "the state."
        )
    if quick:
        lines += ["", "**Quick smoke run** (a few steps): the numbers check the harness only."]
    header = ["Task", "Optimizer", "State", "Train loss", "Δ train loss", "Test loss",
              "Δ test loss", "Test acc.", "State B/param", f"|Δ| ≤ {tol} / Δ ≤ +{tol}"]
    lines += ["", fmt.table(header, rows), ""]
    summary = (
        f"Target (train loss within {tol} of fp32's): |Δ| ≤ {tol} "
        f"{'MET' if all(verdicts) else 'MISSED'} (in {sum(verdicts)} of {len(verdicts)} runs); "
        f"no more than {tol} worse {'MET' if all(worse_verdicts) else 'MISSED'} "
        f"(in {sum(worse_verdicts)} of {len(worse_verdicts)} runs). Δ train loss "
        + ", ".join(f"{d:+.2f}%" for d in compressed) + "."
    )
    if references:
        summary += (
            f" The reference rows differ from fp32 by {min(references):.2f}% to "
            f"{max(references):.2f}% in train loss."
        )
    lines.append(summary + f" Section run time: {seconds:.0f} s.")
    return "\n".join(lines)


def run(quick: bool) -> str:
    """The Markdown section "Low-memory optimizer state"."""
    t0 = time.perf_counter()
    runs = run_all(quick)
    return render(runs, quick, time.perf_counter() - t0)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.state_quality",
                                     description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a few steps: a smoke run")
    args = parser.parse_args(argv)
    print(run(args.quick))


if __name__ == "__main__":
    main()
