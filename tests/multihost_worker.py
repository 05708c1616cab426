"""One process of a multi-process gradtx run on ``jax.distributed`` (tests/test_multihost.py
starts several on 127.0.0.1, gloo CPU collectives).

Each process holds ``local_devices`` simulated CPU devices; together they form one mesh over
every global device. A small MLP trains with ``clip_by_global_norm`` + AdamW in the ZeRO-style
layout of docs/sharding.md: parameters replicated, the batch and the optimizer state split over
the mesh. With ``phase="train"`` the run starts from step 0 and saves a checkpoint (orbax, from
every process) after ``save_at`` steps; with ``phase="resume"`` it restores that checkpoint
into this topology's layout and continues. Process 0 writes the losses, the final parameters
and the final optimizer state (gathered from every process) to ``out``, an ``.npz``.

Run as ``python -m tests.multihost_worker --process-id I --num-processes N ...`` (``--help``
lists the options); importing it does nothing.
"""

from __future__ import annotations

import os

FEATURES, HIDDEN, OUTPUTS, ROWS, BATCH = 8, 16, 4, 256, 64


def make_params():
    import numpy as np

    rng = np.random.default_rng(0)
    return {
        "w1": rng.normal(size=(FEATURES, HIDDEN)) / np.sqrt(FEATURES),
        "b1": np.zeros(HIDDEN),
        "w2": rng.normal(size=(HIDDEN, OUTPUTS)) / np.sqrt(HIDDEN),
        # 4 entries each: not split over 8 devices, so replicated. With them the parameters
        # have 216 entries, a multiple of 8, so multi_tensor's one buffer is split.
        "b2": np.zeros(OUTPUTS),
        "gain": np.full(OUTPUTS, 0.1),
    }


def make_data():
    import numpy as np

    rng = np.random.default_rng(1)
    x = rng.normal(size=(ROWS, FEATURES))
    y = np.tanh(x @ rng.normal(size=(FEATURES, OUTPUTS))) + 0.1 * rng.normal(size=(ROWS, OUTPUTS))
    return x, y


def make_optimizer(variant: str, shardings=None):
    import gradtx as gx

    opt = gx.chain(gx.clip_by_global_norm(1.0), gx.adamw(learning_rate=3e-2, weight_decay=1e-2))
    if variant == "multi_tensor":
        return gx.multi_tensor(opt, shardings=shardings)
    return opt


def main(config: dict) -> None:
    os.environ["XLA_FLAGS"] = (
        f"--xla_force_host_platform_device_count={config['local_devices']}"
    )
    import jax

    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if config["num_processes"] > 1:
        jax.distributed.initialize(
            coordinator_address=f"127.0.0.1:{config['port']}",  # on a cluster: host 0's address
            num_processes=config["num_processes"],
            process_id=config["process_id"],
            initialization_timeout=config.get("timeout", 60),
        )
    import jax.numpy as jnp
    import numpy as np
    import orbax.checkpoint as ocp
    from jax.experimental import multihost_utils
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    import gradtx as gx

    assert jax.device_count() == config["global_devices"], jax.devices()
    mesh = Mesh(np.array(jax.devices()), ("data",))
    replicated = NamedSharding(mesh, P())
    rows = NamedSharding(mesh, P("data"))

    def split_first_axis(leaf):
        divides = len(leaf.shape) > 0 and leaf.shape[0] % mesh.size == 0
        return NamedSharding(mesh, P("data") if divides else P())

    def global_array(value, sharding):
        value = np.asarray(value)
        return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])

    host_params = make_params()
    param_shardings = jax.tree.map(lambda _: replicated, host_params)
    params = jax.tree.map(global_array, host_params, param_shardings)
    opt = make_optimizer(config["variant"], param_shardings)
    state_shardings = jax.tree.map(split_first_axis, jax.eval_shape(opt.init, params))
    x_all, y_all = make_data()

    def loss_fn(p, x, y):
        h = jnp.tanh(x @ p["w1"] + p["b1"])
        return jnp.mean(((h @ p["w2"] + p["b2"]) * (1 + p["gain"]) - y) ** 2)

    def step(p, s, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(p, x, y)
        updates, s = opt.update(grads, s, p)
        return gx.apply_updates(p, updates), s, loss

    train_step = jax.jit(
        step,
        in_shardings=(param_shardings, state_shardings, rows, rows),
        out_shardings=(param_shardings, state_shardings, replicated),
    )
    checkpoint = os.path.join(config["ckpt_dir"], "step")
    first = 0
    if config["phase"] == "train":
        state = jax.jit(opt.init, out_shardings=state_shardings)(params)
    else:
        first = config["save_at"]
        abstract = {
            "params": jax.tree.map(
                lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                params, param_shardings),
            "opt_state": jax.tree.map(
                lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                jax.eval_shape(opt.init, params), state_shardings),
        }
        with ocp.StandardCheckpointer() as checkpointer:
            restored = checkpointer.restore(checkpoint, abstract)
        params, state = restored["params"], restored["opt_state"]

    losses = []
    for t in range(first, config["steps"]):
        rows_t = (np.arange(BATCH) + t * BATCH) % ROWS
        x = global_array(x_all[rows_t], rows)
        y = global_array(y_all[rows_t], rows)
        params, state, loss = train_step(params, state, x, y)
        losses.append(float(loss))
        if config["phase"] == "train" and t + 1 == config["save_at"]:
            with ocp.StandardCheckpointer() as checkpointer:
                checkpointer.save(checkpoint, {"params": params, "opt_state": state})
                checkpointer.wait_until_finished()

    # What each process holds: the bytes of its addressable shards.
    held = sum(shard.data.nbytes for leaf in jax.tree.leaves(state)
               for shard in leaf.addressable_shards)
    total = sum(leaf.nbytes for leaf in jax.tree.leaves(state))
    gathered = multihost_utils.process_allgather(
        {"params": params, "state": jax.tree.leaves(state)}, tiled=True)
    all_held = multihost_utils.process_allgather(np.asarray([held]))
    if jax.process_index() == 0:
        flat = {f"params/{k}": np.asarray(v) for k, v in gathered["params"].items()}
        flat.update({f"state/{i}": np.asarray(v) for i, v in enumerate(gathered["state"])})
        np.savez(config["out"], losses=np.asarray(losses), state_bytes_per_process=all_held,
                 state_bytes=np.asarray(total), **flat)
    if config["num_processes"] > 1:
        jax.distributed.shutdown()


def parse_args(argv=None) -> dict:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m tests.multihost_worker",
        description="One process of a multi-process gradtx training run (see docs/multihost.md).")
    parser.add_argument("--process-id", type=int, required=True)
    parser.add_argument("--num-processes", type=int, required=True)
    parser.add_argument("--local-devices", type=int, default=4,
                        help="simulated CPU devices in this process")
    parser.add_argument("--global-devices", type=int, default=8,
                        help="the device count every process must see in all")
    parser.add_argument("--port", type=int, default=12355, help="the coordinator's port")
    parser.add_argument("--phase", choices=("train", "resume"), default="train")
    parser.add_argument("--variant", choices=("per_leaf", "multi_tensor"), default="per_leaf")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--save-at", type=int, default=4)
    parser.add_argument("--ckpt-dir", required=True)
    parser.add_argument("--out", required=True, help="where process 0 writes its .npz")
    parser.add_argument("--timeout", type=int, default=120,
                        help="seconds to wait for the other processes to join")
    return vars(parser.parse_args(argv))


if __name__ == "__main__":
    main(parse_args())
