"""The command line, `python -m gradtx compare`: called in-process through `main` with tiny step
counts, and once as a real subprocess. Also its pieces in gradtx.compare: the presets, the
digits data and models, the loss curve behind steps-to-target, the output files."""

from __future__ import annotations

import csv
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

import gradtx as gx
from gradtx.cli import build_parser, main
from gradtx.compare import digits, presets
from gradtx.compare.tasks import TASKS
from gradtx.compare.train import RunResult, train
from gradtx.core import GradientTransformation
from gradtx.optimizers import registry

SEED_OPTIMIZERS = ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adadelta", "adam"]
SEED_OPTIMIZERS += ["adamw", "nadam"]


def _table(stdout: str) -> dict[str, dict[str, str]]:
    """The printed table: {optimizer: {column: cell}}. Columns are found by the header's
    positions (cells are separated by two spaces; the last column, settings, has spaces)."""
    lines = stdout.splitlines()
    rule = next(i for i, line in enumerate(lines) if line and set(line) <= {"-", " "})
    header = [h.strip() for h in lines[rule - 1].split("  ") if h.strip()]
    rows = {}
    for line in lines[rule + 1 :]:
        cells = [c.strip() for c in line.split("  ") if c.strip()]
        if len(cells) != len(header):  # the table ends where a differently shaped line starts
            break
        rows[cells[0]] = dict(zip(header, cells, strict=True))
    return rows


def _start_loss(task: str) -> float:
    t = TASKS[task].build(0)
    return float(t.final_loss_fn(t.params))


