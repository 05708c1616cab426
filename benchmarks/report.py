"""The Markdown report: a list of section functions, each ``Results -> str``. To add a
section, write such a function and put it in ``SECTIONS``."""

from __future__ import annotations

from collections.abc import Callable

from benchmarks import formatting as fmt
from benchmarks.contenders import BASELINE
from benchmarks.eager import BASELINE as EAGER_BASELINE
from benchmarks.eager import COMPILE_EVENT, GRADTX, OP_BY_OP
from benchmarks.optimizers import SEMANTIC_NOTES
from benchmarks.results import EagerResult, Results, ShapeResult, effective_gbps, roofline_pct
from benchmarks.targets import EAGER_RATIO_LIMIT, evaluate

Section = Callable[[Results], str]


def header(r: Results) -> str:
    lines = [
        "# gradtx benchmarks",
        "",
        f"Date: {r.date}",
        "",
        f"Command: `{r.command}`",
    ]
    if r.settings.quick:
        lines += ["", "**Quick smoke run** (tiny shapes): the numbers check the harness only."]
    return "\n".join(lines)


def machine(r: Results) -> str:
    rows = [[k, v] for k, v in r.machine.items()]
    return "## Machine\n\n" + fmt.table(["", ""], rows)


def method(r: Results) -> str:
    s = r.settings
    lines = [
        "## Method",
        "",
        "- A step is the optimizer update plus applying it to the parameters. gradtx and Optax "
        "steps run as `jax.jit(step, donate_argnums=(params, state))`; torch steps are "
        "`opt.step()` under `torch.no_grad()` with the gradients set once on `.grad`. "
        "All arrays are float32.",
        f"- All contenders of one optimizer and shape are timed in one process, interleaved: "
        f"after {s.warmup_steps} warm-up step(s) each, every round runs each contender for "
        f"about {s.round_seconds * 1e3:g} ms of steps (at least one); ms/step is the median "
        f"over {s.rounds} rounds, or fewer (at least 3) where {s.rounds} rounds of all "
        f"contenders would take over {s.budget_seconds:g} s (each table's Rounds line).",
        f"- `other/{BASELINE}` is the other contender's time over gradtx's: above 1 means "
        "gradtx is faster.",
        "- Roofline: an ideal fused fp32 step moves "
        + ", ".join(f"{o} {b} B" for o, b in r.bytes_per_param.items())
        + " per parameter (read params, grads and state; write params and state). GB/s is "
        "those bytes over the step time; % of roofline compares it with the best copy "
        "bandwidth below.",
        f"- Compile time: `lower` + `compile` of the step from scratch (`jax.clear_caches()` "
        f"first, persistent compilation cache off), median of {s.compile_repeats}.",
        "- Memory: from `compiled.memory_analysis()`. Resident = params + grads + state; the "
        "step's peak ≈ arguments + outputs − aliased (donated) + temporaries; extra = peak − "
        "resident.",
    ]
    lines += [f"- {note}" for note in SEMANTIC_NOTES]
    return "\n".join(lines)


def bandwidth(r: Results) -> str:
    bw = r.bandwidth
    rows = [
        [name, f"{gbps:.1f}" + (" (best, used as roofline)" if name == bw.best_method else "")]
        for name, gbps in bw.by_method.items()
    ]
    return (
        f"## Copy bandwidth\n\nBuffer {bw.buffer_bytes / 2**20:.0f} MiB float32; GB/s counts "
        "bytes read + written; per method, the fastest of several calls, measured before and "
        "after the step timings. The in-place method has the access pattern of a donated "
        "optimizer step (on CPUs a copy to a separate buffer also reads the destination "
        "before writing it, which the GB/s does not count). Other load on the machine lowers "
        "this figure, so a step above 100% of roofline means the copy was measured under "
        "load.\n\n"
        + fmt.table(["Method", "GB/s"], rows)
    )


def step_table(r: Results, s: ShapeResult) -> str:
    """One shape's optimizer × contender table."""
    rows = []
    for o in s.optimizers:
        for c in s.contenders:
            t = s.step_seconds.get((o, c))
            if c == BASELINE:
                vs = "baseline" if t is not None else fmt.NA
            else:
                ratio = s.ratio(o, c, BASELINE)
                vs = fmt.NA if ratio is None else f"{c}/{BASELINE} = {fmt.ratio(ratio)}"
            gbps = None if t is None else effective_gbps(r, s.shape, o, t)
            pct = None if t is None else roofline_pct(r, s.shape, o, t)
            rows.append([o, c, fmt.ms(t), vs, fmt.NA if gbps is None else f"{gbps:.1f}",
                         fmt.pct(pct)])
    header = ["Optimizer", "Contender", "ms/step", f"vs {BASELINE}", "GB/s", "% of roofline"]
    rounds = ", ".join(f"{o} {n}" for o, n in s.rounds.items())
    return f"### {s.shape.title}\n\n" + fmt.table(header, rows) + f"\n\nRounds: {rounds}."


