"""Sharding checks, run in a process of their own: ``python -m tests.sharding_checks OUT.json``.

XLA simulates several CPU devices only when told so before JAX starts, and the pytest process has
started JAX with one device, so tests/test_sharding.py runs this module in a subprocess with 8
devices and asserts on the facts it writes to ``OUT.json``. The checks here only measure (which
leaves keep their parameter's sharding, which collectives a compiled step contains, how far a
sharded run is from a single-device one); the test decides what must hold, so that one failure
does not hide the others.

The meshes: a 1-D mesh (``data``: 8) and a 2-D mesh (``data``: 4, ``model``: 2), each with
``Auto`` axes and with ``Explicit`` axes (``jax.make_mesh``'s default). Every registry entry's
init is checked on all four and its step on the two with Auto axes; with Explicit axes the steps
of SGD and Adam with and without clipping. Run alone, it prints the JSON; it takes about 40 s of
CPU time.
"""

from __future__ import annotations

import os
import sys

DEVICES = 8

if __name__ == "__main__":  # before JAX starts (an import leaves the environment alone)
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={DEVICES}"
    ).strip()
    os.environ["JAX_PLATFORMS"] = "cpu"

import functools  # noqa: E402
import json  # noqa: E402
import pathlib  # noqa: E402
import re  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from collections.abc import Callable  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import AxisType, NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

import gradtx as gx  # noqa: E402
from gradtx.optimizers.registry import OPTIMIZERS  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
STEPS = 3
SHAPES = {"w": (16, 8), "v": (16, 8), "b": (16,), "r": (8, 4), "s": ()}
# Two leaves of one shape sharded differently ("w", "v"), a replicated or partly replicated
# leaf ("r") and a scalar, on each mesh.
LAYOUTS = {
    "data8": ((8,), ("data",), {
        "w": P("data", None), "v": P(None, "data"), "b": P("data"), "r": P(), "s": P(),
    }),
    "data4_model2": ((4, 2), ("data", "model"), {
        "w": P("data", "model"), "v": P("model", "data"), "b": P(("data", "model")),
        "r": P(None, "model"), "s": P(),
    }),
}
# Every leaf split over the whole 2-D mesh along its first axis (fully sharded data parallel).
FSDP_SPECS = {k: P(("data", "model")) if SHAPES[k] else P() for k in SHAPES}
COLLECTIVES = ("all-gather", "all-reduce", "all-to-all", "collective-permute", "reduce-scatter")
_COLLECTIVE = re.compile(r"=\s(.*?)\s(" + "|".join(COLLECTIVES) + r")(?:-start)?\(")


# --- building blocks -------------------------------------------------------------------------


def make_mesh(shape, names, axis_type) -> jax.sharding.Mesh:
    return jax.make_mesh(shape, names, axis_types=(axis_type,) * len(names))


def host_params(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: rng.normal(size=s).astype(np.float32) for k, s in SHAPES.items()}


def host_grads(seed: int = 1) -> list[dict[str, np.ndarray]]:
    return [host_params(seed + t) for t in range(STEPS)]


def shardings(mesh, specs) -> dict[str, NamedSharding]:
    return {k: NamedSharding(mesh, spec) for k, spec in specs.items()}


def like(opt_key: str):
    """The registry entry's ``params_like`` (Muon: every leaf as a matrix), for the params, the
    gradients and the specs: a leaf given leading axes of size 1 keeps its split axes."""
    reshape = PARAMS_LIKE.get(opt_key, lambda tree: tree)

    def specs_like(specs):
        shapes = reshape({k: np.zeros(s) for k, s in SHAPES.items()})
        return {k: P(*(None,) * (shapes[k].ndim - len(SHAPES[k])), *spec) if spec else P()
                for k, spec in specs.items()}

    return reshape, specs_like


def collectives(compiled) -> dict[str, list[str]]:
    """The collectives of a compiled program: kind -> the result type of each instruction (a
    tuple type when XLA combined several reductions into one instruction)."""
    found: dict[str, list[str]] = {kind: [] for kind in COLLECTIVES}
    for line in compiled.as_text().splitlines():
        match = _COLLECTIVE.search(line)
        if match:
            found[match.group(2)].append(match.group(1))
    return found


