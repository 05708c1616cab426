"""The benchmark harness (``python -m benchmarks``): a quick run writes every section and
row, and its target verdicts agree with its own tables."""

from __future__ import annotations

import re
import sys
import types

import numpy as np
import pytest

from benchmarks import __main__ as cli
from benchmarks import eager, hlo, shapes, suite, targets
from benchmarks.contenders import (
    BASELINE,
    CONTENDERS,
    FFI_FUSED,
    FFI_PACKED,
    MULTI_TENSOR,
    OPTAX_FLATTEN,
    PACKED,
    is_jax,
)
from benchmarks.optimizers import OPTIMIZERS
from benchmarks.results import ShapeResult
from benchmarks.settings import make_settings

# Every test here shares one expensive module fixture: one worker runs them all, so that
# it is built once (otherwise each xdist worker that gets one of them builds its own).
pytestmark = pytest.mark.xdist_group("benchmarks")

SECTIONS = ["# gradtx benchmarks", "## Machine", "## Method", "## Copy bandwidth", "## Step time",
            "## Compile time", "## Per-leaf vs multi-tensor", "## Memory",
            "## Large single leaf (GPU)", "## Eager step time", "## Targets"]
QUICK_SHAPES = shapes.benchmark_shapes(quick=True)
JAX_CONTENDERS = [c.name for c in CONTENDERS if is_jax(c)]


def optimizers_of(shape: shapes.Shape) -> list[str]:
    return list(shape.optimizers or OPTIMIZERS)


def has(contender: str, optimizer: str) -> bool:
    """Whether the contender has a version of the optimizer (else its cells read n/a)."""
    c = next(c for c in CONTENDERS if c.name == contender)
    return c.factory(OPTIMIZERS[optimizer]) is not None


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """A quick run: (report path, saved results path). Optional sections
    (``benchmarks.state_quality``) are left out: they have their own tests, and
    ``test_optional_sections`` covers how they are included."""
    folder = tmp_path_factory.mktemp("bench")
    out, saved = folder / "quick.md", folder / "quick.pkl"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cli, "OPTIONAL_SECTIONS", ())
        assert cli.main(["--quick", "--out", str(out), "--save-results", str(saved)]) == str(out)
    return out, saved


@pytest.fixture(scope="module")
def report(quick_run) -> str:
    return quick_run[0].read_text()


def test_a_saved_run_renders_the_same_report(quick_run, tmp_path):
    out, saved = quick_run
    again = tmp_path / "again.md"
    assert cli.main(["--render", str(saved), "--out", str(again)]) == str(again)
    assert again.read_text() == out.read_text()


def section(report: str, heading: str) -> str:
    """The text of one ``## `` section."""
    start = report.index(heading + "\n")
    end = report.find("\n## ", start + len(heading))
    return report[start:] if end < 0 else report[start:end]


def table_rows(text: str) -> list[list[str]]:
    """The body rows of the Markdown tables in ``text``."""
    rows = []
    for line in text.splitlines():
        if line.startswith("| ") and not line.startswith("|---"):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def step_tables(report: str) -> dict[str, dict[tuple[str, str], list[str]]]:
    """Shape title -> (optimizer, contender) -> the row's remaining cells."""
    tables = {}
    for block in section(report, "## Step time").split("\n### ")[1:]:
        title, _, body = block.partition("\n")
        rows = table_rows(body)[1:]  # drop the header row
        tables[title] = {(r[0], r[1]): r[2:] for r in rows}
    return tables


def ratio_of(cell: str) -> float:
    match = re.fullmatch(r".+/gradtx = (\d+\.\d\d)×", cell)
    assert match, cell
    return float(match.group(1))


