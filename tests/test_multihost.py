"""gradtx on JAX's multi-process runtime: processes started here on 127.0.0.1 with
``jax.distributed.initialize`` and gloo CPU collectives (tests/multihost_worker.py is one
process), each with simulated CPU devices, train the same MLP with clip_by_global_norm + AdamW,
the optimizer state split ZeRO-style over all 8 global devices.

* 2 processes x 4 devices train as 1 process x 8 devices does (losses, parameters, state);
* orbax saves the split state from both processes mid-run, and the run restored into another
  topology (1 x 8, and 4 x 2) continues exactly as the uninterrupted one;
* the multi-tensor path (one buffer for the replicated leaves) does the same on 2 x 4;
* each process holds its share of the state, not all of it.

Every wait is bounded; a process that fails or hangs takes the others down with it, and the
failure shows each process's output.
"""

from __future__ import annotations

import os
import pathlib
import socket
import subprocess
import sys

import numpy as np
import pytest

# Every test here shares one expensive module fixture: one worker runs them all, so that
# it is built once (otherwise each xdist worker that gets one of them builds its own).
pytestmark = pytest.mark.xdist_group("multihost")

ROOT = pathlib.Path(__file__).resolve().parents[1]
STEPS, SAVE_AT = 8, 4
TIMEOUT_S = 300  # for a whole group of processes, start to finish


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_group(num_processes: int, local_devices: int, tmp: pathlib.Path, name: str,
              **config) -> dict[str, np.ndarray]:
    """Starts ``num_processes`` workers, waits for all of them (at most TIMEOUT_S), and
    returns what process 0 wrote."""
    out = tmp / f"{name}.npz"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    procs, logs = [], []
    try:
        for pid in range(num_processes):
            cfg = dict(dict(global_devices=8, timeout=TIMEOUT_S // 2), **config,
                       process_id=pid, num_processes=num_processes,
                       local_devices=local_devices, port=port, out=str(out))
            log = open(tmp / f"{name}-{pid}.log", "w+")  # noqa: SIM115 (closed below)
            logs.append(log)
            flags = [f"--{k.replace('_', '-')}={v}" for k, v in cfg.items()]
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "tests.multihost_worker", *flags],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))
        for p in procs:
            p.wait(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pass
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=30)
        outputs = []
        for log in logs:
            log.seek(0)
            outputs.append(log.read())
            log.close()
    codes = [p.returncode for p in procs]
    if any(c != 0 for c in codes) or not out.exists():
        tails = "\n".join(f"--- process {i} (exit {c}):\n{o[-3000:]}"
                          for i, (c, o) in enumerate(zip(codes, outputs, strict=True)))
        pytest.fail(f"{name}: {num_processes} x {local_devices} run failed\n{tails}")
    with np.load(out) as data:
        return dict(data)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("multihost")
    base = dict(steps=STEPS, save_at=SAVE_AT)
    result = {}
    for variant in ("per_leaf", "multi_tensor"):
        ckpt = tmp / f"{variant}-ckpt-2x4"
        ckpt_ref = tmp / f"{variant}-ckpt-1x8"
        result[variant, "1x8"] = run_group(1, 8, tmp, f"{variant}-1x8", phase="train",
                                           variant=variant, ckpt_dir=str(ckpt_ref), **base)
        result[variant, "2x4"] = run_group(2, 4, tmp, f"{variant}-2x4", phase="train",
                                           variant=variant, ckpt_dir=str(ckpt), **base)
        if variant == "per_leaf":
            result[variant, "2x4->1x8"] = run_group(1, 8, tmp, "resume-1x8", phase="resume",
                                                    variant=variant, ckpt_dir=str(ckpt), **base)
            result[variant, "2x4->4x2"] = run_group(4, 2, tmp, "resume-4x2", phase="resume",
                                                    variant=variant, ckpt_dir=str(ckpt), **base)
    return result


def assert_same_run(got, want, what, first_step=0):
    """Losses from ``first_step`` on, final parameters and state: equal to rtol 1e-12 (the
    gradient's mean over the batch is all-reduced by gloo across processes and by XLA within
    one, which may add in another order)."""
    np.testing.assert_allclose(got["losses"], want["losses"][first_step:], rtol=1e-12,
                               err_msg=f"{what}: losses")
    keys = sorted(k for k in want if k.startswith(("params/", "state/")))
    assert sorted(k for k in got if k.startswith(("params/", "state/"))) == keys
    for k in keys:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-12, atol=1e-15,
                                   err_msg=f"{what}: {k}")


@pytest.mark.parametrize("variant", ["per_leaf", "multi_tensor"])
def test_two_processes_train_as_one(runs, variant):
    one, two = runs[variant, "1x8"], runs[variant, "2x4"]
    assert len(two["losses"]) == STEPS
    assert two["losses"][-1] < 0.8 * two["losses"][0], "the model should learn"
    assert_same_run(two, one, f"{variant}: 2 x 4 against 1 x 8")


@pytest.mark.parametrize("topology", ["1x8", "4x2"])
def test_a_checkpoint_from_two_processes_resumes_in_another_topology(runs, topology):
    resumed, whole = runs["per_leaf", f"2x4->{topology}"], runs["per_leaf", "2x4"]
    assert len(resumed["losses"]) == STEPS - SAVE_AT
    assert_same_run(resumed, whole, f"2 x 4 saved, {topology} resumed", first_step=SAVE_AT)


def expected_bytes(run, processes: int) -> int:
    """What each of ``processes`` processes holds of ``run``'s state, by the layout's rule:
    a leaf whose first axis divides over the 8 devices is split (1/processes of it per
    process), any other is replicated (a copy on each of the process's 8/processes devices)."""
    held = 0
    for key, leaf in run.items():
        if key.startswith("state/"):
            split = leaf.ndim > 0 and leaf.shape[0] % 8 == 0
            held += leaf.nbytes // processes if split else leaf.nbytes * (8 // processes)
    return held


@pytest.mark.parametrize("variant", ["per_leaf", "multi_tensor"])
def test_each_process_holds_its_share_of_the_state(runs, variant):
    """Each process holds its share of every split leaf and, on each of its devices, a copy of
    the few replicated ones (scalars, the 4-entry leaves); multi_tensor's buffer of the
    replicated parameters (216 entries) is split too."""
    for topology, processes in (("1x8", 1), ("2x4", 2), ("2x4->4x2", 4)):
        if (variant, topology) not in runs:
            continue
        run = runs[variant, topology]
        held = run["state_bytes_per_process"].ravel()
        assert list(held) == [expected_bytes(run, processes)] * processes, topology
    one, two = (runs[variant, t]["state_bytes_per_process"].ravel() for t in ("1x8", "2x4"))
    assert two[0] < 0.6 * one[0], "two processes should each hold about half"


def test_a_failing_process_is_reported_with_its_output(tmp_path):
    """A worker that fails (here: the device count is not what it expects) ends the group
    and the failure shows each process's exit code and output."""
    with pytest.raises(pytest.fail.Exception) as failure:
        run_group(2, 4, tmp_path, "broken", phase="train", variant="per_leaf", steps=1,
                  save_at=1, ckpt_dir=str(tmp_path / "ckpt"), global_devices=9)
    message = str(failure.value)
    assert "process 0 (exit 1)" in message and "process 1 (exit 1)" in message
    assert "AssertionError" in message