def per_param_leaves(state, params):
    """(path, state leaf, its parameter) for every leaf of every subtree of ``state`` shaped
    like ``params``, and the paths of the other non-scalar leaves."""
    treedef = jax.tree_util.tree_structure(params)
    nodes = jax.tree_util.tree_flatten_with_path(
        state, is_leaf=lambda x: jax.tree_util.tree_structure(x) == treedef
    )[0]
    pairs, others = [], []
    for path, node in nodes:
        if jax.tree_util.tree_structure(node) == treedef:
            sub = jax.tree_util.tree_flatten_with_path(node)[0]
            for (sub_path, leaf), p in zip(sub, jax.tree_util.tree_leaves(params), strict=True):
                name = jax.tree_util.keystr(path + sub_path)
                if leaf.shape == p.shape:
                    pairs.append((name, leaf, p))
                elif leaf.ndim:
                    others.append(name)
        elif node.ndim:
            others.append(jax.tree_util.keystr(path))
    return pairs, others


def sharding_report(state, params) -> dict:
    """How many per-parameter leaves were checked, and which ones do not carry their
    parameter's sharding."""
    pairs, others = per_param_leaves(state, params)
    mismatched = [
        f"{name}: {leaf.sharding} for a parameter with {p.sharding}"
        for name, leaf, p in pairs
        if not leaf.sharding.is_equivalent_to(p.sharding, leaf.ndim)
    ]
    return {"checked": len(pairs), "mismatched": mismatched, "other": others}


def step_fn(opt: gx.GradientTransformation) -> Callable:
    def step(params, state, grads):
        updates, state = opt.update(grads, state, params)
        return gx.apply_updates(params, updates), state

    return step


def on_mesh(state, mesh):
    """The sharding of each state leaf, with leaves that jit left off the mesh (constants)
    replicated over it."""
    return jax.tree_util.tree_map(
        lambda x: x.sharding if isinstance(x.sharding, NamedSharding) and x.sharding.mesh == mesh
        else NamedSharding(mesh, P()),
        state,
    )


@functools.cache
def reference(opt_key: str) -> list:
    """Params and state after each of the STEPS single-device steps (device 0, jitted)."""
    opt = BUILDERS[opt_key]()
    reshape, _ = like(opt_key)
    device = jax.devices()[0]
    params = jax.device_put(reshape(host_params()), device)
    state = jax.jit(opt.init)(params)
    step = jax.jit(step_fn(opt))
    out = []
    for grads in host_grads():
        params, state = step(params, state, jax.device_put(reshape(grads), device))
        out.append(jax.device_get((params, state)))
    return out


def determined(opt_key: str, entry):
    """What a step determines, of ``(params, state)``: all of it, but for SOAP, whose
    eigenbases (and the second moment, held in their coordinates) are any basis of the
    directions its statistics do not yet span."""
    params, state = entry
    if opt_key == "soap":
        return params, gx.tree_get(state, "mu"), gx.tree_get(state, "gg")
    return entry


def relative_difference(run, ref) -> float:
    """max over leaves and steps of max|a - b| / max|b| (0 when both are zero)."""
    worst = 0.0
    for a, b in zip(jax.tree_util.tree_leaves(run), jax.tree_util.tree_leaves(ref), strict=True):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        scale = np.max(np.abs(b), initial=0.0)
        diff = np.max(np.abs(a - b), initial=0.0)
        worst = max(worst, diff / scale if scale else diff)
    return float(worst)


