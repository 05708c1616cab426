"""`python -m gradtx compare --task char-transformer --optimizers frontier`: the character-level
task (its text, model and determinism), the frontier group, the Schedule-Free evaluation hook."""

from __future__ import annotations

import inspect
import math
import socket
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx as gx
from gradtx.cli import build_parser, main
from gradtx.compare import chars, presets
from gradtx.compare.tasks import TASKS
from gradtx.compare.train import train
from gradtx.optimizers import registry
from tests.test_cli import _table

FRONTIER = ["adamw", "muon", "lion", "adopt", "ademamix", "mars", "soap", "schedule_free_adamw"]
FRONTIER += ["prodigy", "dadapt_adamw"]


def _no_network(*args, **kwargs):
    raise AssertionError("the char-transformer text must not need the network")


def test_text_is_read_from_installed_stdlib_modules(monkeypatch):
    monkeypatch.setattr(socket, "socket", _no_network)
    monkeypatch.setattr(socket, "create_connection", _no_network)
    text = chars.text()  # not the cached load(): read again, with the network refused
    import difflib

    assert text == inspect.getsource(textwrap) + "\n\n" + inspect.getsource(difflib)
    assert len(text) > 50_000 and text.isascii()
    data = chars.load()
    assert data.size == len(text)
    for module, source in zip((textwrap, difflib), data.sources, strict=True):
        assert Path(source).is_file() and Path(source) == Path(inspect.getsourcefile(module))
    # 90 / 10, the held-out part the end of the text; the codes round-trip.
    assert len(data.held_out) == round(0.1 * len(text))
    assert chars.decode(data.held_out) == text[-len(data.held_out) :]
    assert chars.decode(chars.encode("a\tb\u00e9\n")) == "a?b?\n"  # outside the vocabulary: ?
    assert chars.VOCAB_SIZE == 96 and data.train.max() < 96 and data.train.min() >= 0


def test_task_is_deterministic_given_the_seed():
    a, b, c = (TASKS["char-transformer"].build(seed) for seed in (0, 0, 1))
    assert all(
        np.array_equal(x, y)
        for x, y in zip(*map(jax.tree.leaves, (a.params, b.params)), strict=True)
    )
    assert not np.array_equal(a.params["embed"], c.params["embed"])  # the seed draws the weights
    loss = jax.jit(a.loss_fn)
    for (xa,), (xb,), (xc,), _ in zip(
        a.batches(), b.batches(), c.batches(), range(3), strict=False
    ):
        assert np.array_equal(xa, xb) and not np.array_equal(xa, xc)  # ... and the batches
        assert xa.shape == (chars.BATCH_SIZE, chars.CONTEXT + 1)
        assert float(loss(a.params, (xa,))) == float(loss(b.params, (xb,)))
    assert np.array_equal(next(a.batches())[0], next(a.batches())[0])  # a fresh stream each call


def test_loss_starts_near_ln_vocab_and_adamw_lowers_it():
    task = TASKS["char-transformer"].build(0)
    assert chars.count_params(task.params) == 32_000
    start = float(jax.jit(task.final_loss_fn)(task.params))
    assert abs(start - math.log(96)) < 0.05, start
    resolved = presets.resolve("adamw", "char-transformer")
    run = train(task, "adamw", resolved.build(), resolved.hyperparameters, 25)
    assert abs(run.losses[0] - math.log(96)) < 0.05
    # 25 steps learn the characters' frequencies at least: well below the uniform guess.
    assert max(run.losses[-5:]) < start - 1.0 and run.final_loss < start - 1.0, run.losses
    assert run.window == 20 and run.curve()[-1] == run.final_loss


def test_the_transformer_is_causal():
    params = chars.init(0)
    ids = jnp.asarray(chars.load().train[: 2 * chars.CONTEXT].reshape(2, -1))
    changed = ids.at[:, 10].set((ids[:, 10] + 1) % chars.VOCAB_SIZE)
    logits = jax.jit(chars.logits)
    before, after = logits(params, ids), logits(params, changed)
    assert before.shape == (2, chars.CONTEXT, chars.VOCAB_SIZE)
    np.testing.assert_array_equal(before[:, :10], after[:, :10])  # the past does not see it
    assert not np.allclose(before[:, 10:], after[:, 10:])