def compile_table(report: str) -> dict[tuple[str, str], dict[str, float | None]]:
    """(shape, optimizer) -> contender -> compile seconds, ``None`` for n/a (the ratio in
    brackets checked against the seconds)."""
    rows = table_rows(section(report, "## Compile time"))
    header = [h.removesuffix(" (s)") for h in rows[0][2:]]
    table = {}
    for shape, optimizer, *cells in rows[1:]:
        seconds = {}
        for name, cell in zip(header, cells, strict=True):
            if cell == "n/a":
                seconds[name] = None
                continue
            match = re.fullmatch(r"(\d+\.\d{3})¹?(?: \((\d+\.\d\d)×\))?", cell)
            assert match, cell
            seconds[name] = float(match.group(1))
            if name == BASELINE:
                assert match.group(2) is None, cell
            else:
                base = seconds[BASELINE]
                assert match.group(2) is not None, cell
                assert abs(float(match.group(2)) - seconds[name] / base) <= 0.01 + 1e-3 / base
        table[(shape, optimizer)] = seconds
    return table


def assert_ratio_matches(ratio: float, ms: str, base_ms: str) -> None:
    """A printed ratio is the two printed times' quotient, up to their rounding (4 significant
    digits each, 2 decimals for the ratio); a ratio that prints as 0.00 is a real reading."""
    expected = float(ms) / float(base_ms)
    assert abs(ratio - expected) <= 0.005 + 2e-3 * expected, (ratio, ms, base_ms)


def eager_table(report: str) -> dict[tuple[str, str], list[str]]:
    """(optimizer, contender) -> the eager table row's remaining cells."""
    rows = table_rows(section(report, "## Eager step time"))[1:]
    return {(r[0], r[1]): r[2:] for r in rows}


def eager_ratio_of(cell: str, contender: str) -> float:
    match = re.fullmatch(re.escape(contender) + r"/optax = (\d+\.\d\d)×", cell)
    assert match, cell
    return float(match.group(1))


def test_report_has_every_section(report):
    positions = [report.index(heading + "\n") for heading in SECTIONS]
    assert positions == sorted(positions)
    assert "Command: `python -m benchmarks --quick --out " in report
    machine = dict((r[0], r[1]) for r in table_rows(section(report, "## Machine")))
    for label in ("CPU", "CPU cores", "RAM", "OS", "Python", "jax / jaxlib", "optax", "torch",
                  "JAX backend", "JAX devices", "torch threads"):
        assert machine.get(label), label
    bandwidth = table_rows(section(report, "## Copy bandwidth"))[1:]
    assert {r[0] for r in bandwidth} >= {"numpy.copyto", "jax jit copy into donated buffer"}
    assert all(float(r[1].split()[0]) > 0 for r in bandwidth)
    assert sum("(best, used as roofline)" in r[1] for r in bandwidth) == 1


def test_every_optimizer_and_contender_has_a_time(report):
    tables = step_tables(report)
    assert list(tables) == [s.title for s in QUICK_SHAPES]
    assert [s.key for s in QUICK_SHAPES] == ["single", "many", "transformer", "distinct",
                                             "distinct-2d"]
    assert {MULTI_TENSOR, OPTAX_FLATTEN} <= set(JAX_CONTENDERS)
    for shape in QUICK_SHAPES:
        rows = tables[shape.title]
        expected = {(o, c.name) for o in optimizers_of(shape) for c in CONTENDERS}
        assert set(rows) == expected
        for (o, c), (ms, vs, gbps, pct) in rows.items():
            if not has(c, o):
                assert [ms, vs, gbps, pct] == ["n/a"] * 4
                continue
            assert float(ms) > 0 and float(gbps) >= 0 and pct.endswith("%")
            if c == BASELINE:
                assert vs == "baseline"
            else:
                assert vs.startswith(f"{c}/gradtx = ")
                assert_ratio_matches(ratio_of(vs), ms, rows[(o, BASELINE)][0])
    # Only torch fused (where torch has no fused class) and the jax.ffi kernels (Adam only)
    # have gaps.
    gaps = {c.name for c in CONTENDERS for o in OPTIMIZERS if not has(c.name, o)}
    assert {FFI_FUSED, FFI_PACKED} <= gaps <= {"torch fused", FFI_FUSED, FFI_PACKED}
    assert all(has(c.name, "Adam") for c in CONTENDERS)
    compiles = compile_table(report)
    assert list(compiles) == [(s.title, o) for s in QUICK_SHAPES for o in optimizers_of(s)]
    for (_, o), seconds in compiles.items():
        assert list(seconds) == JAX_CONTENDERS
        assert all((t is not None) == has(c, o) for c, t in seconds.items())
        assert all(t > 0 for t in seconds.values() if t is not None)
    memory_rows = table_rows(section(report, "## Memory"))[1:]
    assert [(r[0], r[1], r[2]) for r in memory_rows] == [
        (s.title, o, c) for s in QUICK_SHAPES for o in optimizers_of(s) for c in JAX_CONTENDERS
        if has(c, o)]
    assert all(float(r[3]) > 0 for r in memory_rows)