def sharded_run(opt_key: str, mesh, specs, *, step: bool = True, free: bool = False) -> dict:
    """Init (eager and jitted) and, with ``step``, the collectives of the step compiled with
    sharded inputs and outputs and STEPS steps of it compared with the single-device run.
    With ``free``, also STEPS steps of the step jitted without shardings, as most training loops
    write it, and which of its outputs leave their parameter's sharding."""
    opt = BUILDERS[opt_key]()
    reshape, specs_like = like(opt_key)
    param_sh = shardings(mesh, specs_like(specs))
    params = jax.device_put(reshape(host_params()), param_sh)
    out = {"init_eager": sharding_report(opt.init(params), params)}
    state = jax.jit(opt.init)(params)
    out["init_jit"] = sharding_report(state, params)
    if not step:
        return out
    state_sh = on_mesh(state, mesh)
    state = jax.device_put(state, state_sh)
    start = params, state
    compiled = jax.jit(step_fn(opt), in_shardings=(param_sh, state_sh, param_sh),
                       out_shardings=(param_sh, state_sh)).lower(params, state, params).compile()
    out["collectives"] = collectives(compiled)
    run = []
    for grads in host_grads():
        params, state = compiled(params, state, jax.device_put(reshape(grads), param_sh))
        run.append(jax.device_get((params, state)))
    out["relative_difference"] = relative_difference(*(
        [determined(opt_key, entry) for entry in runs] for runs in (run, reference(opt_key))))
    if free:
        params, state = start
        free_step, moved = jax.jit(step_fn(opt)), set()
        for grads in host_grads():
            params, state = free_step(params, state, jax.device_put(reshape(grads), param_sh))
            moved.update(sharding_report(state, params)["mismatched"])
            moved.update(f"params['{k}']" for k, v in params.items()
                         if not v.sharding.is_equivalent_to(param_sh[k], v.ndim))
        out["free_step_mismatched"] = sorted(moved)
    return out


# --- the optimizers under test ---------------------------------------------------------------

BUILDERS: dict[str, Callable[[], gx.GradientTransformation]] = {
    info.name: functools.partial(lambda info: info.build(**info.example), info)
    for info in OPTIMIZERS
}
# SOAP with eps 0.1: its first bases come from statistics of rank 1 to 3 over these 3 steps,
# and in the directions they leave out the projected gradient is float32 rounding, which Adam's
# division by its own root mean square turns into O(1) steps unless eps dominates it: any two
# summation orders would differ by O(1), single device or not. With eps 0.1 the comparison
# (of what the step determines: :func:`determined`) shows the sharded step computes the same.
BUILDERS["soap"] = lambda: gx.soap(**{**next(i for i in OPTIMIZERS if i.name == "soap").example,
                                    "eps": 0.1})
PARAMS_LIKE = {info.name: info.params_like for info in OPTIMIZERS}
# Muon with one Newton-Schulz per shape: "w" and "v" (one shape, sharded differently) stacked.
BUILDERS["muon_batched"] = lambda: gx.muon(
    **next(i for i in OPTIMIZERS if i.name == "muon").example, batch_by_shape=True)
PARAMS_LIKE["muon_batched"] = PARAMS_LIKE["muon"]
BUILDERS["sgd_plain"] = lambda: gx.sgd(0.1)
BUILDERS["clip+sgd_plain"] = lambda: gx.chain(gx.clip_by_global_norm(1.0), gx.sgd(0.1))
BUILDERS["clip+adam"] = lambda: gx.chain(gx.clip_by_global_norm(1.0), gx.adam(1e-3))
# With Explicit mesh axes only these are stepped (every optimizer's init is checked), to keep
# the run short: the step of every optimizer is compiled on the two meshes with Auto axes.
EXPLICIT_STEPS = ("adam", "clip+adam", "sgd_plain", "clip+sgd_plain")


# --- the checks ------------------------------------------------------------------------------


def check_meshes() -> dict:
    """Every optimizer on both meshes with Auto axes; with Explicit axes every optimizer's init
    and the steps of Adam with and without clipping."""
    out = {}
    for layout, (shape, names, specs) in LAYOUTS.items():
        for axis_type in (AxisType.Auto, AxisType.Explicit):
            mesh = make_mesh(shape, names, axis_type)
            auto = axis_type == AxisType.Auto
            out[f"{layout}/{axis_type.name}"] = {
                key: sharded_run(key, mesh, specs, step=auto or key in EXPLICIT_STEPS,
                                 free=key == "adam")
                for key in BUILDERS
            }
    return out


def check_fsdp_clipping() -> dict:
    """Clipping when every leaf is sharded the same way over both axes of the 2-D mesh."""
    mesh = make_mesh((4, 2), ("data", "model"), AxisType.Auto)
    return {key: sharded_run(key, mesh, FSDP_SPECS) for key in ("sgd_plain", "clip+sgd_plain")}


