"""The command line: `python -m gradtx compare`, called in-process through `main` and once as a
real subprocess."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from gradtx.cli import TASKS, RunResult, main


def _table(stdout: str) -> dict[str, list[str]]:
    """The printed table's rows keyed by optimizer name (the rows follow the dashed rule)."""
    lines = stdout.splitlines()
    rule = next(i for i, line in enumerate(lines) if set(line) <= {"-", " "} and line)
    rows = {}
    for line in lines[rule + 1 :]:
        cells = line.split()
        if len(cells) != 4:  # the table ends where a differently shaped line starts
            break
        rows[cells[0]] = cells[1:]
    return rows


def _start_loss(task: str) -> float:
    t = TASKS[task](0)
    return float(t.loss_fn(t.start))


@pytest.mark.parametrize("task", ["quadratic", "rosenbrock"])
def test_short_run_lists_optimizers_and_reduces_loss(task, capsys):
    assert main(["compare", "--task", task, "--steps", "50", "--optimizers", "sgd,adam"]) == 0
    rows = _table(capsys.readouterr().out)
    assert list(rows) == ["sgd", "adam"]
    final = {name: float(cells[0]) for name, cells in rows.items()}
    # sgd's example settings (lr 0.01, momentum 0.9) diverge on Rosenbrock's steep walls, which
    # the table must report as nan, not hide; every other run must be finite and improve.
    expected = ["adam"] if task == "rosenbrock" else ["sgd", "adam"]
    for name in expected:
        assert math.isfinite(final[name]), (name, final[name])
        assert final[name] < _start_loss(task), (name, final[name])
    for cells in rows.values():
        assert cells[1] == "-" or int(cells[1]) >= 0
        assert float(cells[2]) > 0  # microseconds per step


def test_no_subcommand_means_compare(capsys):
    assert main(["--steps", "5", "--optimizers", "adam"]) == 0
    assert list(_table(capsys.readouterr().out)) == ["adam"]


def test_out_writes_curves_and_summary(tmp_path, capsys):
    out = tmp_path / "nested" / "run"  # created on demand
    argv = ["compare", "--steps", "30", "--optimizers", "sgd,adam", "--out", str(out)]
    assert main(argv) == 0
    capsys.readouterr()

    with open(out / "curves.csv", newline="") as f:
        reader = csv.reader(f)
        assert next(reader) == ["optimizer", "step", "loss"]
        rows = list(reader)
    assert len(rows) == 30 * 2
    for name in ("sgd", "adam"):
        steps = [int(step) for opt, step, _ in rows if opt == name]
        assert steps == list(range(30))
    assert all(math.isfinite(float(loss)) for _, _, loss in rows)

    summary = json.loads((out / "summary.json").read_text())
    assert (summary["task"], summary["steps"], summary["seed"]) == ("quadratic", 30, 0)
    assert [r["optimizer"] for r in summary["results"]] == ["sgd", "adam"]
    for r in summary["results"]:
        assert r["final_loss"] < r["initial_loss"]
        assert r["initial_loss"] == pytest.approx(_start_loss("quadratic"), rel=1e-6)
        assert r["steps_to_target"] is None or 0 <= r["steps_to_target"] <= 30


def test_seed_changes_the_quadratic():
    a, b = TASKS["quadratic"](0), TASKS["quadratic"](1)
    assert float(a.loss_fn(a.start)) != float(b.loss_fn(b.start))


def test_steps_to_target():
    run = RunResult("x", {}, losses=[5.0, 3.0, 0.5, 2.0, 0.1], median_step_us=1.0)
    assert run.steps_to(1.0) == 2  # the first time it is reached, even if it later rises
    assert run.steps_to(10.0) == 0
    assert run.steps_to(0.01) is None
    assert RunResult("x", {}, [math.nan], 1.0).steps_to(1.0) is None


@pytest.mark.parametrize(
    "argv, option, value",
    [
        (["--optimizers", "sgd,bogus"], "--optimizers", "bogus"),
        (["--optimizers", "sgd,sgd"], "--optimizers", "sgd"),
        (["--steps", "0"], "--steps", "0"),
        (["--steps", "-3"], "--steps", "-3"),
        (["--steps", "ten"], "--steps", "ten"),
        (["--task", "bogus"], "--task", "bogus"),
        (["--target", "0"], "--target", "0"),
        (["--target", "nan"], "--target", "nan"),
        (["--seed", "-1"], "--seed", "-1"),
    ],
)
def test_bad_options_exit_nonzero_naming_the_option(argv, option, value, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["compare", *argv])
    assert exc.value.code != 0
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]  # argparse prints usage, then the one-line message
    assert option in last and value in last, err


def test_out_that_is_a_file_is_refused(tmp_path, capsys):
    not_a_dir = tmp_path / "file.txt"
    not_a_dir.write_text("")
    with pytest.raises(SystemExit) as exc:
        main(["compare", "--steps", "1", "--out", str(not_a_dir)])
    assert exc.value.code != 0
    assert "--out" in capsys.readouterr().err


def test_python_dash_m_runs():
    repo = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, "-m", "gradtx", "compare", "--steps", "20", "--optimizers", "sgd"],
        capture_output=True,
        text=True,
        cwd=repo,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "sgd" in result.stdout
