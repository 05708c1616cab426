"""Optimizer states survive checkpoints: ``flax.serialization`` (msgpack bytes and state dicts)
and Orbax.

A run that is saved mid-training, restored into a freshly initialised template and continued
must be bitwise identical to the run that was never interrupted. That holds only if the
round trip brings back every leaf with its exact value, dtype and shape (a float64
hyperparameter restored as float32, or a weakly typed scalar, would change the compiled step)
and the tree structure that the optimizer's ``update`` expects (NamedTuples, dicts of groups,
``None`` leaves of masked groups, empty states).
"""

from __future__ import annotations

import functools
import pathlib
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import serialization
from flax.training import train_state

import gradtx as gx
from tests import digits_cnn

STEPS_BEFORE = 4  # steps before the checkpoint
STEPS_AFTER = 4  # steps after it, in both runs
BATCH = 64
NEW_LR = 3e-4  # set with set_hyperparam before saving


def _is_vector(x) -> str:
    return "no_decay" if x.ndim <= 1 else "decay"


def _labels(params):
    return jax.tree_util.tree_map(_is_vector, params)


def _scheduled_masked_adamw():
    """AdamW on kernels, Adam on biases, each on its own warm-up + cosine schedule, after
    clipping: a state with dict labels, ``None`` leaves and boolean ``scheduled`` flags."""
    schedule = gx.warmup_cosine_decay_schedule(0.0, 3e-3, warmup_steps=3, decay_steps=20)
    return gx.chain(
        gx.clip_by_global_norm(1.0),
        gx.multi_transform(
            {
                "decay": gx.adamw(learning_rate=schedule, weight_decay=1e-2),
                "no_decay": gx.adam(learning_rate=schedule),
            },
            _labels,
        ),
    )


FACTORIES = {
    "adam": lambda: gx.adam(learning_rate=1e-3),
    "sgd_momentum": lambda: gx.sgd(learning_rate=0.05, momentum=0.9),
    "adafactor": gx.adafactor,  # the paper's defaults: a relative-step schedule, factored stats
    "scheduled_masked_adamw": _scheduled_masked_adamw,
    # One buffer per dtype instead of per leaf; and one per label inside multi_transform.
    "multi_tensor_clip_adamw": lambda: gx.multi_tensor(
        gx.chain(gx.clip_by_global_norm(1.0), gx.adamw(learning_rate=1e-3, weight_decay=1e-2))
    ),
    "multi_transform_of_multi_tensors": lambda: gx.multi_transform(
        {"decay": gx.multi_tensor(gx.adamw(learning_rate=1e-3, weight_decay=1e-2)),
         "no_decay": gx.multi_tensor(gx.adam(learning_rate=1e-3))},
        _labels,
    ),
}
# The optimizer whose learning rate is changed with set_hyperparam before saving, and the
# qualified name of that learning rate.
CHANGED_LR = {"scheduled_masked_adamw": "decay/learning_rate", "adafactor": "learning_rate",
              "multi_tensor_clip_adamw": "learning_rate"}


@functools.cache
def _tx(name: str) -> gx.GradientTransformation:
    # One transformation object per optimizer, so that the jitted step (which takes it as
    # static data inside the TrainState) compiles once per optimizer, not once per test.
    return FACTORIES[name]()


def _fresh_state(name: str) -> train_state.TrainState:
    return train_state.TrainState.create(apply_fn=None, params=digits_cnn.init_cnn(0), tx=_tx(name))


def _batches():
    data = digits_cnn.load_digits()
    idx = list(digits_cnn.minibatches(len(data.y_train), BATCH, epochs=1, seed=0))[
        : STEPS_BEFORE + STEPS_AFTER
    ]
    return [(data.x_train[i], data.y_train[i]) for i in idx]


def _run(state, batches):
    for x, y in batches:
        state, _ = digits_cnn.train_state_step(state, x, y)
    return state


def _checkpointed(name: str):
    """``(saved, template)``: the TrainState after STEPS_BEFORE steps (with the learning rate
    changed where CHANGED_LR says) and a freshly initialised TrainState to restore into."""
    saved = _run(_fresh_state(name), _batches()[:STEPS_BEFORE])
    if name in CHANGED_LR:
        changed = gx.set_hyperparam(saved.opt_state, CHANGED_LR[name], NEW_LR)
        saved = saved.replace(opt_state=changed)
    return saved, _fresh_state(name)


def _as_checkpoint(state: train_state.TrainState) -> dict:
    return {"step": state.step, "params": state.params, "opt_state": state.opt_state}