def test_compile_trees_have_distinct_leaf_shapes():
    for quick in (True, False):
        trees = {s.key: s for s in shapes.benchmark_shapes(quick)}
        for key in ("distinct", "distinct-2d"):
            leaves = list(trees[key].leaves.values())
            assert len(set(leaves)) == len(leaves), (quick, key)
            assert {len(dims) for dims in leaves} == {1 if key == "distinct" else 2}
            assert trees[key].optimizers == shapes.COMPILE_TREE_OPTIMIZERS
    full = {s.key: s for s in shapes.benchmark_shapes(quick=False)}
    assert full["distinct"].n_leaves == 500 and full["distinct-2d"].n_leaves == 200
    assert 4_500_000 <= full["distinct"].n_params <= 4_900_000


def test_per_leaf_and_multi_tensor_side_by_side(report):
    """Adam on every tree, every JAX contender and torch fused, with the compiled step's
    kernels; one buffer has fewer kernels than leaf by leaf on the distinct-shape trees."""
    text = section(report, "## Per-leaf vs multi-tensor")
    rows = table_rows(text)
    assert rows[0] == ["Shape", "Contender", "compile (s)", "kernels", "B/param moved",
                       "MB faulted / step", "ms/step", "time / gradtx's", "speed vs torch fused"]
    body = {(r[0], r[1]): r[2:] for r in rows[1:]}
    assert list(body) == [(s.title, c) for s in QUICK_SHAPES
                          for c in [*JAX_CONTENDERS, "torch fused"]]
    for (_, c), (seconds, kernels, moved, faulted, ms, vs, speed) in body.items():
        assert float(ms) > 0 and speed.endswith("×")
        if c == "torch fused":
            assert (seconds, kernels, moved, faulted) == ("n/a", "n/a", "28 (one pass)", "n/a")
            continue
        assert float(seconds) > 0 and int(kernels) > 0 and float(moved) > 0
        assert float(faulted) >= 0
        assert vs == "baseline" if c == BASELINE else vs.endswith("×")
    for s in QUICK_SHAPES[3:]:
        assert int(body[(s.title, MULTI_TENSOR)][1]) < int(body[(s.title, BASELINE)][1])
        # packed: no per-leaf kernel at all, as many kernels as on the single leaf
        assert body[(s.title, PACKED)][1] == body[(QUICK_SHAPES[0].title, PACKED)][1]
    for s in QUICK_SHAPES:
        # the jax.ffi kernel updates in place in one pass: torch fused's traffic (plus the
        # step's few scalars, visible on the smallest trees)
        for c in (FFI_FUSED, FFI_PACKED):
            assert 28.0 <= float(body[(s.title, c)][2]) < 28.5, (s.title, c)


def test_every_eager_row_is_present(report):
    text = section(report, "## Eager step time")
    settings = make_settings(quick=True)
    warm, n = settings.eager_warmup_steps, settings.eager_steps
    steps = f"{warm + 1}–{warm + n}"
    assert shapes.eager_shape().title in text
    assert table_rows(text)[0] == ["Optimizer", "Contender", "first call (s)",
                                   "compilations in first call", "ms/step",
                                   f"compilations in steps {steps}", "vs optax"]
    rows = eager_table(report)
    contenders = [c.name for c in eager.EAGER_CONTENDERS]
    assert contenders == ["gradtx", "optax", "gradtx disable_jit"]
    assert list(rows) == [(o, c) for o in OPTIMIZERS for c in contenders]
    assert f"`{MULTI_TENSOR}` and `{OPTAX_FLATTEN}` are not in this table" in text
    for (o, c), (first, first_compiles, ms, compiles, vs) in rows.items():
        assert float(first) > 0 and float(ms) > 0, (o, c)
        assert int(first_compiles) >= 0 and int(compiles) >= 0, (o, c)
        if c == "optax":
            assert vs == "baseline"
        else:
            assert_ratio_matches(eager_ratio_of(vs, c), ms, rows[(o, "optax")][2])
    # Every first call compiles: the caches were cleared just before it.
    assert all(int(cells[1]) > 0 for cells in rows.values())


