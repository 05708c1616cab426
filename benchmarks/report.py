"""The Markdown report: a list of section functions, each ``Results -> str``. To add a
section, write such a function and put it in ``SECTIONS``."""

from __future__ import annotations

from collections.abc import Callable

from benchmarks import ffi_adam
from benchmarks import formatting as fmt
from benchmarks.contenders import (
    BASELINE,
    FFI_FUSED,
    MULTI_TENSOR,
    OPTAX,
    OPTAX_FLATTEN,
    PACKED,
    TORCH_FUSED,
)
from benchmarks.eager import BASELINE as EAGER_BASELINE
from benchmarks.eager import COMPILE_EVENT, GRADTX, OP_BY_OP
from benchmarks.optimizers import SEMANTIC_NOTES
from benchmarks.results import EagerResult, Results, ShapeResult, effective_gbps, roofline_pct
from benchmarks.targets import (
    EAGER_RATIO_LIMIT,
    FFI_PATHS,
    MISSED,
    MULTI_COMPILE_LIMIT_S,
    MULTI_PATHS,
    TORCH_FUSED_FRACTION,
    evaluate,
    multi_tensor_rows,
)

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


def _compile_trees(r: Results) -> str:
    """The Method's sentence on the compile-time trees (those run with some optimizers only)."""
    trees = [t for t in r.shapes if t.shape.optimizers is not None]
    if not trees:
        return ""
    if all(a is b for a, b in zip(r.shapes[-len(trees):], trees, strict=True)):
        count = {1: "", 2: " two", 3: " three"}.get(len(trees), f" {len(trees)}")
        names = f"the last{count}"
    else:
        names = " and ".join(f"the {t.shape.title}" for t in trees)
    return (f"In {names} every leaf shape is distinct, so no compiled kernel can be shared "
            "between leaves (the compile-time trees: at full size a per-leaf step takes tens of "
            "seconds to compile there); only " + ", ".join(trees[0].optimizers)
            + " is run on them.")


