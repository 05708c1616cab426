"""The benchmark harness (``python -m benchmarks``): a quick run writes every section and
row, and its target verdicts agree with its own tables."""

from __future__ import annotations

import re
import sys
import types

import numpy as np
import pytest

from benchmarks import __main__ as cli
from benchmarks import eager, shapes, suite, targets
from benchmarks.contenders import BASELINE, CONTENDERS, has_fused
from benchmarks.optimizers import OPTIMIZERS
from benchmarks.settings import make_settings

SECTIONS = ["# gradtx benchmarks", "## Machine", "## Method", "## Copy bandwidth", "## Step time",
            "## Compile time", "## Memory", "## Large single leaf (GPU)", "## Eager step time",
            "## Targets"]


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> str:
    """A quick run's report. Optional sections (``benchmarks.state_quality``) are left out:
    they have their own tests, and ``test_optional_sections`` covers how they are included."""
    out = tmp_path_factory.mktemp("bench") / "quick.md"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cli, "OPTIONAL_SECTIONS", ())
        assert cli.main(["--quick", "--out", str(out)]) == str(out)
    return out.read_text()


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
    assert list(tables) == [s.title for s in shapes.benchmark_shapes(quick=True)]
    expected = {(o, c.name) for o in OPTIMIZERS for c in CONTENDERS}
    for rows in tables.values():
        assert set(rows) == expected
        for (o, c), (ms, vs, gbps, pct) in rows.items():
            if c == "torch fused" and not has_fused(OPTIMIZERS[o]):
                assert [ms, vs, gbps, pct] == ["n/a"] * 4
                continue
            assert float(ms) > 0 and float(gbps) >= 0 and pct.endswith("%")
            if c == BASELINE:
                assert vs == "baseline"
            else:
                assert vs.startswith(f"{c}/gradtx = ") and ratio_of(vs) > 0
    compile_rows = table_rows(section(report, "## Compile time"))[1:]
    assert len(compile_rows) == len(tables) * len(OPTIMIZERS)
    assert all(float(r[2]) > 0 and float(r[3]) > 0 for r in compile_rows)
    memory_rows = table_rows(section(report, "## Memory"))[1:]
    assert len(memory_rows) == len(tables) * len(OPTIMIZERS) * 2  # gradtx and optax
    assert all(float(r[3]) > 0 for r in memory_rows)


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
    for (o, c), (first, first_compiles, ms, compiles, vs) in rows.items():
        assert float(first) > 0 and float(ms) > 0, (o, c)
        assert int(first_compiles) >= 0 and int(compiles) >= 0, (o, c)
        if c == "optax":
            assert vs == "baseline"
        else:
            assert eager_ratio_of(vs, c) > 0
    # Every first call compiles: the caches were cleared just before it.
    assert all(int(cells[1]) > 0 for cells in rows.values())


def test_eager_gradtx_steps_compile_nothing_after_the_second(report):
    """A count, not a time: gradtx's eager steps after the two warm-up steps compile nothing,
    compiled and op by op alike."""
    rows = eager_table(report)
    for o in OPTIMIZERS:
        for c in ("gradtx", "gradtx disable_jit"):
            assert rows[(o, c)][3] == "0", (o, c)


def test_verdicts_agree_with_tables(report):
    tables = step_tables(report)
    compile_rows = table_rows(section(report, "## Compile time"))[1:]
    eager_rows = eager_table(report)
    eager_title = shapes.eager_shape().title
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
            times = [float(r[2]) for r in compile_rows if r[0] == shape]
            assert len(times) == len(OPTIMIZERS)
            expected = "MET" if max(times) <= 1.5 else "MISSED"
        else:  # the GPU row: no GPU here
            expected = "NOT MEASURED"
        assert verdict == expected, (target, shape)
        seen.add(target.split(",")[0])
    assert len(seen) == 6
    assert sum(r[0].startswith("gradtx ≥ optax") for r in rows) == 3
    assert sum(r[0].startswith("eager step") for r in rows) == 1


def test_verdict_functions():
    assert targets.ratios_verdict([1.2, 0.9]) == "MISSED"
    assert targets.ratios_verdict([1.2, 1.0]) == "MET"
    assert targets.ratios_verdict([0.996]) == "MET"  # prints as 1.00×
    assert targets.ratios_verdict([0.994]) == "MISSED"  # prints as 0.99×
    assert targets.ratios_verdict([]) == "NOT MEASURED"
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


def test_optional_sections(monkeypatch):
    monkeypatch.setattr(cli, "OPTIONAL_SECTIONS", ("benchmarks.no_such_section",))
    assert cli.optional_sections(quick=True) == []
    fake = types.ModuleType("benchmarks.fake_section")
    fake.run = lambda quick: f"## Fake section (quick={quick})"
    monkeypatch.setitem(sys.modules, "benchmarks.fake_section", fake)
    monkeypatch.setattr(cli, "OPTIONAL_SECTIONS", ("benchmarks.fake_section",))
    assert cli.optional_sections(quick=True) == ["## Fake section (quick=True)"]
