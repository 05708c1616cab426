"""Optimizer state per process on JAX's multi-process runtime.

For 8 simulated CPU devices split into 1 x 8, 2 x 4, 4 x 2 and 8 x 1 processes x devices
(``jax.distributed`` on 127.0.0.1, gloo CPU collectives; 1 x 8 and 2 x 4 with ``--quick``),
places 16M float32 parameters (4 leaves; 1M with ``--quick``) replicated, splits AdamW's state
ZeRO-style over the 8 devices (a jitted ``init`` with ``out_shardings``), runs jitted
``clip_by_global_norm`` + AdamW steps, and reads how many bytes of state each process holds
(its addressable shards) and the median step time.

``python -m benchmarks.multihost [--quick]`` prints the section.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence

from benchmarks import formatting as fmt
from benchmarks.progress import log

TOPOLOGIES = ((1, 8), (2, 4), (4, 2), (8, 1))
QUICK_TOPOLOGIES = ((1, 8), (2, 4))
LEAVES = 4
FULL_SHAPE = (2048, 2048)  # per leaf: 4.2M parameters, 16.8M in all
QUICK_SHAPE = (256, 1024)
REPEATS = 5
TIMEOUT_S = 600


def worker(process_id: int, processes: int, port: int, quick: bool) -> dict:
    """One process: its bytes of parameters and state, and its median step time."""
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if processes > 1:
        jax.distributed.initialize(f"127.0.0.1:{port}", processes, process_id,
                                   initialization_timeout=TIMEOUT_S // 2)
    import numpy as np
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    import gradtx as gx

    mesh = Mesh(np.array(jax.devices()), ("data",))
    replicated = NamedSharding(mesh, P())

    def split_first_axis(leaf):
        divides = leaf.ndim > 0 and leaf.shape[0] % mesh.size == 0
        return NamedSharding(mesh, P("data") if divides else P())

    shape = QUICK_SHAPE if quick else FULL_SHAPE
    host = {f"w{i}": np.full(shape, 0.01 * (i + 1), np.float32) for i in range(LEAVES)}
    params = {k: jax.make_array_from_callback(v.shape, replicated, lambda idx, v=v: v[idx])
              for k, v in host.items()}
    opt = gx.chain(gx.clip_by_global_norm(1.0), gx.adamw(1e-3))
    state_shardings = jax.tree.map(split_first_axis, jax.eval_shape(opt.init, params))
    state = jax.jit(opt.init, out_shardings=state_shardings)(params)
    param_shardings = jax.tree.map(lambda _: replicated, params)

    def step(p, s):
        grads = jax.tree.map(lambda x: x * 0.5 - 0.01, p)
        updates, s = opt.update(grads, s, p)
        return gx.apply_updates(p, updates), s

    train_step = jax.jit(step, in_shardings=(param_shardings, state_shardings),
                         out_shardings=(param_shardings, state_shardings), donate_argnums=(0, 1))
    params, state = train_step(params, state)
    jax.block_until_ready(state)
    times = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        params, state = train_step(params, state)
        jax.block_until_ready(state)
        times.append(time.perf_counter() - t0)

    def held(tree) -> int:
        return sum(s.data.nbytes for leaf in jax.tree.leaves(tree) for s in leaf.addressable_shards)

    result = {
        "processes": jax.process_count(), "devices": jax.device_count(),
        "local_devices": jax.local_device_count(),
        "params": sum(leaf.size for leaf in jax.tree.leaves(params)),
        "state_bytes": held(state), "param_bytes": held(params),
        "state_total": sum(leaf.nbytes for leaf in jax.tree.leaves(state)),
        "step_s": sorted(times)[len(times) // 2],
    }
    if processes > 1:
        jax.distributed.shutdown()
    return result


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(processes: int, local_devices: int, quick: bool) -> dict:
    """Starts the processes of one topology, waits for them (bounded), returns process 0's
    result with every process's state bytes."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={local_devices}"
    env["JAX_PLATFORMS"] = "cpu"
    port = _free_port()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "benchmarks.multihost", "--worker", str(pid), str(processes),
             str(port)] + (["--quick"] if quick else []),
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for pid in range(processes)
    ]
    outputs = []
    try:
        for p in procs:
            outputs.append(p.communicate(timeout=TIMEOUT_S))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    if any(p.returncode != 0 for p in procs):
        errors = "\n".join(err[-2000:] for _, err in outputs)
        raise RuntimeError(f"benchmarks.multihost: {processes} x {local_devices} failed:\n"
                           + errors)
    results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    first = dict(results[0])
    first["state_bytes_per_process"] = [r["state_bytes"] for r in results]
    return first


def render(results: Sequence[dict], quick: bool, seconds: float) -> str:
    one = results[0]
    rows = [[
        f"{r['processes']} x {r['local_devices']}",
        fmt.mb(max(r["state_bytes_per_process"])),
        f"{max(r['state_bytes_per_process']) / one['state_bytes']:.3f}",
        fmt.mb(r["param_bytes"]),
        f"{r['step_s'] * 1e3:.1f}",
    ] for r in results]
    return "\n".join([
        "## Optimizer state per process (jax.distributed)",
        "",
        f"`clip_by_global_norm` + AdamW on {one['params'] / 1e6:.1f}M float32 parameters "
        f"({LEAVES} leaves, replicated) with the state split ZeRO-style over 8 simulated CPU "
        "devices, as processes x devices per process (`jax.distributed` on 127.0.0.1, gloo "
        "collectives; all processes share this machine's cores, so the step times show the "
        "collectives' overhead, not a cluster's speed). State and parameter bytes held by one "
        f"process (MB, its addressable shards); median of {REPEATS} jitted, donated steps.",
        "",
        fmt.table(["Processes x devices", "Adam state / process", "vs 1 process",
                   "Params / process", "Step (ms)"], rows),
        "",
        f"The whole state is {fmt.mb(one['state_total'])} MB; each process holds its devices' "
        "shares of it. The parameters are replicated on every device, so a process holds one "
        "copy per local device.",
        "",
        f"*{'Quick run (1M parameters). ' if quick else ''}Measured in {seconds:.0f} s.*",
        "",
    ])


def run(quick: bool) -> str:
    """The Markdown section "Optimizer state per process (jax.distributed)"."""
    t0 = time.perf_counter()
    results = []
    for processes, local in QUICK_TOPOLOGIES if quick else TOPOLOGIES:
        log(f"multi-process state: {processes} process(es) x {local} device(s)")
        results.append(measure(processes, local, quick))
    return render(results, quick, time.perf_counter() - t0)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.multihost", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1M parameters, 2 topologies")
    parser.add_argument("--worker", nargs=3, type=int, metavar=("ID", "PROCESSES", "PORT"),
                        help="(internal) be one process of a run and print JSON")
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(*args.worker, quick=args.quick)))
    else:
        print(run(args.quick))


if __name__ == "__main__":
    main()