def method(r: Results) -> str:
    s = r.settings
    lines = [
        "## Method",
        "",
        "- A step is the optimizer update plus applying it to the parameters. gradtx and Optax "
        "steps run as `jax.jit(step, donate_argnums=(params, state))`; torch steps are "
        "`opt.step()` under `torch.no_grad()` with the gradients set once on `.grad`. "
        "All arrays are float32.",
        f"- Contenders: `{BASELINE}` and `{OPTAX}` step leaf by leaf; `{MULTI_TENSOR}` is "
        f"`gx.multi_tensor(opt)` and `{OPTAX_FLATTEN}` is `optax.flatten(opt)`: the same "
        "optimizer run on one concatenated buffer per dtype (the gradients are packed into it, "
        f"the update is split back into the leaves). `{PACKED}` keeps the parameters packed "
        "for the whole run (`buffers, unpack = gx.pack_leaves(params)`; the model reads "
        "`unpack(buffers)`, so its gradients arrive packed) and steps the optimizer on the "
        f"buffers. `{FFI_FUSED}` is Adam as a C++ custom call per leaf through `jax.ffi` "
        "(benchmarks/fused_adam.cc: one pass that reads p, g, m, v and writes p, m, v in "
        "place, built with the system's g++ -O3 -march=native), and its packed twin one call "
        "on the packed buffers: measured alternatives to XLA's kernels, not part of gradtx. "
        "torch foreach and fused are torch's multi-tensor paths.",
        "- Trees: " + "; ".join(t.shape.title for t in r.shapes) + ". "
        + _compile_trees(r),
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
        "- Compile time: `lower` + `compile` of the step from scratch (`jax.clear_caches()` "
        "first, persistent compilation cache off)" + (
            f", median of {s.compile_repeats}, the contenders interleaved; a contender whose "
            f"first compilation takes over {s.single_compile_seconds:g} s is compiled once for "
            f"that tree and optimizer, not {s.compile_repeats} times (the per-leaf steps on the "
            "compile-time trees: a repeat's spread is small against tens of seconds). The "
            "compile table marks those with ¹." if s.compile_repeats > 1 else ", once."),
        "- Kernels and bytes moved: read off the compiled step's optimized HLO "
        "(`benchmarks/hlo.py`). Kernels are the entry computation's fusions and unfused "
        "operations; a kernel moves the operands it reads plus the outputs it writes, an "
        "elementwise loop fusion reading at most as many elements of an operand as it writes "
        "(XLA's `cost_analysis()` counts a whole buffer for a fusion that reads a slice of it).",
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
    once = False
    for s in r.shapes:
        for o in s.optimizers:
            base = s.compile_seconds.get((o, BASELINE))
            cells = []
            for c in names:
                t = s.compile_seconds.get((o, c))
                cell = fmt.seconds(t)
                if t is not None and s.compile_counts.get((o, c), 1) == 1 \
                        and r.settings.compile_repeats > 1:
                    cell += "¹"
                    once = True
                if t is not None and base and c != BASELINE:
                    cell += f" ({fmt.ratio(t / base)})"
                cells.append(cell)
            rows.append([s.shape.title, o] + cells)
    note = (f"\n\n¹ Compiled once (its first compilation took over "
            f"{r.settings.single_compile_seconds:g} s); the others are medians of "
            f"{r.settings.compile_repeats}." if once else "")
    return ("## Compile time\n\nSeconds to trace, lower and compile one step from scratch; in "
            f"brackets, over `{BASELINE}`'s (below 1: compiles faster than the per-leaf step)."
            "\n\n" + fmt.table(["Shape", "Optimizer"] + [f"{c} (s)" for c in names], rows)
            + note)


SIDE_BY_SIDE_OPTIMIZER = "Adam"


def _bytes_per_param(s: ShapeResult, o: str, c: str) -> float | None:
    stats = s.kernels.get((o, c))
    return None if stats is None else stats.bytes_per_param(s.shape.n_params)


def side_by_side(r: Results) -> str:
    """Per-leaf and multi-tensor steps of Adam on every tree, with their compiled kernels."""
    o = SIDE_BY_SIDE_OPTIMIZER
    rows = []
    for s in r.shapes:
        if o not in s.optimizers:
            continue
        for c in s.contenders:
            t = s.step_seconds.get((o, c))
            fused = s.step_seconds.get((o, TORCH_FUSED))
            jax_contender = (o, c) in s.compile_seconds
            if not jax_contender and c != TORCH_FUSED:
                continue
            stats = s.kernels.get((o, c))
            bpp = _bytes_per_param(s, o, c)
            if c == TORCH_FUSED:
                kernels, moved = fmt.NA, f"{r.bytes_per_param[o]} (one pass)"
            else:
                kernels = fmt.NA if stats is None else str(stats.kernels)
                moved = fmt.NA if bpp is None else f"{bpp:.1f}"
            vs_base = s.ratio(o, c, BASELINE)
            vs_fused = None if t is None or fused is None else fused / t
            faulted = s.faulted_bytes.get((o, c))
            rows.append([s.shape.title, c, fmt.seconds(s.compile_seconds.get((o, c))),
                         kernels, moved, fmt.mb(faulted), fmt.ms(t),
                         "baseline" if c == BASELINE else fmt.ratio(vs_base),
                         fmt.ratio(vs_fused)])
    header = ["Shape", "Contender", "compile (s)", "kernels", "B/param moved",
              "MB faulted / step", "ms/step", f"time / {BASELINE}'s", f"speed vs {TORCH_FUSED}"]
    return (
        "## Per-leaf vs multi-tensor\n\n"
        f"{o} on every tree: each JAX contender leaf by leaf and on one buffer, beside torch "
        "fused. Kernels and B/param moved: from the compiled step's HLO (Method); torch "
        f"fused's kernel reads p, g, m, v and writes p, m, v once ({r.bytes_per_param[o]} B). "
        "MB faulted / step: host memory first touched during a step (minor page faults × page "
        "size, averaged over 3 steps after an untimed one): temporaries mapped afresh each "
        "step; n/a where the platform counts no faults. "
        f"`time / {BASELINE}'s` below 1 is faster than gradtx's per-leaf step; `speed vs "
        f"{TORCH_FUSED}` is torch fused's step time over the contender's (1 = as fast, 0.5 = "
        "half its speed).\n\n" + fmt.table(header, rows)
    )


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
        f"- `{MULTI_TENSOR}` and `{OPTAX_FLATTEN}` are not in this table: they exist to shorten "
        "the compiled step (fewer kernels to compile); called eagerly, their packing into a "
        "buffer and splitting back into leaves run as one dispatched operation per leaf around "
        "the inner step, so a row would time that dispatch, not the optimizer.",
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


def _sub_items(parts: list[str]) -> str:
    """Nested list items, one per tree, under a ``- **...**`` item."""
    return "".join(f"\n  - {part}." for part in parts)


def _shape_named(r: Results, title: str) -> ShapeResult:
    return next(s for s in r.shapes if s.shape.title == title)


def _kernels(s: ShapeResult, o: str, c: str) -> str:
    """E.g. ``56.0 B/param in 508 kernels``, from the compiled step's HLO."""
    stats = s.kernels.get((o, c))
    if stats is None:
        return "no HLO analysis"
    return f"{stats.bytes_per_param(s.shape.n_params):.1f} B/param in {stats.kernels} kernels"


def _shared_shapes_compile(r: Results) -> str:
    """Compile time per kernel of the per-leaf and multi-tensor Adam steps on the trees whose
    leaves share shapes."""
    o, parts = SIDE_BY_SIDE_OPTIMIZER, []
    for s in r.shapes:
        if s.shape.optimizers is not None or s.shape.n_leaves == 1:
            continue
        stats = {c: s.kernels.get((o, c)) for c in (BASELINE, MULTI_TENSOR)}
        times = {c: s.compile_seconds.get((o, c)) for c in (BASELINE, MULTI_TENSOR)}
        if None in stats.values() or None in times.values():
            continue
        each = {c: 1e3 * times[c] / stats[c].kernels for c in stats}
        parts.append(
            f"{s.shape.title}, {o}: per leaf {fmt.seconds(times[BASELINE])} s for "
            f"{stats[BASELINE].kernels} kernels ({each[BASELINE]:.1f} ms each), multi-tensor "
            f"{fmt.seconds(times[MULTI_TENSOR])} s for {stats[MULTI_TENSOR].kernels} kernels "
            f"({each[MULTI_TENSOR]:.1f} ms each)")
    return ("Measured:" + _sub_items(parts)) if parts else ""


def _multi_compile_missed(r: Results, titles: list[str], contender: str) -> list[str]:
    o = SIDE_BY_SIDE_OPTIMIZER
    parts = []
    for title in titles:
        s = _shape_named(r, title)
        mt, base = s.kernels.get((o, contender)), s.kernels.get((o, BASELINE))
        t_mt = s.compile_seconds.get((o, contender))
        t_base = s.compile_seconds.get((o, BASELINE))
        t_flat = s.compile_seconds.get((o, OPTAX_FLATTEN))
        flat = s.kernels.get((o, OPTAX_FLATTEN))
        if mt is None or base is None or t_mt is None or t_base is None:
            continue
        n = s.shape.n_params
        parts.append(
            f"{title}: {fmt.seconds(t_mt)} s for {mt.kernels} kernels "
            f"({mt.summary(n)}), against the per-leaf step's {fmt.seconds(t_base)} s for "
            f"{base.kernels} kernels ({1e3 * t_mt / mt.kernels:.0f} ms of compile time per "
            f"kernel against {1e3 * t_base / base.kernels:.0f} ms); "
            f"`{OPTAX_FLATTEN}` {fmt.seconds(t_flat)} s for "
            + (f"{flat.kernels} kernels" if flat is not None else "n/a")
        )
    if contender != MULTI_TENSOR:
        # Packed and C++ steps have no per-leaf kernels to blame: give the measurements only.
        return [
            f"- **{contender} compile time.** Over {MULTI_COMPILE_LIMIT_S:g} s on these trees, "
            "against the per-leaf step and `optax.flatten`:" + _sub_items(parts),
        ]
    return [
        "- **Multi-tensor compile time.** The optimizer's arithmetic runs on the buffer in a "
        "few kernels, but the step still ends leaf by leaf: the update is split back into the "
        "leaves and `apply_updates` adds each piece to its parameter, which XLA fuses into one "
        "kernel per leaf, of that leaf's own shape (XLA does not merge loops over outputs of "
        "different shapes into one kernel, so separate parameter arrays of distinct shapes "
        "take a kernel each however the optimizer runs). Compile time follows the kernel "
        "count (compare the milliseconds per kernel below): the multi-tensor step has fewer "
        "kernels than the per-leaf one, but its leaf-shaped kernels alone keep it over "
        f"{MULTI_COMPILE_LIMIT_S:g} s. `optax.flatten` has the same structure (concatenate, "
        "step, slice back). Only parameters that themselves live in the buffer between steps "
        f"(the leaves being views of it, `{PACKED}`) remove the per-leaf kernels."
        + _sub_items(parts),
    ]


def _floor_ms(r: Results, s: ShapeResult, o: str, c: str) -> str:
    """The step's bytes (from its HLO) at the best copy bandwidth, in ms."""
    stats = s.kernels.get((o, c))
    if stats is None:
        return "n/a"
    return f"{1e3 * stats.bytes_moved / (r.bandwidth.best * 1e9):.3g}"


def _step_evidence(r: Results, s: ShapeResult, o: str, c: str) -> str:
    """E.g. ``56.0 B/param in 508 kernels (...), floor 37.4 ms, 106.85 MB faulted per step,
    measured 106.9 ms``."""
    stats = s.kernels.get((o, c))
    summary = "" if stats is None else f" ({stats.summary(s.shape.n_params)})"
    faulted = s.faulted_bytes.get((o, c))
    faults = "" if faulted is None else f", {fmt.mb(faulted)} MB faulted per step"
    return (f"{_kernels(s, o, c)}{summary}, a {_floor_ms(r, s, o, c)} ms floor{faults}, "
            f"measured {fmt.ms(s.step_seconds.get((o, c)))} ms")


def _multi_vs_optax_missed(r: Results, titles: list[str], contender: str) -> list[str]:
    parts, same = [], []
    for title in titles:
        s = _shape_named(r, title)
        ratios = {o: s.ratio(o, OPTAX, contender) for o in s.optimizers}
        ratios = {o: v for o, v in ratios.items() if v is not None}
        if not ratios:
            continue
        o = min(ratios, key=ratios.get)
        mt, ox = s.kernels.get((o, contender)), s.kernels.get((o, OPTAX))
        if mt is not None and ox is not None and \
                abs(mt.bytes_moved - ox.bytes_moved) <= 0.01 * ox.bytes_moved:
            same.append(f"{title} ({o}: {OPTAX}/{contender} = {fmt.ratio(ratios[o])}; "
                        f"{contender} {_kernels(s, o, contender)}, Optax "
                        f"{_kernels(s, o, OPTAX)})")
            continue
        parts.append(f"{title}, {o}: {OPTAX}/{contender} = {fmt.ratio(ratios[o])}; "
                     f"{contender} {_step_evidence(r, s, o, contender)}; Optax "
                     f"{_step_evidence(r, s, o, OPTAX)}")
    lines = []
    if parts and contender != MULTI_TENSOR:
        lines.append(f"- **{contender} against Optax's per-leaf step.** Measured: "
                     + _sub_items(parts))
    elif parts:
        lines.append(
            f"- **{MULTI_TENSOR} against Optax's per-leaf step.** The multi-tensor step moves more "
            "bytes than the per-leaf one: it copies the gradients into the buffer (a "
            "`concatenate`, 8 B/param: read and write; AdamW, whose weight decay reads the "
            "parameters, packs them too, 8 B/param more), and writes the update into a buffer "
            "that the per-leaf adds read back (8 B/param), where the per-leaf step computes the "
            "update inside the parameter's own kernel. It also needs that buffer as a "
            "temporary the size of the packed leaves (temp MB in the Memory table), allocated "
            "for each step; where it is large it is mapped afresh every step and page-faults "
            "on first touch (MB faulted per step), while the per-leaf step works in place on "
            "its donated buffers. Floors below: the step's bytes at the best copy bandwidth "
            f"({r.bandwidth.best:.1f} GB/s); what the measured time adds to its floor is those "
            "faults and the per-kernel cost of the packing and of one small kernel per leaf, "
            "which this harness does not break down further." + _sub_items(parts)
        )
    if same:
        lines.append(
            f"- **{contender} against Optax, same bytes.** On "
            + "; ".join(same) + ", the two compiled steps move the same bytes: a tree with "
            "one leaf per dtype needs no packing, so the step is gradtx's per-leaf "
            "step unchanged. The gap is gradtx's per-leaf step against Optax's (the "
            "`optax/gradtx` ratios of the step tables): runtime hyperparameters against "
            "constants, and the run-to-run spread of a shared machine."
        )
    return lines


def _multi_vs_torch_missed(r: Results, titles: list[str], contender: str) -> list[str]:
    parts = []
    for title in titles:
        s = _shape_named(r, title)
        fused = s.step_seconds.get(("Adam", TORCH_FUSED))
        t = s.step_seconds.get(("Adam", contender))
        if fused is None or t is None:
            continue
        parts.append(f"{title}: {_step_evidence(r, s, 'Adam', contender)}, against torch "
                     f"fused {fmt.ms(fused)} ms ({fmt.ratio(fused / t)} its speed)")
    if contender in FFI_PATHS:
        return [_ffi_vs_torch(r, titles, contender, parts)]
    packing = ("" if contender != MULTI_TENSOR else
               ", and on a tree of several leaves adds the packing of the gradients, the "
               "update's round trip through a buffer and that buffer's page faults")
    return [
        f"- **{contender} against torch fused Adam.** torch's fused kernel reads p, g, m, v "
        f"and writes p, m, v once ({r.bytes_per_param['Adam']} B per parameter). XLA on this "
        "backend writes each array from its own kernel (m, v, the update, then each "
        "parameter: the kernel groups listed), so the step reads the gradients, the moments "
        f"and the update more than once{packing}. At the best copy bandwidth measured here "
        f"({r.bandwidth.best:.1f} GB/s) its "
        "bytes alone set a floor on the step. One buffer cuts the kernel count, not the "
        f"bytes: reaching {TORCH_FUSED_FRACTION:g}× torch fused needs one kernel that writes "
        "p, m and v in the same pass, which XLA did not emit here (the jax.ffi rows show such "
        "a kernel)." + _sub_items(parts),
    ]


def _ffi_vs_torch(r: Results, titles: list[str], contender: str, parts: list[str]) -> str:
    """Why a jax.ffi kernel that moves torch fused's bytes is still slower than it."""
    per_call = []
    for title in titles:
        s = _shape_named(r, title)
        leaf, packed = (s.step_seconds.get(("Adam", c)) for c in FFI_PATHS)
        if contender == FFI_FUSED and leaf is not None and packed is not None \
                and s.shape.n_leaves > 1:
            per_call.append(f"{title}: {1e6 * (leaf - packed) / s.shape.n_leaves:.1f} µs per "
                            "leaf more than one call on the packed buffers")
    calls = ("" if not per_call else
             " Each leaf is a custom call of its own with a fixed cost on XLA:CPU ("
             + "; ".join(per_call) + ").")
    return (
        f"- **{contender} against torch fused Adam.** The C++ kernel reads p, g, m, v and "
        f"writes p, m, v once, as torch's does ({r.bytes_per_param['Adam']} B per "
        f"parameter), so the gap is not bytes: leaves under {ffi_adam.PARALLEL_MIN_SIZE:,} "
        "elements run on the calling thread (where torch's fused step still splits its work "
        "over its intra-op threads), and calls are made one after another." + calls
        + _sub_items(parts)
    )


def why_missed(r: Results) -> str:
    """Why the missed targets are missed: the structural reasons, with the numbers they imply
    for this run."""
    rows = evaluate(r)
    missed = {row.target for row in rows if row.verdict == MISSED}
    if not missed:
        return ""
    multi = {row.target: [] for row in multi_tensor_rows(r)}
    for row in rows:
        if row.target in multi and row.verdict == MISSED:
            multi[row.target].append(row.scope)
    lines = ["## Why targets are missed", ""]
    if any(t.startswith(f"{BASELINE} ≥ torch fused") for t in missed):
        best = r.bandwidth.best
        parts = []
        for s in r.shapes:
            n = s.shape.n_params
            measured = _bytes_per_param(s, "Adam", BASELINE)
            bpp = XLA_BYTES_PER_PARAM["Adam"] if measured is None else measured
            floor_ms = 1e3 * bpp * n / (best * 1e9)
            fused = s.step_seconds.get(("Adam", TORCH_FUSED))
            if fused is not None:
                parts.append(f"{s.shape.title}: {floor_ms:.3g} ms floor vs torch fused "
                             f"{1e3 * fused:.4g} ms")
        lines += [
            "- **torch fused Adam on CPU.** torch's fused kernel reads p, g, m, v and writes p, "
            "m, v in one pass (28 B per parameter). XLA on CPU emits one kernel per output, so "
            "any jitted JAX Adam (gradtx's or Optax's) moves "
            f"{XLA_BYTES_PER_PARAM['Adam']} B per parameter (the B/param moved of the "
            "per-leaf rows in Per-leaf vs multi-tensor). At the best copy bandwidth measured "
            "here that alone sets a floor on the step: " + "; ".join(parts) + ". Beyond that "
            "floor, the rest of each step is XLA's elementwise code (square root and divide "
            "per element) and, on many small leaves, a fixed cost per kernel (three kernels "
            "per leaf).",
        ]
    if any(t.startswith(f"{BASELINE} ≥ optax") for t in missed):
        lines += [
            "- **Optax.** gradtx's and Optax's jitted steps compile to the same kernels per leaf "
            "with the same array traffic (the same fusions over the same arrays in the compiled "
            "HLO: see kernels and B/param moved in Per-leaf vs multi-tensor); gradtx's kernels "
            "also read its live hyperparameters as runtime scalars where Optax's have constants "
            "(what lets `set_hyperparam` change them without recompiling). The ratios near 1 in "
            "the tables above move by several percent between runs on a shared VM; compare "
            "them with the spread of repeated runs before reading a winner into them.",
        ]
    if any(t.startswith(f"{BASELINE} compile") for t in missed):
        lines += [
            "- **Compile time.** XLA compiles about three small kernels per leaf (one per "
            "moment, one for the update) and reuses a kernel only between leaves of the same "
            "shape, so compile time grows with the number of leaves; Optax's compile time on "
            "the same tree is in the table above. Grouping the leaves into one buffer "
            f"(`{MULTI_TENSOR}`) cuts the kernel count to a few plus one per leaf, but does not "
            "help on a tree whose leaves share shapes: its per-leaf kernels each slice the "
            "buffer at their own offset, so no two are the same kernel, where the per-leaf "
            "step's kernels of equal shapes are compiled once. "
            + _shared_shapes_compile(r),
        ]
    for target, titles in multi.items():
        if not titles:
            continue
        contender = next(c for c in (*MULTI_PATHS, *FFI_PATHS) if target.startswith(f"{c} "))
        if target.startswith(f"{contender} compile"):
            lines += _multi_compile_missed(r, titles, contender)
        elif target.startswith(f"{contender} ≥ optax"):
            lines += _multi_vs_optax_missed(r, titles, contender)
        else:
            lines += _multi_vs_torch_missed(r, titles, contender)
    return "\n".join(lines)


def extras(r: Results) -> str:
    return "\n\n".join(r.extra_sections)


SECTIONS: list[Section] = [
    header, machine, method, bandwidth, step_times, compile_times, side_by_side, memory_table,
    gpu_large,
    eager_steps, targets, why_missed, extras,
]


def render(r: Results, sections: list[Section] = SECTIONS) -> str:
    """The report: the non-empty sections, separated by blank lines."""
    parts = [section(r) for section in sections]
    return "\n\n".join(p for p in parts if p) + "\n"
