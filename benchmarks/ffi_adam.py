"""A fused Adam step through ``jax.ffi``: the alternative to XLA:CPU's kernels that the
performance issue asks to measure. ``fused_adam.cc`` beside this file is compiled with the
system's C++ compiler on first use (cached by source hash in the temp directory) and registered
as a CPU custom call; :func:`fused_adam` returns ``None`` where that cannot be done (no
compiler, not a CPU backend), so the harness shows "n/a".

A custom call per float32 leaf steps it in place (its results alias the donated parameters and
moments): each element's p, g, m, v are read once and p, m, v written once, 28 B/param. gradtx
does not ship this (docs/performance.md says why); it is benchmark code."""

from __future__ import annotations

import ctypes
import functools
import hashlib
import math
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

SOURCE = Path(__file__).with_name("fused_adam.cc")
TARGET = "gradtx_bench_fused_adam"
SYMBOL = "GradtxBenchFusedAdam"
# Leaves of fewer elements run on the calling thread; larger ones are split over XLA's threads.
PARALLEL_MIN_SIZE = 2**18


def compile_command(source: Path, output: Path) -> list[str] | None:
    """The compiler call that builds the shared library, or ``None`` without a compiler."""
    compiler = shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")
    if compiler is None:
        return None
    # -fno-math-errno lets the loop's square roots vectorize; -w: the XLA headers' warnings
    return [compiler, "-O3", "-march=native", "-fno-math-errno", "-std=c++17", "-shared",
            "-fPIC", "-w", "-I", jax.ffi.include_dir(), str(source), "-o", str(output)]


@functools.cache
def register() -> bool:
    """Build (once per source version) and register the custom call; whether it worked."""
    if jax.default_backend() != "cpu":
        return False
    output = Path(tempfile.gettempdir()) / "gradtx-bench-fused-adam.so"
    command = compile_command(SOURCE, output)
    if command is None:
        return False
    # cached per source, compiler flags and jax version
    key = SOURCE.read_bytes() + " ".join(command).encode() + jax.__version__.encode()
    output = output.with_stem(f"{output.stem}-{hashlib.sha256(key).hexdigest()[:16]}")
    if not output.exists():
        partial = output.with_suffix(f".{os.getpid()}.tmp")
        done = subprocess.run(compile_command(SOURCE, partial), capture_output=True, text=True,
                              timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f"building {SOURCE.name} failed:\n{done.stderr}")
        partial.replace(output)  # atomic: a parallel process never loads half a file
    library = ctypes.cdll.LoadLibrary(str(output))
    jax.ffi.register_ffi_target(TARGET, jax.ffi.pycapsule(getattr(library, SYMBOL)),
                                platform="cpu")
    return True


class FusedAdamState(NamedTuple):
    count: jax.Array
    mu: Any
    nu: Any


class FusedAdam(NamedTuple):
    """``init(params)`` and ``fused_step(params, state, grads) -> (params, state)``: the step
    updates the parameters itself (no separate ``apply_updates``)."""

    init: Any
    fused_step: Any


def _leaf_step(scalars, p, g, m, v, b1, b2, eps):
    like = jax.ShapeDtypeStruct(p.shape, p.dtype)
    # arguments (scalars, p, g, m, v) -> results (p, m, v), updated in place
    call = jax.ffi.ffi_call(TARGET, [like] * 3, input_output_aliases={1: 0, 3: 1, 4: 2})
    return call(scalars, p, g, m, v, b1=np.float32(b1), b2=np.float32(b2), eps=np.float32(eps),
                parallel_min_size=np.int64(PARALLEL_MIN_SIZE))


def fused_adam(learning_rate: float, b1: float = 0.9, b2: float = 0.999,
               eps: float = 1e-8) -> FusedAdam | None:
    """torch's Adam (no weight decay, no AMSGrad) on float32 leaves, a custom call per leaf,
    or ``None`` where the kernel cannot be built here."""
    if not register():
        return None

    def init(params):
        def zeros():
            return jax.tree.map(jnp.zeros_like, params)

        return FusedAdamState(jnp.zeros([], jnp.int32), zeros(), zeros())

    def fused_step(params, state, grads):
        leaves, treedef = jax.tree.flatten(params)
        for leaf in leaves:
            if leaf.dtype != jnp.float32:
                raise TypeError(f"fused_adam steps float32 leaves only, got {leaf.dtype}")
        count = state.count + 1
        t = count.astype(jnp.float32)
        # torch's order: step size lr / (1 - b1^t), denominator sqrt(v) / sqrt(1 - b2^t) + eps;
        # 1 - b^t as -expm1(t log b): in float32, 1 - 0.999^t would lose 4 digits to cancellation
        bc1, bc2 = (-jnp.expm1(t * math.log(b)) for b in (b1, b2))
        scalars = jnp.stack([learning_rate / bc1, jnp.sqrt(bc2)])
        mu, nu = treedef.flatten_up_to(state.mu), treedef.flatten_up_to(state.nu)
        out = [_leaf_step(scalars, *leaf, b1, b2, eps)
               for leaf in zip(leaves, treedef.flatten_up_to(grads), mu, nu, strict=True)]
        p, m, v = ([treedef.unflatten(x) for x in zip(*out, strict=True)] if out
                   else (params, state.mu, state.nu))
        return p, FusedAdamState(count, m, v)

    return FusedAdam(init, fused_step)