def _round_trip_bytes(saved, template, tmp_path):
    del tmp_path
    restored = serialization.from_bytes(
        _as_checkpoint(template), serialization.to_bytes(_as_checkpoint(saved))
    )
    return template.replace(**restored)


def _only_dicts_and_arrays(tree) -> bool:
    if isinstance(tree, dict):
        return all(_only_dicts_and_arrays(v) for v in tree.values())
    return tree is None or isinstance(tree, (np.ndarray, jax.Array))


def _round_trip_state_dict(saved, template, tmp_path):
    del tmp_path
    state_dict = serialization.to_state_dict(_as_checkpoint(saved))
    # A state dict holds only dicts and arrays (NamedTuples and tuples become dicts keyed by
    # field name or position); from_state_dict rebuilds the containers from the template.
    assert _only_dicts_and_arrays(state_dict["opt_state"])
    restored = serialization.from_state_dict(_as_checkpoint(template), state_dict)
    return template.replace(**restored)


def _round_trip_orbax(saved, template, tmp_path):
    path = tmp_path / "checkpoint"
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(path, _as_checkpoint(saved))
        checkpointer.wait_until_finished()
        # Restore against shapes and dtypes only, as one does after a restart.
        abstract = jax.tree_util.tree_map(
            ocp.utils.to_shape_dtype_struct, _as_checkpoint(template)
        )
        restored = checkpointer.restore(path, abstract)
    return template.replace(**restored)


ROUND_TRIPS = {
    "flax_bytes": _round_trip_bytes,
    "flax_state_dict": _round_trip_state_dict,
    "orbax": _round_trip_orbax,
}


def _assert_bitwise_equal(actual, expected):
    assert jax.tree_util.tree_structure(actual) == jax.tree_util.tree_structure(expected)
    paths_and_leaves = jax.tree_util.tree_leaves_with_path(expected)
    for (path, want), got in zip(paths_and_leaves, jax.tree_util.tree_leaves(actual), strict=True):
        where = jax.tree_util.keystr(path)
        assert np.shape(got) == np.shape(want), where
        assert jnp.result_type(got) == jnp.result_type(want), where
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want), err_msg=where)


@pytest.mark.parametrize("method", ROUND_TRIPS)
@pytest.mark.parametrize("name", FACTORIES)
def test_resuming_from_a_checkpoint_is_bitwise_identical(name, method, tmp_path):
    saved, template = _checkpointed(name)
    # The checkpoint holds more than a fresh state would: losing it would show.
    saved_leaves = jax.tree_util.tree_leaves(saved.opt_state)
    fresh_leaves = jax.tree_util.tree_leaves(template.opt_state)
    assert any(not np.array_equal(a, b) for a, b in zip(saved_leaves, fresh_leaves, strict=True))
    restored = ROUND_TRIPS[method](saved, template, tmp_path)

    # The restored state is the saved one, leaf for leaf (values, dtypes, structure).
    _assert_bitwise_equal(_as_checkpoint(restored), _as_checkpoint(saved))
    if name in CHANGED_LR:
        lr = gx.get_hyperparam(restored.opt_state, CHANGED_LR[name])
        np.testing.assert_array_equal(lr, np.asarray(NEW_LR, dtype=lr.dtype))

    # Continuing from it gives the uninterrupted run, bit for bit.
    after = _batches()[STEPS_BEFORE:]
    _assert_bitwise_equal(_as_checkpoint(_run(restored, after)), _as_checkpoint(_run(saved, after)))


@pytest.mark.parametrize("method", ROUND_TRIPS)
def test_a_learning_rate_set_before_saving_stays_set_after_restoring(method, tmp_path):
    name = "scheduled_masked_adamw"
    saved, template = _checkpointed(name)
    state = _run(ROUND_TRIPS[method](saved, template, tmp_path), _batches()[STEPS_BEFORE:])

    schedule = gx.warmup_cosine_decay_schedule(0.0, 3e-3, warmup_steps=3, decay_steps=20)
    last = STEPS_BEFORE + STEPS_AFTER - 1  # the count at which the latest step evaluated it
    # The changed group keeps the constant; the other group still follows its schedule.
    assert float(gx.get_hyperparam(state.opt_state, "decay/learning_rate")) == NEW_LR
    np.testing.assert_allclose(
        gx.get_hyperparam(state.opt_state, "no_decay/learning_rate"), schedule(last), rtol=1e-12
    )
    assert float(schedule(last)) != NEW_LR


# Restoring into a template of another shape or another optimizer.

SMALL = {"w": jnp.ones((3, 4), jnp.float32)}
LARGE = {"w": jnp.ones((4, 4), jnp.float32)}