def state_shardings(opt, params, mesh) -> object:
    """ZeRO layout: each state leaf whose first axis divides over the mesh is split along it;
    the rest (scalars, small leaves) is replicated."""
    shapes = jax.eval_shape(opt.init, params)
    n = mesh.devices.size
    return jax.tree_util.tree_map(
        lambda s: NamedSharding(mesh, P("data") if s.ndim and s.shape[0] % n == 0 else P()),
        shapes,
    )


def check_zero() -> dict:
    return {t.name: zero_run(t) for t in (AxisType.Auto, AxisType.Explicit)}


def zero_run(axis_type) -> dict:
    """Replicated params, sharded state: a jitted init with out_shardings, then steps."""
    mesh = make_mesh((DEVICES,), ("data",), axis_type)
    opt = BUILDERS["adam"]()
    replicated = NamedSharding(mesh, P())
    params = jax.device_put(host_params(), replicated)
    state_sh = state_shardings(opt, params, mesh)
    state = jax.jit(opt.init, out_shardings=state_sh)(params)
    init_ok = jax.tree_util.tree_leaves(jax.tree_util.tree_map(
        lambda x, s: x.sharding.is_equivalent_to(s, x.ndim), state, state_sh))
    step = jax.jit(step_fn(opt), in_shardings=(replicated, state_sh, replicated),
                   out_shardings=(replicated, state_sh), donate_argnums=(0, 1))
    compiled = step.lower(params, state, params).compile()
    run = []
    for grads in host_grads():
        params, state = step(params, state, jax.device_put(grads, replicated))
        run.append(jax.device_get((params, state)))
    pairs, _ = per_param_leaves(state, params)
    split = [leaf for _, leaf, _ in pairs if leaf.ndim and leaf.shape[0] % DEVICES == 0]
    return {
        "init_sharded_as_asked": all(init_ok),
        "state_sharded_after_steps": [
            jax.tree_util.keystr(path) for path, x in
            jax.tree_util.tree_flatten_with_path(state)[0]
            if x.ndim and x.shape[0] % DEVICES == 0 and x.sharding.is_fully_replicated
        ],
        "split_leaves": len(split),
        "split_bytes_total": sum(x.nbytes for x in split),
        "split_bytes_device0": sum(x.addressable_shards[0].data.nbytes for x in split),
        "collectives": collectives(compiled),
        "relative_difference": relative_difference(run, reference("adam")),
    }


def check_multi_tensor() -> dict:
    """gx.multi_tensor(adam, shardings=...) on each layout (Auto axes): its buffers, the
    collectives of its step, how far its parameters are from the single-device Adam run; and
    what an eager init without ``shardings`` says of split leaves."""
    out = {}
    for layout, (shape, names, specs) in LAYOUTS.items():
        mesh = make_mesh(shape, names, AxisType.Auto)
        param_sh = shardings(mesh, specs)
        params = jax.device_put(host_params(), param_sh)
        opt = gx.multi_tensor(BUILDERS["adam"](), shardings=param_sh)
        state = opt.init(params)
        state_sh = on_mesh(state, mesh)
        state = jax.device_put(state, state_sh)
        step = jax.jit(step_fn(opt), in_shardings=(param_sh, state_sh, param_sh),
                       out_shardings=(param_sh, state_sh))
        compiled = step.lower(params, state, params).compile()
        run = []
        for grads in host_grads():
            params, state = compiled(params, state, jax.device_put(grads, param_sh))
            run.append(jax.device_get(params))
        try:
            gx.multi_tensor(BUILDERS["adam"]()).init(jax.device_put(host_params(), param_sh))
            refused = None
        except ValueError as err:
            refused = str(err)
        out[layout] = {
            "buffers": {g: list(b.shape) for g, b in gx.tree_get(state, "mu").items()},
            "collectives": collectives(compiled),
            "relative_difference": relative_difference(
                run, [params for params, _ in reference("adam")]),
            "unsharded_init_error": refused,
        }
    return out