def step_times(r: Results) -> str:
    return "## Step time\n\n" + "\n\n".join(step_table(r, s) for s in r.shapes)


def compile_times(r: Results) -> str:
    rows = []
    names: list[str] = []
    for s in r.shapes:
        names += [c for c in s.contenders if any((o, c) in s.compile_seconds for o in
                                                 s.optimizers) and c not in names]
    for s in r.shapes:
        for o in s.optimizers:
            rows.append([s.shape.title, o]
                        + [fmt.seconds(s.compile_seconds.get((o, c))) for c in names])
    return ("## Compile time\n\nSeconds to trace, lower and compile one step from scratch.\n\n"
            + fmt.table(["Shape", "Optimizer"] + [f"{c} (s)" for c in names], rows))


def memory_table(r: Results) -> str:
    rows = []
    for s in r.shapes:
        for o in s.optimizers:
            for c in s.contenders:
                m = s.memory.get((o, c))
                if m is None:
                    continue
                peak = fmt.NA if m.device_peak_delta is None else fmt.mb(m.device_peak_delta)
                rows.append([s.shape.title, o, c, fmt.mb(m.resident), fmt.mb(m.temp),
                             fmt.mb(m.output - m.alias),
                             f"{fmt.mb(m.extra)} ({fmt.pct(100 * m.extra_fraction)})", peak])
    header = ["Shape", "Optimizer", "Contender", "resident MB", "temp MB",
              "unaliased output MB", "extra beyond p+g+s MB (%)", "device peak Δ MB"]
    note = ("\n\nDevice peak Δ: rise of the device's `peak_bytes_in_use` over one step above "
            "the bytes in use before it (GPU only; n/a where the backend keeps no statistics "
            "or an earlier, higher peak hides it).")
    return "## Memory\n\n" + fmt.table(header, rows) + note


def gpu_large(r: Results) -> str:
    head = "## Large single leaf (GPU)\n\n"
    if r.large is None:
        return head + f"Skipped: JAX sees no GPU (platform `{r.platform}`)."
    return head + step_table(r, r.large)


def eager_table(e: EagerResult) -> str:
    """The eager section, from its measurements alone."""
    steps = e.timed_steps
    lines = [
        "## Eager step time",
        "",
        f"Steps called without `jax.jit` around them, on an {e.shape.title} (float32): "
        "build the optimizer, `init`, then each step is `updates, state = opt.update(grads, "
        "state, params)` and `params = apply_updates(params, updates)` (the library's own), "
        "timed until its results are ready.",
        "",
        f"- `{GRADTX}`: gradtx's eager `update`, which for a declared optimizer runs as one "
        f"cached compiled program. `{EAGER_BASELINE}`: Optax's, op by op. `{OP_BY_OP}`: "
        f"gradtx's step under `jax.disable_jit()`, op by op, for information (not part of the "
        "target).",
        "- First call: the first step after `init`, with JAX's in-memory caches cleared just "
        "before it (`jax.clear_caches()`; persistent compilation cache off), so it includes "
        "every compilation the step needs; the compilations it triggered are counted beside it.",
        f"- ms/step: median of {e.steps} steps (steps {steps}) taken after "
        f"{e.warmup_steps} warm-up steps, on a fresh optimizer and state; contenders "
        "interleaved, one step each per round.",
        f"- Compilations: XLA compilations (`{COMPILE_EVENT}` events of "
        "`jax.monitoring`) during those steps.",
        f"- `vs {EAGER_BASELINE}`: the contender's median step time over Optax's (below 1: "
        f"faster than Optax). Target: `{GRADTX}` ≤ {EAGER_RATIO_LIMIT:g}× for every optimizer, "
        f"and no compilation in steps {steps} in either gradtx row.",
    ]
    rows = []
    for o in e.optimizers:
        for c in e.contenders:
            row = e.rows.get((o, c))
            if row is None:
                rows.append([o, c] + [fmt.NA] * 5)
                continue
            ratio = e.ratio(o, c, EAGER_BASELINE)
            if c == EAGER_BASELINE:
                vs = "baseline"
            else:
                vs = fmt.NA if ratio is None else f"{c}/{EAGER_BASELINE} = {fmt.ratio(ratio)}"
            rows.append([o, c, fmt.seconds(row.first_seconds), str(row.first_compiles),
                         fmt.ms(row.step_seconds), str(row.compiles), vs])
    header = ["Optimizer", "Contender", "first call (s)", "compilations in first call",
              "ms/step", f"compilations in steps {steps}", f"vs {EAGER_BASELINE}"]
    return "\n".join(lines) + "\n\n" + fmt.table(header, rows)