def test_eager_gradtx_steps_compile_nothing_after_the_second(report):
    """A count, not a time: gradtx's eager steps after the two warm-up steps compile nothing,
    compiled and op by op alike."""
    rows = eager_table(report)
    for o in OPTIMIZERS:
        for c in ("gradtx", "gradtx disable_jit"):
            assert rows[(o, c)][3] == "0", (o, c)


def path_of(target: str) -> str | None:
    """The multi-tensor path or jax.ffi kernel a target row is about, if any."""
    return next((c for c in (*targets.MULTI_PATHS, *targets.FFI_PATHS)
                 if target.startswith(f"{c} ")), None)


def test_verdicts_agree_with_tables(report):
    tables = step_tables(report)
    compiles = compile_table(report)
    eager_rows = eager_table(report)
    eager_title = shapes.eager_shape().title
    titles = {s.key: s.title for s in QUICK_SHAPES}
    rows = table_rows(section(report, "## Targets"))[1:]
    seen = set()
    for target, shape, _, verdict in rows:
        if target.startswith("eager step ≤ 1.5× Optax's"):
            assert shape == eager_title
            ratios = [eager_ratio_of(cells[4], c) for (o, c), cells in eager_rows.items()
                      if c == "gradtx"]
            assert len(ratios) == len(OPTIMIZERS)
            expected = "MET" if max(ratios) <= 1.5 else "MISSED"
        elif target == "no compilation after the second eager step":
            assert shape == eager_title
            counts = [int(cells[3]) for (o, c), cells in eager_rows.items()
                      if c in ("gradtx", "gradtx disable_jit")]
            assert len(counts) == 2 * len(OPTIMIZERS)
            expected = "MET" if max(counts) == 0 else "MISSED"
        elif target.startswith("gradtx ≥ optax"):
            ratios = [ratio_of(cells[1]) for (o, c), cells in tables[shape].items() if c == "optax"]
            expected = "MET" if min(ratios) >= 1.0 else "MISSED"
        elif target.startswith("gradtx ≥ torch fused Adam"):
            ratio = ratio_of(tables[shape][("Adam", "torch fused")][1])
            expected = "MET" if ratio >= 1.0 else "MISSED"
        elif target.startswith("gradtx compile"):
            times = [t[BASELINE] for (title, _), t in compiles.items() if title == shape]
            assert len(times) == len(OPTIMIZERS)
            expected = "MET" if max(times) <= 1.5 else "MISSED"
        elif (c := path_of(target)) and " compile ≤ 2 s" in target:
            assert shape in (titles["distinct"], titles["distinct-2d"])
            times = [t[c] for (title, _), t in compiles.items()
                     if title == shape and t[c] is not None]
            assert times
            expected = "MET" if max(times) <= 2.0 else "MISSED"
        elif (c := path_of(target)) and " ≥ optax" in target:
            assert c in targets.MULTI_PATHS
            # optax/gradtx over contender/gradtx, as printed: allow the rounding of both.
            cells = tables[shape]
            ratios = [(ratio_of(cells[(o, "optax")][1]), ratio_of(cells[(o, c)][1]))
                      for (o, name) in cells if name == "optax"]
            if all(a / b >= 1.0 + 0.01 for a, b in ratios):
                assert verdict == "MET", (target, shape)
            if any(a / b < 1.0 - 0.01 for a, b in ratios):
                assert verdict == "MISSED", (target, shape)
            expected = verdict
        elif (c := path_of(target)) and " ≥ 0.8× torch fused Adam" in target:
            assert shape in (titles["transformer"], titles["single"])
            cells = tables[shape]
            fused, multi = (float(cells[("Adam", name)][0]) for name in ("torch fused", c))
            if fused / multi >= 0.8 + 0.01:
                assert verdict == "MET", (target, shape)
            if fused / multi < 0.8 - 0.01:
                assert verdict == "MISSED", (target, shape)
            expected = verdict
        else:  # the GPU row: no GPU here
            expected = "NOT MEASURED"
        assert verdict in ("MET", "MISSED", "NOT MEASURED")
        assert verdict == expected, (target, shape)
        seen.add(target.split(",")[0])
    # gradtx's own targets, then per multi path (multi-tensor, packed) compile, vs optax, vs
    # torch fused, and per jax.ffi kernel compile and vs torch fused
    assert len(seen) == 6 + 3 * len(targets.MULTI_PATHS) + 2 * len(targets.FFI_PATHS)
    assert sum(r[0].startswith("gradtx ≥ optax") for r in rows) == len(QUICK_SHAPES)
    for c in (*targets.MULTI_PATHS, *targets.FFI_PATHS):
        if c in targets.MULTI_PATHS:
            assert sum(r[0].startswith(f"{c} ≥ optax") for r in rows) == len(QUICK_SHAPES)
        assert sum(r[0].startswith(f"{c} compile") for r in rows) == 2
        assert sum(r[0].startswith(f"{c} ≥ 0.8×") for r in rows) == 2
    assert sum(r[0].startswith("eager step") for r in rows) == 1
    missed = {r[0].split(",")[0] for r in rows if r[3] == "MISSED"}
    if missed:
        why = section(report, "## Why targets are missed")
        bullets = [(f"{MULTI_TENSOR} compile", "Multi-tensor compile time")]
        for c in (*targets.MULTI_PATHS, *targets.FFI_PATHS):
            bullets.append((f"{c} ≥ 0.8×", f"{c} against torch fused Adam."))
            bullets.append((f"{c} ≥ optax", f"{c} against Optax"))
            if c != MULTI_TENSOR:
                bullets.append((f"{c} compile", f"{c} compile time."))
        for name, bullet in bullets:
            if any(m.startswith(name) for m in missed):
                assert f"**{bullet}" in why, bullet


