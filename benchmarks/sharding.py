"""Sharded optimizer state: Adam's state bytes per device as the number of devices grows.

For 1, 2, 4 and 8 simulated CPU devices (one process each: XLA fixes the device count when JAX
starts), places 64M float32 parameters (4 leaves; 1M with ``--quick``) on a 1-D mesh in two
layouts, runs one jitted, donated Adam step, and reads how many bytes of parameters and state
device 0 holds afterwards:

* ZeRO-style: parameters replicated, state split along its first axis (a jitted ``init`` with
  ``out_shardings``);
* fully sharded: parameters split along their first axis, and the state with them (a plain
  jitted ``init``, which gives every moment its parameter's sharding).

``python -m benchmarks.sharding [--quick]`` prints the section.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence

from benchmarks import formatting as fmt
from benchmarks.progress import log

DEVICE_COUNTS = (1, 2, 4, 8)
LEAVES = 4
FULL_SHAPE = (4096, 4096)  # per leaf: 16.8M parameters, 67.1M in all
QUICK_SHAPE = (256, 1024)  # 262K per leaf, 1.05M in all
ADAM_STATE_BYTES_PER_PARAM = 8  # two float32 moments


def worker(quick: bool) -> dict:
    """In a process whose JAX sees the wanted number of devices: bytes on device 0 per layout."""
    import jax
    import numpy as np
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    import gradtx as gx

    mesh = Mesh(np.array(jax.devices()), ("data",))
    replicated = NamedSharding(mesh, P())

    def split_first_axis(leaf):
        divides = leaf.ndim > 0 and leaf.shape[0] % mesh.size == 0
        return NamedSharding(mesh, P("data") if divides else P())

    def on_device0(tree) -> int:
        return sum(leaf.addressable_shards[0].data.nbytes for leaf in jax.tree.leaves(tree))

    def step(params, state, grads):
        updates, state = opt.update(grads, state, params)
        return gx.apply_updates(params, updates), state

    shape = QUICK_SHAPE if quick else FULL_SHAPE
    rng = np.random.default_rng(0)
    host = {f"w{i}": rng.standard_normal(shape, dtype=np.float32) for i in range(LEAVES)}
    host_grads = {k: rng.standard_normal(shape, dtype=np.float32) for k in host}
    opt = gx.adam(1e-3)
    out = {"devices": jax.device_count(), "params": sum(x.size for x in host.values())}
    for layout in ("zero", "fsdp"):
        param_sh = (replicated if layout == "zero"
                    else jax.tree.map(split_first_axis, host))
        params = jax.device_put(host, param_sh)
        grads = jax.device_put(host_grads, param_sh)
        if layout == "zero":
            state_sh = jax.tree.map(split_first_axis, jax.eval_shape(opt.init, params))
            state = jax.jit(opt.init, out_shardings=state_sh)(params)
        else:
            state = jax.jit(opt.init)(params)
            state_sh = jax.tree.map(lambda x: x.sharding, state)
        compiled = jax.jit(
            step, in_shardings=(param_sh, state_sh, param_sh),
            out_shardings=(param_sh, state_sh), donate_argnums=(0, 1),
        ).lower(params, state, grads).compile()
        params, state = compiled(params, state, grads)
        jax.block_until_ready(state)
        stats = compiled.memory_analysis()
        out[layout] = {
            "state_bytes": on_device0(state),
            "param_bytes": on_device0(params),
            # XLA's buffer assignment for one device's program: what the step holds at its peak.
            "step_peak_bytes": None if stats is None else (
                stats.argument_size_in_bytes + stats.output_size_in_bytes
                - stats.alias_size_in_bytes + stats.temp_size_in_bytes),
        }
        del params, state, grads
    return out


def measure(devices: int, quick: bool) -> dict:
    """Runs :func:`worker` in a subprocess with ``devices`` simulated CPU devices."""
    env = dict(os.environ)
    env["XLA_FLAGS"] = (
        env.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={devices}"
    ).strip()
    env["JAX_PLATFORMS"] = "cpu"
    args = [sys.executable, "-m", "benchmarks.sharding", "--worker"]
    args += ["--quick"] if quick else []
    proc = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmarks.sharding worker on {devices} devices failed:\n"
                           + proc.stderr[-4000:])
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if result["devices"] != devices:
        raise RuntimeError(f"asked for {devices} devices, JAX saw {result['devices']}")
    return result


def render(results: Sequence[dict], quick: bool, seconds: float) -> str:
    one = results[0]
    params = one["params"]
    rows = []
    for r in results:
        zero, fsdp = r["zero"], r["fsdp"]
        rows.append([
            str(r["devices"]),
            fmt.mb(zero["state_bytes"]),
            f"{zero['state_bytes'] / one['zero']['state_bytes']:.3f}",
            fmt.mb(zero["param_bytes"] + zero["state_bytes"]),
            fmt.mb(fsdp["param_bytes"] + fsdp["state_bytes"]),
            fmt.mb(zero["step_peak_bytes"]),
            fmt.mb(fsdp["step_peak_bytes"]),
        ])
    last = results[-1]
    fall = last["zero"]["state_bytes"] / one["zero"]["state_bytes"]
    same = all(r["zero"]["state_bytes"] == r["fsdp"]["state_bytes"] for r in results)
    ideal = ADAM_STATE_BYTES_PER_PARAM * params
    return "\n".join([
        "## Sharded optimizer state",
        "",
        f"Adam on {params / 1e6:.1f}M float32 parameters ({LEAVES} leaves), on 1 to "
        f"{last['devices']} simulated CPU devices (one process per device count; "
        "`--xla_force_host_platform_device_count`), after one jitted, donated step. Bytes held "
        "by device 0 (MB). ZeRO-style: parameters replicated, state split along its first axis "
        "by a jitted `init` with `out_shardings`. Fully sharded: parameters split along their "
        "first axis; a plain jitted `init` splits the state with them. The step peak is XLA's "
        "buffer assignment for one device's program (arguments + outputs − donated + "
        "temporaries), gradients included.",
        "",
        fmt.table(
            ["Devices", "Adam state / device", "vs 1 device", "Params + state / device, ZeRO",
             "Params + state / device, fully sharded", "Step peak / device, ZeRO",
             "Step peak / device, fully sharded"],
            rows,
        ),
        "",
        f"On one device Adam's state is {fmt.mb(one['zero']['state_bytes'])} MB "
        f"({ADAM_STATE_BYTES_PER_PARAM} bytes per parameter: {fmt.mb(ideal)} MB, plus scalars); "
        f"on {last['devices']} devices each holds {fall:.3f} of it (ideal "
        f"{1 / last['devices']:.3f}). The state per device is "
        f"{'the same' if same else 'not the same'} in both layouts.",
        "",
        f"*{'Quick run (1M parameters). ' if quick else ''}Measured in {seconds:.0f} s.*",
        "",
    ])


def run(quick: bool) -> str:
    """The Markdown section "Sharded optimizer state"."""
    t0 = time.perf_counter()
    results = []
    for devices in DEVICE_COUNTS:
        log(f"sharded state: Adam on {devices} simulated device(s)")
        results.append(measure(devices, quick))
    return render(results, quick, time.perf_counter() - t0)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sharding", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1M parameters: a smoke run")
    parser.add_argument("--worker", action="store_true",
                        help="(internal) measure in this process and print JSON")
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.quick)))
    else:
        print(run(args.quick))


if __name__ == "__main__":
    main()