@pytest.mark.parametrize(
    "task, steps",
    [("cnn-digits", 25), ("mlp-digits", 25), ("rosenbrock", 50), ("quadratic", 50)],
)
def test_each_task_trains_and_tabulates(task, steps, capsys):
    argv = ["compare", "--task", task, "--steps", str(steps), "--optimizers", "adam,momentum"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    rows = _table(captured.out)
    assert list(rows) == ["adam", "momentum"]
    for name, row in rows.items():
        final = float(row["final loss"])
        assert math.isfinite(final) and final < _start_loss(task), (name, row)
        assert float(row["us/step"]) > 0
        lr = presets.resolve(name, task).hyperparameters["learning_rate"]
        assert row["settings"].startswith(f"lr={lr:g}")
        assert row["lr from"] == "sweep"
        if TASKS[task].classifier:
            # 25 steps is one epoch and a bit: far above chance (10%) already.
            acc, low, high = re.fullmatch(r"([\d.]+)% \[([\d.]+), ([\d.]+)\]",
                                          row["test acc [95% CI]"]).groups()
            assert float(low) <= float(acc) <= float(high) and float(acc) > 40, row
        else:
            assert "test acc [95% CI]" not in row
    start = f"at the start it is {_start_loss(task):.4g} for every optimizer"
    assert start in captured.out
    label = TASKS[task].build(0).final_loss_label
    assert f"final loss: {label}, at the final parameters" in captured.out
    # Not a terminal (captured): no progress bars, so no carriage returns in logs.
    assert "\r" not in captured.err and "it/s" not in captured.err and "step/s" not in captured.err


def test_progress_bars_show_on_a_terminal(monkeypatch, capsys):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main(["--task", "quadratic", "--steps", "5", "--optimizers", "adam,sgd"]) == 0
    err = capsys.readouterr().err
    assert err.count("5/5") == 2, err  # one finished bar per optimizer


def test_no_subcommand_means_compare(capsys):
    assert main(["--task", "quadratic", "--steps", "5", "--optimizers", "adam"]) == 0
    assert list(_table(capsys.readouterr().out)) == ["adam"]


def test_defaults_are_the_seed_articles_comparison():
    args = build_parser().parse_args(["compare"])
    assert args.task == "cnn-digits" and args.optimizers == SEED_OPTIMIZERS
    assert (args.steps, args.target, args.seed, args.out) == (None, None, 0, None)
    assert list(presets.DEFAULT_OPTIMIZERS) == SEED_OPTIMIZERS


def _read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def test_out_for_a_classifier_writes_png_csv_json(tmp_path, capsys):
    out = tmp_path / "nested" / "run"  # created on demand
    steps, names = 30, ["sgd", "adam", "muon"]
    argv = ["--task", "mlp-digits", "--steps", str(steps), "--optimizers", ",".join(names)]
    assert main([*argv, "--seed", "3", "--out", str(out)]) == 0
    assert str(out / "curves.png") in capsys.readouterr().out
    window = digits.steps_per_epoch(digits.load())
    eval_steps = [0, window, steps]  # the start, every epoch end, the last step

    import matplotlib.image

    image = matplotlib.image.imread(out / "curves.png")
    assert image.ndim == 3 and image.shape[1] > 1.5 * image.shape[0]  # two panels side by side

    header, rows = _read_csv(out / "curves.csv")
    assert header == ["optimizer", "step", "loss"] and len(rows) == steps * len(names)
    for name in names:
        assert [int(s) for opt, s, _ in rows if opt == name] == list(range(steps))
    assert all(math.isfinite(float(loss)) for _, _, loss in rows)

    header, rows = _read_csv(out / "accuracy.csv")
    assert header == ["optimizer", "step", "test_accuracy"]
    assert len(rows) == len(eval_steps) * len(names)
    assert [int(s) for opt, s, _ in rows if opt == "adam"] == eval_steps
    assert all(0 <= float(a) <= 1 for _, _, a in rows)

    header, rows = _read_csv(out / "summary.csv")
    assert header[:4] == ["optimizer", "start_loss", "final_loss", "test_accuracy"]
    assert {"test_accuracy_95_low", "test_accuracy_95_high", "lr_from"} <= set(header)
    assert [row[0] for row in rows] == names

    summary = json.loads((out / "summary.json").read_text())
    expected = ("mlp-digits", steps, 3, TASKS["mlp-digits"].target)
    assert (summary["task"], summary["steps"], summary["seed"], summary["target"]) == expected
    assert [r["optimizer"] for r in summary["results"]] == names
    for r in summary["results"]:
        assert set(r) >= {"final_loss", "test_accuracy", "steps_to_target", "median_step_us",
                          "start_loss", "test_accuracy_95_low", "test_accuracy_95_high"}
        assert r["test_accuracy_95_low"] <= r["test_accuracy"] <= r["test_accuracy_95_high"]
        assert r["start_loss"] == pytest.approx(math.log(10), rel=0.2)
        assert 0.4 < r["test_accuracy"] <= 1 and r["final_loss"] < math.log(10)
        assert r["hyperparameters"] == presets.resolve(r["optimizer"], "mlp-digits").hyperparameters

    curves = json.loads((out / "curves.json").read_text())
    assert curves["window"] == window and list(curves["optimizers"]) == names
    for curve in curves["optimizers"].values():
        assert len(curve["loss"]) == steps and len(curve["curve"]) == steps + 1
        assert curve["eval_steps"] == eval_steps and len(curve["test_accuracy"]) == 3


def test_out_for_a_full_batch_task_has_no_accuracy(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["--task", "rosenbrock", "--steps", "40", "--optimizers", "nesterov,lion"]
    assert main([*argv, "--target", "3", "--out", str(out)]) == 0
    capsys.readouterr()
    assert not (out / "accuracy.csv").exists()
    _, rows = _read_csv(out / "curves.csv")
    assert len(rows) == 80
    summary = json.loads((out / "summary.json").read_text())
    assert summary["target"] == 3.0
    for r in summary["results"]:
        assert r["test_accuracy"] is None
        assert r["steps_to_target"] is None or 0 <= r["steps_to_target"] <= 40
    curves = json.loads((out / "curves.json").read_text())["optimizers"]
    # Full batch: the curve is the exact loss, step by step, then the final loss.
    for curve in curves.values():
        assert curve["curve"][:-1] == curve["loss"] and curve["eval_steps"] == []
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_name_resolves_on_every_task():
    assert presets.names()[: len(SEED_OPTIMIZERS)] == SEED_OPTIMIZERS
    assert set(registry.names()) <= set(presets.names())
    params = {"w": np.ones(3, dtype=np.float32)}
    for task in TASKS:
        for name in presets.names():
            resolved = presets.resolve(name, task)
            opt = resolved.build()
            assert isinstance(opt, GradientTransformation)
            lr = resolved.hyperparameters["learning_rate"]
            assert 0 < lr <= 1, (name, task, lr)
            if task == "quadratic":  # one update per optimizer (eager steps are slow-ish)
                state = opt.init(params)
                steps = registry.get(name).first_moving_step if name in registry.names() else 1
                for _ in range(steps):  # ADOPT's first step only fills its second moment
                    updates, state = opt.update(params, state, params)
                assert np.all(np.isfinite(updates["w"])) and np.any(updates["w"] != 0)
    # Every table entry names a real optimizer and task (a typo would silently fall back).
    assert set(presets.REGISTRY_LEARNING_RATES) <= set(registry.names())
    for rates in [*presets.REGISTRY_LEARNING_RATES.values()]:
        # Every task, or (the optimizers added with it) char-transformer alone.
        assert set(rates) in (set(TASKS), {"char-transformer"}), rates
    assert set(presets.REGISTRY_PRESETS) <= set(registry.names())
    assert not set(presets.REGISTRY_PRESETS) & set(presets.DEFAULT_OPTIMIZERS)
    for preset in [*presets.PRESETS.values(), *presets.REGISTRY_PRESETS.values()]:
        assert set(preset.learning_rates) == set(TASKS)
        assert set(preset.per_task) <= set(TASKS)


def _muon_state(task: str):
    return presets.resolve("muon", task).build().init(TASKS[task].build(0).params)


def test_muon_is_the_recipe_with_the_adamw_preset_for_the_rest():
    adamw = presets.resolve("adamw", "mlp-digits").hyperparameters
    muon = presets.resolve("muon", "mlp-digits").hyperparameters
    assert muon["adamw_learning_rate"] == adamw["learning_rate"]
    assert muon["adamw_weight_decay"] == adamw["weight_decay"]
    # On the MLP, Muon takes the hidden layer's matrix (its momentum buffer), AdamW the rest:
    # the biases and the output layer, a head (its key "out" is not in NON_MUON_NAMES).
    state = _muon_state("mlp-digits")
    buffer, mu = gx.tree_get(state, "momentum_buffer"), gx.tree_get(state, "mu")
    assert buffer["hidden"]["w"].shape == (64, 128) and mu["hidden"]["w"] is None
    for leaf in [("hidden", "b"), ("out", "w"), ("out", "b")]:
        assert buffer[leaf[0]][leaf[1]] is None and mu[leaf[0]][leaf[1]] is not None, leaf
    # On the CNN, nothing is a hidden matrix: 4-D kernels, biases, the output layer.
    buffer = gx.tree_get(_muon_state("cnn-digits"), "momentum_buffer")
    assert all(leaf is None for leaf in jax.tree.leaves(buffer, is_leaf=lambda x: x is None))


@pytest.mark.parametrize("task, steps", [("rosenbrock", 30), ("quadratic", 30), ("cnn-digits", 3)])
def test_muon_trains_as_adamw_where_no_leaf_is_a_hidden_matrix(task, steps):
    # rosenbrock and quadratic have one 1-D point; the CNN has no hidden matrix (see above).
    t = TASKS[task].build(0)
    runs = []
    for name in ["adamw", "muon"]:
        resolved = presets.resolve(name, task)
        runs.append(train(t, name, resolved.build(), resolved.hyperparameters, steps))
    assert runs[0].losses == runs[1].losses and runs[0].final_loss == runs[1].final_loss


def test_presets_mean_what_they_say():
    momentum = presets.resolve("momentum", "cnn-digits")
    nesterov = presets.resolve("nesterov", "cnn-digits")
    assert momentum.factory is nesterov.factory is registry.get("sgd").factory
    assert (
        momentum.hyperparameters["momentum"] == 0.9 and "nesterov" not in momentum.hyperparameters
    )
    assert nesterov.hyperparameters["nesterov"] is True
    assert presets.resolve("sgd", "quadratic").hyperparameters.keys() == {"learning_rate"}
    # A registry name keeps its example's other settings.
    lion = presets.resolve("lion", "rosenbrock").hyperparameters
    example = registry.get("lion").example
    assert {k: v for k, v in lion.items() if k != "learning_rate"} == {
        k: v for k, v in example.items() if k != "learning_rate"
    }
    with pytest.raises(KeyError):
        presets.resolve("bogus", "quadratic")


def test_digits_data_and_models():
    data = digits.load()
    assert data.x_train.dtype == data.x_test.dtype == np.float32
    assert data.x_train.shape[1:] == (8, 8, 1) and len(data.x_train) + len(data.x_test) == 1797
    assert 0 <= data.x_train.min() and data.x_train.max() <= 1
    assert set(np.unique(data.y_test)) == set(range(10))
    for init, logits in [
        (digits.init_cnn, digits.cnn_logits),
        (digits.init_mlp, digits.mlp_logits),
    ]:
        params = init(0)
        assert all(leaf.dtype == np.float32 for leaf in jax.tree.leaves(params))
        out = logits(params, data.x_test[:5])
        assert out.shape == (5, 10) and out.dtype == np.float32
        assert not np.allclose(init(1)["out"]["w"], params["out"]["w"])  # the seed matters
    # The minibatches: same seed, same order; each epoch a fresh shuffle of the training set.
    a, b, c = digits.batches(data, 0), digits.batches(data, 0), digits.batches(data, 1)
    first = next(a)
    assert first[0].shape == (digits.BATCH_SIZE, 8, 8, 1)
    assert np.array_equal(first[1], next(b)[1]) and not np.array_equal(first[1], next(c)[1])


def test_curve_and_steps_to_target():
    run = RunResult("x", {}, losses=[5.0, 3.0, 0.5, 2.0], final_loss=0.1, median_step_us=1.0)
    assert run.curve() == [5.0, 3.0, 0.5, 2.0, 0.1] == run.plotted()
    # The first step from which the curve stays at or below the target: dipping below it at
    # step 2 and rising again does not count.
    assert run.steps_to(1.0) == 4
    assert run.steps_to(10.0) == 0
    assert run.steps_to(0.01) is None
    # Minibatch losses are averaged over the last `window` steps: one lucky batch is not
    # enough. The plotted curve stops before final_loss, another measurement.
    noisy = RunResult("x", {}, [4.0, 0.5, 3.5, 0.5, 0.5], 0.4, 1.0, window=2)
    assert noisy.curve() == [4.0, 2.25, 2.0, 2.0, 0.5, 0.4]
    assert noisy.plotted() == [4.0, 2.25, 2.0, 2.0, 0.5]
    assert noisy.steps_to(1.0) == 4
    # The digits case the old definition got wrong: the whole-training-set loss is below the
    # target but the plotted curve ends above it, so the target is not reached.
    ends_above = RunResult("x", {}, [1.0, 0.07, 0.06, 0.07], 0.04, 1.0, window=2)
    assert ends_above.steps_to(0.05) is None
    assert RunResult("x", {}, [math.nan], math.nan, 1.0).steps_to(1.0) is None
    # A run whose end is NaN never reaches a target, whatever came before.
    assert RunResult("x", {}, [5.0, 0.1], math.nan, 1.0).steps_to(1.0) is None


def test_accuracy_interval_is_wilsons():
    run = RunResult("x", {}, [1.0], 1.0, 1.0, accuracies=[0.1, 0.9], test_size=100)
    low, high = run.accuracy_interval()
    assert low == pytest.approx(0.8256, abs=1e-4) and high == pytest.approx(0.9448, abs=1e-4)
    perfect = RunResult("x", {}, [1.0], 1.0, 1.0, accuracies=[1.0], test_size=359)
    assert perfect.accuracy_interval()[1] == 1.0 and perfect.accuracy_interval()[0] < 1.0
    assert RunResult("x", {}, [1.0], 1.0, 1.0).accuracy_interval() is None


def test_lr_overrides_a_learning_rate_and_says_so(capsys, tmp_path):
    argv = ["--task", "quadratic", "--steps", "5", "--optimizers", "adam,sgd",
            "--lr", "adam=0.02", "--out", str(tmp_path)]
    assert main(argv) == 0
    rows = _table(capsys.readouterr().out)
    assert rows["adam"]["settings"] == "lr=0.02" and rows["adam"]["lr from"] == "--lr"
    assert rows["sgd"]["lr from"] == "sweep"
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["learning_rate_overrides"] == {"adam": 0.02}
    assert summary["results"][0]["hyperparameters"]["learning_rate"] == 0.02
    assert summary["results"][0]["lr_from"] == "--lr"


def test_a_registry_optimizer_without_a_sweep_says_example():
    unswept = [n for n in registry.names()
               if presets.resolve(n, "quadratic").lr_source == "example"]
    assert unswept, "some registry optimizers have no swept rate on quadratic"
    name = unswept[0]
    assert presets.resolve(name, "quadratic").hyperparameters.get("learning_rate") == \
        registry.get(name).example.get("learning_rate")


@pytest.mark.parametrize(
    "argv, option, value",
    [
        (["--optimizers", "sgd,bogus"], "--optimizers", "bogus"),
        (["--optimizers", "sgd,sgd"], "--optimizers", "sgd"),
        (["--optimizers", ""], "--optimizers", "''"),
        (["--steps", "0"], "--steps", "0"),
        (["--steps", "-3"], "--steps", "-3"),
        (["--steps", "ten"], "--steps", "ten"),
        (["--task", "bogus"], "--task", "bogus"),
        (["--target", "0"], "--target", "0"),
        (["--target", "nan"], "--target", "nan"),
        (["--seed", "-1"], "--seed", "-1"),
        (["--lr", "adam"], "--lr", "NAME=VALUE"),
        (["--lr", "adam=-1"], "--lr", "-1"),
        (["--lr", "lion=0.1"], "--lr", "'lion' is not among --optimizers"),
        (["--optimizers", "adam", "--lr", "adam=0.1", "--lr", "adam=0.2"], "--lr", "twice"),
        (["--bogus"], "unrecognized", "--bogus"),
    ],
)
def test_bad_options_exit_nonzero_naming_the_option(argv, option, value, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["compare", *argv])
    assert exc.value.code != 0
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]  # argparse prints usage, then the one-line message
    assert option in last and value in last, err


def test_own_usage_on_its_own_errors(capsys):
    """`compare --bogus` (and `--bogus` alone, which means compare) prints compare's usage."""
    for argv in (["compare", "--bogus"], ["--bogus"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("usage: python -m gradtx compare"), err
        assert err.strip().endswith("unrecognized arguments: --bogus")


def test_an_unwritable_out_fails_before_training(tmp_path, capsys):
    """A directory that cannot be created: one line naming --out and why, exit 2, no run."""
    blocked = tmp_path / "file.txt"
    blocked.write_text("")
    with pytest.raises(SystemExit) as exc:
        main(["--task", "quadratic", "--steps", "1", "--out", str(blocked / "run")])
    assert exc.value.code == 2
    captured = capsys.readouterr()
    last = captured.err.strip().splitlines()[-1]
    assert last.startswith("python -m gradtx compare: error: argument --out: cannot write")
    assert "Traceback" not in captured.err and "task quadratic" not in captured.out


def test_out_that_is_a_file_is_refused(tmp_path, capsys):
    not_a_dir = tmp_path / "file.txt"
    not_a_dir.write_text("")
    with pytest.raises(SystemExit) as exc:
        main(["compare", "--steps", "1", "--out", str(not_a_dir)])
    assert exc.value.code != 0
    assert "--out" in capsys.readouterr().err


@pytest.mark.parametrize(
    "modules, argv, packages",
    [
        (["sklearn", "sklearn.datasets"], ["--task", "mlp-digits"], ["scikit-learn"]),
        (["tqdm"], ["--task", "quadratic"], ["tqdm"]),
        (
            ["matplotlib", "matplotlib.figure"],
            ["--task", "quadratic", "--out", "x"],
            ["matplotlib"],
        ),
        (
            ["tqdm", "sklearn", "sklearn.datasets", "matplotlib", "matplotlib.figure"],
            ["--out", "x"],
            ["tqdm", "scikit-learn", "matplotlib"],
        ),
    ],
)
def test_missing_optional_packages_are_named_with_the_install(
    modules, argv, packages, monkeypatch, capsys, tmp_path
):
    monkeypatch.chdir(tmp_path)
    for module in modules:
        # None in sys.modules makes `import module` fail, even where an earlier test imported it
        # (so a submodule that the code imports must be listed too).
        monkeypatch.setitem(sys.modules, module, None)
    assert main(["compare", "--steps", "1", *argv]) == 1
    captured = capsys.readouterr()
    assert all(package in captured.err for package in packages), captured.err
    assert 'pip install -e ".[compare]"' in captured.err
    assert captured.out == "" and not (tmp_path / "x").exists()  # failed before any work


def test_python_dash_m_runs():
    repo = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, "-m", "gradtx", "compare", "--task", "quadratic", "--steps", "20"]
        + ["--optimizers", "sgd"],
        capture_output=True,
        text=True,
        cwd=repo,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "sgd" in result.stdout and "steps to 0.001" in result.stdout
    assert "20/20" not in result.stderr  # stderr is a pipe: no progress bar


def test_the_cli_page_documents_every_option_and_task():
    from gradtx.cli import _subparser

    page = (Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text()
    compare = _subparser(build_parser(), "compare")
    options = [s for a in compare._actions for s in a.option_strings if s.startswith("--")]
    missing = [o for o in options if o != "--help" and f"`{o}" not in page]
    assert not missing, f"docs/cli.md does not document {missing}"
    assert all(f"`{task}`" in page for task in TASKS)