def test_verdict_functions():
    assert targets.ratios_verdict([1.2, 0.9]) == "MISSED"
    assert targets.ratios_verdict([1.2, 1.0]) == "MET"
    assert targets.ratios_verdict([0.996]) == "MET"  # prints as 1.00×
    assert targets.ratios_verdict([0.994]) == "MISSED"  # prints as 0.99×
    assert targets.ratios_verdict([]) == "NOT MEASURED"
    assert targets.ratios_verdict([0.796], floor=0.8) == "MET"  # prints as 0.80×
    assert targets.ratios_verdict([0.794], floor=0.8) == "MISSED"
    assert targets.compile_verdict([1.9, 2.0], limit=2.0) == "MET"
    assert targets.compile_verdict([2.1], limit=2.0) == "MISSED"
    assert targets.compile_verdict([0.4, 1.6]) == "MISSED"
    assert targets.compile_verdict([0.4, 1.5]) == "MET"
    assert targets.roofline_verdict(84.9) == "MISSED"
    assert targets.roofline_verdict(91.0) == "MET"
    assert targets.ratio_limit_verdict([0.3, 1.5]) == "MET"
    assert targets.ratio_limit_verdict([0.3, 1.504]) == "MET"  # prints as 1.50×
    assert targets.ratio_limit_verdict([0.3, 1.506]) == "MISSED"  # prints as 1.51×
    assert targets.ratio_limit_verdict([]) == "NOT MEASURED"
    assert targets.no_compile_verdict([0, 0]) == "MET"
    assert targets.no_compile_verdict([0, 1]) == "MISSED"
    assert targets.no_compile_verdict([]) == "NOT MEASURED"