def _adam_state_after_one_step(params):
    tx = gx.adam(learning_rate=1e-3)
    _, state = tx.update(params, tx.init(params), params)
    return tx, state


def test_flax_restores_other_shapes_silently_and_the_first_update_names_them():
    tx, state = _adam_state_after_one_step(SMALL)
    restored = serialization.from_bytes(tx.init(LARGE), serialization.to_bytes(state))
    # flax.serialization takes the shapes from the bytes, not from the template (flax 0.12):
    # the (3, 4) moments come back as they were saved, into a state meant for (4, 4) params.
    # gradtx notices at the first update, naming the leaf and both shapes.
    with pytest.raises(ValueError, match=r"\['w'\].*\(4, 4\).*\(3, 4\)"):
        tx.update(LARGE, restored, LARGE)
    # Also inside a jitted step, where the check runs while tracing.
    with pytest.raises(ValueError, match=r"\['w'\].*\(4, 4\).*\(3, 4\)"):
        jax.jit(tx.update)(LARGE, restored, LARGE)


# Orbax's failures are provoked in a fresh interpreter. When a restore fails on one leaf,
# the reads of the other leaves are still in flight; when a save fails, its background thread
# goes on and fails too. Their errors are then formatted in those threads while the main
# thread goes on, which here (CPython 3.11.7) now and then crashed the formatting itself:
# "SystemError: AST constructor recursion depth mismatch", failing the pytest session. A
# subprocess keeps that out of the session; it costs about a second and a half.
_ORBAX_FAILURES = """
import pathlib
import sys

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
import orbax.checkpoint as ocp

import gradtx as gx

root = pathlib.Path(sys.argv[1])
small = {"w": jnp.ones((3, 4), jnp.float32), "b": jnp.ones(4, jnp.float32)}
large = {"w": jnp.ones((4, 4), jnp.float32), "b": jnp.ones(4, jnp.float32)}


def attempt(name, action):
    try:
        action()
    except Exception as error:
        print(name, "raised", type(error).__name__, str(error).replace(chr(10), " "))
    else:
        print(name, "worked")


with ocp.StandardCheckpointer() as checkpointer:
    tx = gx.adam(learning_rate=1e-3)
    checkpointer.save(root / "adam", tx.init(small))
    checkpointer.wait_until_finished()
    abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, tx.init(large))
    attempt("other_shape", lambda: checkpointer.restore(root / "adam", abstract))
"""


@pytest.fixture(scope="module")
def orbax_failures(tmp_path_factory) -> dict[str, str]:
    """What each failing Orbax call in _ORBAX_FAILURES printed, keyed by its name."""
    directory = tmp_path_factory.mktemp("orbax_failures")
    result = subprocess.run(
        [sys.executable, "-c", _ORBAX_FAILURES, str(directory)],
        capture_output=True,
        text=True,
        cwd=pathlib.Path(__file__).parents[1],
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line.split(" ", 1) for line in result.stdout.splitlines() if " " in line]
    return {name: rest for name, rest in lines}


def test_orbax_refuses_other_shapes(orbax_failures):
    # A ValueError with both shapes, but not which leaf (orbax 0.12).
    assert re.match(r"raised ValueError .*\(4, 4\).*\(3, 4\)", orbax_failures["other_shape"])


def test_flax_refuses_another_optimizers_state():
    _, adam_state = _adam_state_after_one_step(SMALL)
    data = serialization.to_bytes(adam_state)
    sgd_template = gx.sgd(learning_rate=0.1, momentum=0.9).init(SMALL)
    # The hyperparameters differ first: SGD has momentum and dampening, Adam has b1, b2, eps.
    with pytest.raises(ValueError, match=r"keys do not match.*hyperparams"):
        serialization.from_bytes(sgd_template, data)
    # AMSGrad keeps one more statistic than Adam: a state of another length.
    with pytest.raises(ValueError, match=r"do not match.*inner_state"):
        serialization.from_bytes(gx.adam(learning_rate=1e-3, amsgrad=True).init(SMALL), data)


def test_orbax_refuses_another_optimizers_state(tmp_path):
    _, adam_state = _adam_state_after_one_step(SMALL)
    sgd_template = gx.sgd(learning_rate=0.1, momentum=0.9).init(SMALL)
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(tmp_path / "adam", adam_state)
        checkpointer.wait_until_finished()
        abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, sgd_template)
        with pytest.raises(ValueError, match=r"tree structures do not match(.|\n)*momentum"):
            checkpointer.restore(tmp_path / "adam", abstract)