def check_data_parallel() -> dict:
    """Replicated params, batch split over ``data``: the step's collectives with Adam (with and
    without clipping) and with plain SGD (the gradient's all-reduce), where the eager init puts
    the state, and how far the run is from a single-device one."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(64, 16)).astype(np.float32)
    y = rng.normal(size=(64, 1)).astype(np.float32)
    w0 = {"w": rng.normal(size=(16, 1)).astype(np.float32), "b": np.zeros(1, np.float32)}

    def train_step(opt):
        def loss(params, x, y):
            return jnp.mean((x @ params["w"] + params["b"] - y) ** 2)

        return lambda p, s, x, y: step_fn(opt)(p, s, jax.grad(loss)(p, x, y))

    @functools.cache
    def single_device(name):
        opt = BUILDERS[name]()
        device = jax.devices()[0]
        params, batch = jax.device_put((w0, (x, y)), device)
        state, step = opt.init(params), jax.jit(train_step(opt))
        for _ in range(STEPS):
            params, state = step(params, state, *batch)
        return jax.device_get((params, state))

    out = {}
    for axis_type in (AxisType.Auto, AxisType.Explicit):
        mesh = make_mesh((DEVICES,), ("data",), axis_type)
        replicated, split = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
        params, batch = jax.device_put(w0, replicated), jax.device_put((x, y), split)
        result = {}
        for name in ("adam", "clip+adam", "sgd_plain"):
            opt = BUILDERS[name]()
            state = opt.init(params)
            placed = sharding_report(state, params)
            state = jax.device_put(state, replicated)
            compiled = jax.jit(
                train_step(opt), in_shardings=(replicated, replicated, split, split),
                out_shardings=(replicated, replicated),
            ).lower(params, state, *batch).compile()
            p, s = params, state
            for _ in range(STEPS):
                p, s = compiled(p, s, *batch)
            result[name] = {
                "collectives": collectives(compiled),
                "state": placed,
                "relative_difference": relative_difference((p, s), single_device(name)),
            }
        out[axis_type.name] = result
    return out


def check_optax() -> dict:
    """optax.adam's init on the sharded 1-D mesh, for the record (nothing asserts on it)."""
    import optax

    mesh = make_mesh((DEVICES,), ("data",), AxisType.Auto)
    params = jax.device_put(host_params(), shardings(mesh, LAYOUTS["data8"][2]))
    opt = optax.adam(1e-3)
    return {
        "eager": sharding_report(opt.init(params), params),
        "jit": sharding_report(jax.jit(opt.init)(params), params),
    }


def check_docs() -> dict:
    """The ```python blocks of docs/sharding.md, run in order in one namespace."""
    text = (ROOT / "docs" / "sharding.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    namespace: dict = {}
    try:
        for i, block in enumerate(blocks):
            exec(compile(block, f"docs/sharding.md block {i}", "exec"), namespace)
    except Exception:
        return {"blocks": len(blocks), "error": traceback.format_exc()}
    # What the page prints: the collectives of the fully sharded optimizer step.
    return {"blocks": len(blocks), "error": None, "counts": dict(namespace.get("counts", {}))}


def main(argv: list[str]) -> None:
    start = time.perf_counter()
    results = {"devices": jax.device_count()}
    for name, check in (("meshes", check_meshes), ("fsdp_clipping", check_fsdp_clipping),
                        ("zero", check_zero), ("data_parallel", check_data_parallel),
                        ("multi_tensor", check_multi_tensor),
                        ("optax", check_optax), ("docs", check_docs)):
        t0, c0 = time.perf_counter(), time.process_time()
        results[name] = check()
        results.setdefault("seconds", {})[name] = round(time.perf_counter() - t0, 2)
        results.setdefault("cpu_seconds", {})[name] = round(time.process_time() - c0, 2)
    results["seconds"]["total"] = round(time.perf_counter() - start, 2)
    results["cpu_seconds"]["total"] = round(time.process_time(), 2)
    text = json.dumps(results, indent=1)
    if argv:
        pathlib.Path(argv[0]).write_text(text)
    else:
        print(text)


if __name__ == "__main__":
    main(sys.argv[1:])