def test_contenders_compute_the_same_steps():
    """The timed contenders are comparable: three steps of each agree in float32."""
    shape = shapes.Shape("small", "three leaves", {"w": (6, 5), "b": (5,), "s": (3,)})
    params = shapes.host_tree(shape, seed=0, scale=0.5)
    grads = shapes.host_tree(shape, seed=1, scale=0.1)
    for spec in OPTIMIZERS.values():
        runners = suite.build_runners(spec, CONTENDERS, params, grads, device="cpu")
        assert set(runners) == {c.name for c in CONTENDERS if c.factory(spec) is not None}
        finals = {}
        for name, runner in runners.items():
            runner.run(3)
            finals[name] = runner.params()
        for name, leaves in finals.items():
            for got, want, start in zip(leaves, finals[BASELINE], params.values(), strict=True):
                assert got.dtype == np.float32
                assert not np.array_equal(got, start)
                np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7,
                                           err_msg=f"{spec.name} {name}")


SLICE_HLO = """HloModule step

%fused_computation (param_0: f32[4], param_1: f32[10]) -> f32[4] {
  %param_0 = f32[4]{0} parameter(0)
  %param_1 = f32[10]{0} parameter(1)
  %slice.0 = f32[4]{0} slice(%param_1), slice={[0:4]}
  ROOT %add.0 = f32[4]{0} add(%param_0, %slice.0)
}

ENTRY %main.1 (p0: f32[4], p1: f32[6], g: f32[10], n: f32[10]) -> (f32[4], f32[6], f32[]) {
  %p0 = f32[4]{0} parameter(0)
  %p1 = f32[6]{0} parameter(1)
  %g = f32[10]{0} parameter(2)
  %n = f32[10]{0} parameter(3)
  %copy.3 = f32[10]{0} copy(%g)
  %slice_fusion = f32[4]{0} fusion(%p0, %copy.3), kind=kLoop, calls=%fused_computation
  %slice_fusion.1 = f32[6]{0} fusion(%p1, %copy.3), kind=kLoop, calls=%fused_computation
  %norm_fusion = f32[] fusion(%n), kind=kInput, calls=%fused_computation
  ROOT %t = (f32[4]{0}, f32[6]{0}, f32[]) tuple(%slice_fusion, %slice_fusion.1, %norm_fusion)
}
"""


def test_hlo_kernels_and_bytes():
    """Kernels are the entry computation's fusions and unfused operations; a loop fusion
    reads no more elements of an operand than it writes, a reduction reads all of it."""
    stats = hlo.analyse_text(SLICE_HLO)
    assert stats.kernels == 4
    # copy 40 + 40; fusions (16 + 16 + 16) and (24 + 24 + 24); the reduction 40 + 4.
    assert stats.bytes_moved == 80 + 48 + 72 + 44
    assert stats.groups == {"slice_fusion": hlo.KernelGroup(2, 120),
                            "copy": hlo.KernelGroup(1, 80),
                            "norm_fusion": hlo.KernelGroup(1, 44)}
    assert stats.bytes_per_param(10) == 24.4
    assert stats.summary(10, top=1) == ("`slice_fusion` ×2 (12.0 B/param), "
                                        "2 others (12.4 B/param)")


def test_compile_repeats_and_kernels_are_recorded():
    """Each JAX contender is compiled ``compile_repeats`` times, or once when its first
    compilation took over ``single_compile_seconds``; its kernels are recorded."""
    shape = shapes.distinct_leaves(4, 10, 40)
    params = shapes.host_tree(shape, seed=0, scale=0.5)
    grads = shapes.host_tree(shape, seed=1, scale=0.1)
    spec = OPTIMIZERS["Adam"]
    for limit, count in ((float("inf"), 2), (0.0, 1)):
        result = ShapeResult(shape, ["Adam"], [c.name for c in CONTENDERS])
        suite.build_runners(spec, CONTENDERS, params, grads, None, result,
                            compile_repeats=2, single_compile_seconds=limit)
        assert result.compile_counts == {("Adam", c): count for c in JAX_CONTENDERS}
        assert set(result.kernels) == {("Adam", c) for c in JAX_CONTENDERS}
        per_leaf, multi = (result.kernels[("Adam", c)] for c in (BASELINE, MULTI_TENSOR))
        assert multi.kernels < per_leaf.kernels