def eager_steps(r: Results) -> str:
    return "" if r.eager is None else eager_table(r.eager)


def targets(r: Results) -> str:
    rows = [list(row) for row in evaluate(r)]
    return "## Targets\n\n" + fmt.table(["Target", "Shape", "Measured", "Verdict"], rows)


# Bytes per fp32 parameter that XLA's kernels move for one step. XLA on CPU fuses elementwise
# work into kernels with one output each, so every state array is written by its own kernel
# and the parameter update reads the new state back: Adam reads g, m (writes m), g, v
# (writes v), then p, m, v (writes p).
XLA_BYTES_PER_PARAM = {"Adam": 40, "AdamW": 40, "SGD-momentum": 24, "RMSProp": 28}


def why_missed(r: Results) -> str:
    """Why the missed targets are missed: the structural reasons, with the numbers they imply
    for this run."""
    verdicts = {(row.target, row.scope): row.verdict for row in evaluate(r)}
    missed = {target for (target, _), verdict in verdicts.items() if verdict == "MISSED"}
    if not missed:
        return ""
    lines = ["## Why targets are missed", ""]
    if any(t.startswith(f"{BASELINE} ≥ torch fused") for t in missed):
        best = r.bandwidth.best
        parts = []
        for s in r.shapes:
            n = s.shape.n_params
            floor_ms = 1e3 * XLA_BYTES_PER_PARAM["Adam"] * n / (best * 1e9)
            fused = s.step_seconds.get(("Adam", "torch fused"))
            if fused is not None:
                parts.append(f"{s.shape.title}: {floor_ms:.3g} ms floor vs torch fused "
                             f"{1e3 * fused:.4g} ms")
        lines += [
            "- **torch fused Adam on CPU.** torch's fused kernel reads p, g, m, v and writes p, "
            "m, v in one pass (28 B per parameter). XLA on CPU emits one kernel per output, so "
            "any jitted JAX Adam (gradtx's or Optax's) moves "
            f"{XLA_BYTES_PER_PARAM['Adam']} B per parameter. At the best copy bandwidth measured "
            "here that alone sets a floor on the step: " + "; ".join(parts) + ". Beyond that "
            "floor, the rest of each step is XLA's elementwise code (square root and divide "
            "per element) and, on many small leaves, a fixed cost per kernel (three kernels "
            "per leaf).",
        ]
    if any(t.startswith(f"{BASELINE} ≥ optax") for t in missed):
        lines += [
            "- **Optax.** gradtx's and Optax's jitted steps compile to the same kernels per leaf "
            "with the same array traffic (the same fusions over the same arrays in the compiled "
            "HLO); gradtx's kernels also read its live hyperparameters as runtime scalars where "
            "Optax's have constants (what lets `set_hyperparam` change them without "
            "recompiling). The ratios near 1 in the tables above move by several percent "
            "between runs on a shared VM; compare them with the spread of repeated runs before "
            "reading a winner into them.",
        ]
    if any(t.startswith(f"{BASELINE} compile") for t in missed):
        lines += [
            "- **Compile time.** XLA compiles about three small kernels per leaf (one per "
            "moment, one for the update) and reuses a kernel only between leaves of the same "
            "shape, so compile time grows with the number of leaves; Optax's compile time on "
            "the same tree is in the table above. Grouping leaves into flat buffers would cut "
            "the kernel count, but on CPU the concatenation and slicing it needs cost more per "
            "step than they save (measured while designing the fast path: about 3.5x slower "
            "on 500 leaves).",
        ]
    return "\n".join(lines)


def extras(r: Results) -> str:
    return "\n\n".join(r.extra_sections)


SECTIONS: list[Section] = [
    header, machine, method, bandwidth, step_times, compile_times, memory_table, gpu_large,
    eager_steps, targets, why_missed, extras,
]


def render(r: Results, sections: list[Section] = SECTIONS) -> str:
    """The report: the non-empty sections, separated by blank lines."""
    parts = [section(r) for section in sections]
    return "\n\n".join(p for p in parts if p) + "\n"