def _frontier_arg() -> list[str]:
    return build_parser().parse_args(["compare", "--optimizers", "frontier"]).optimizers


def test_frontier_expands_to_adamw_and_the_frontier_optimizers():
    assert _frontier_arg() == list(FRONTIER)
    assert FRONTIER[0] == "adamw" and "soap" in FRONTIER and "muon" in FRONTIER
    assert set(FRONTIER) <= set(registry.names())


def _compare_help() -> str:
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command")
    return commands.choices["compare"].format_help()


def test_frontier_twice_is_refused(capsys):
    with pytest.raises(SystemExit):
        main(["compare", "--optimizers", "frontier,frontier"])
    assert "--optimizers" in capsys.readouterr().err


def test_frontier_names_have_char_transformer_learning_rates():
    for name in FRONTIER:
        resolved = presets.resolve(name, "char-transformer")
        lr = resolved.hyperparameters["learning_rate"]
        if name in presets.PRESETS:
            assert lr == presets.PRESETS[name].learning_rates["char-transformer"]
        elif name in presets.REGISTRY_PRESETS:
            assert lr == presets.REGISTRY_PRESETS[name].learning_rates["char-transformer"]
        else:  # swept, not the registry's example fallback
            assert lr == presets.REGISTRY_LEARNING_RATES[name]["char-transformer"], name
    muon = presets.resolve("muon", "char-transformer").hyperparameters
    assert (
        muon["adamw_learning_rate"] == presets.PRESETS["adamw"].learning_rates["char-transformer"]
    )


def test_muon_takes_the_blocks_matrices():
    state = presets.resolve("muon", "char-transformer").build().init(chars.init(0))
    buffer = gx.tree_get(state, "momentum_buffer")
    taken = {
        jax.tree_util.keystr(path)
        for path, leaf in jax.tree_util.tree_flatten_with_path(buffer)[0]
        if leaf is not None
    }
    expected = {
        f"['blocks'][{i}]['{part}']['{name}']"
        for i in range(chars.N_LAYERS)
        for part, name in [("attn", "qkv"), ("attn", "proj"), ("mlp", "fc"), ("mlp", "proj")]
    }
    assert taken == expected


def test_schedule_free_is_evaluated_at_its_eval_params():
    assert presets.resolve("schedule_free_adamw", "quadratic").eval_params is (
        gx.schedule_free_eval_params
    )
    assert presets.resolve("adamw", "quadratic").eval_params is None
    task = TASKS["quadratic"].build(0)
    resolved = presets.resolve("schedule_free_adamw", "quadratic")
    plain = train(task, "sf", resolved.build(), resolved.hyperparameters, 5)
    zero = train(task, "sf", resolved.build(), resolved.hyperparameters, 5, lambda s, p: 0 * p)
    assert zero.losses == plain.losses  # training is unchanged; only the evaluation point
    assert zero.final_loss == 0.0 and plain.final_loss > 0  # the quadratic's minimum is at 0


def test_frontier_end_to_end_prints_a_row_per_optimizer(capsys):
    # Every frontier optimizer through the command line on the quadratic (fast to compile):
    # the full --task char-transformer --optimizers frontier run compiles the model's gradient
    # once per optimizer, minutes on two cores, too slow for a test.
    assert main(["compare", "--task", "quadratic", "--optimizers", "frontier", "--steps", "3"]) == 0
    rows = _table(capsys.readouterr().out)
    assert list(rows) == presets.frontier()
    assert all(math.isfinite(float(row["final loss"])) for row in rows.values())


def test_char_transformer_end_to_end(capsys):
    # schedule_free_adamw: the task through the command line, with the evaluation hook.
    argv = ["--task", "char-transformer", "--optimizers", "schedule_free_adamw", "--steps", "3"]
    assert main(["compare", *argv]) == 0
    out = capsys.readouterr().out
    assert "char-level transformer (32,000 params)" in out and "target loss 2.6" in out
    (row,) = _table(out).values()
    assert 3.5 < float(row["final loss"]) < math.log(96) + 0.05 and row["steps to 2.6"] == "-"