def test_optional_sections(monkeypatch):
    monkeypatch.setattr(cli, "OPTIONAL_SECTIONS", ("benchmarks.no_such_section",))
    assert cli.optional_sections(quick=True) == []
    fake = types.ModuleType("benchmarks.fake_section")
    fake.run = lambda quick: f"## Fake section (quick={quick})"
    monkeypatch.setitem(sys.modules, "benchmarks.fake_section", fake)
    monkeypatch.setattr(cli, "OPTIONAL_SECTIONS", ("benchmarks.fake_section",))
    assert cli.optional_sections(quick=True) == ["## Fake section (quick=True)"]


def test_ffi_fused_adam_on_a_large_leaf_equals_gradtx():
    """The C++ kernel splits a leaf this large over XLA's threads (uneven chunks: the size is
    odd); its parameters and moments after three steps equal gx.adam's to float32 rounding."""
    import jax
    import jax.numpy as jnp

    import gradtx as gx
    from benchmarks import ffi_adam

    opt = ffi_adam.fused_adam(1e-3)
    assert opt is not None  # CPU with a C++ compiler: the kernel must build here
    rng = np.random.default_rng(0)
    params = {"w": jnp.asarray(rng.standard_normal(2**20 + 3), jnp.float32)}
    grads = {"w": jnp.asarray(rng.standard_normal(2**20 + 3), jnp.float32)}
    ref, ref_params = gx.adam(1e-3), params
    ref_state = ref.init(params)
    state, got = opt.init(params), jax.tree.map(jnp.copy, params)
    step = jax.jit(opt.fused_step, donate_argnums=(0, 1))
    for _ in range(3):
        got, state = step(got, state, grads)
        updates, ref_state = ref.update(grads, ref_state, ref_params)
        ref_params = gx.apply_updates(ref_params, updates)
    # a step may round p differently by an ulp (torch's order of operations vs gradtx's)
    np.testing.assert_allclose(got["w"], ref_params["w"], rtol=4 * 2.0**-23, atol=1e-8)
    assert not np.array_equal(got["w"], params["w"])
    for name, mine in (("mu", state.mu), ("nu", state.nu)):
        np.testing.assert_allclose(mine["w"], gx.tree_get(ref_state, name)["w"], rtol=1e-6)


def test_muon_section_times_every_contender_against_optax():
    """The optional Muon section (quick): a row per contender, Optax's last at 1.00, numbers
    that are times."""
    from benchmarks import muon_compile

    text = muon_compile.run(quick=True)
    assert text.startswith("## Muon: compile and step time\n")
    rows = table_rows(section(text, "## Muon: compile and step time"))
    labels = [label for label, *_ in muon_compile.contenders()]
    assert [r[0] for r in rows[1:]] == labels  # rows[0] is the header
    assert "benchmarks.muon_compile" in cli.OPTIONAL_SECTIONS
    optax_ms = rows[-1][3]
    for row in rows[1:]:
        assert all(float(x) > 0 for x in row[1:4])
        assert_ratio_matches(float(row[4].removesuffix("×")), row[3], optax_ms)
    assert rows[-1][4] == "1.00×"


def test_multihost_section_reports_state_bytes_per_process():
    """Two jax.distributed processes of 4 devices each hold half of the one process's state."""
    from benchmarks import multihost

    assert "benchmarks.multihost" in cli.OPTIONAL_SECTIONS
    results = [multihost.measure(p, d, quick=True) for p, d in multihost.QUICK_TOPOLOGIES]
    one, two = results
    assert one["state_bytes_per_process"] == [one["state_bytes"]]
    assert len(two["state_bytes_per_process"]) == 2
    assert two["state_bytes_per_process"] == [one["state_bytes"] // 2] * 2
    text = multihost.render(results, quick=True, seconds=1.0)
    assert "| 2 x 4 | 4.19 | 0.500 |" in text
