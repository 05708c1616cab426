"""Runners: objects that perform optimizer steps on their own copy of the parameters.

A JAX runner calls one compiled ``step(params, state, grads)`` whose params and state are
donated, so the step updates them in place; a torch runner calls ``opt.step()`` with the
gradients set once on ``.grad``. Both block until the device is done before returning."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np
import torch

from benchmarks.shapes import DTYPE


class Runner(Protocol):
    def run(self, steps: int) -> None:
        """Perform ``steps`` optimizer steps and wait for them to finish."""

    def params(self) -> list[np.ndarray]:
        """The current parameters on the host, in leaf order."""


def jax_step(opt: Any, apply_updates: Callable | None) -> Callable:
    """One optimizer step: the update, then applying it to the parameters (an optimizer with
    a ``fused_step`` does both in one)."""
    if apply_updates is None:
        return opt.fused_step

    def step(params, state, grads):
        updates, state = opt.update(grads, state, params)
        return apply_updates(params, updates), state

    return step


def to_device(tree: dict[str, np.ndarray]) -> dict[str, jax.Array]:
    """Private float32 device copies (donation overwrites them, so never share host memory)."""
    return {k: jnp.array(v, dtype=jnp.float32, copy=True) for k, v in tree.items()}


class JaxRunner:
    """Steps a compiled, donating step function on device arrays.

    ``unpack`` (for parameters held as :func:`gradtx.pack_leaves` buffers) turns the stepped
    arrays back into the tree whose leaves ``names`` lists."""

    def __init__(self, compiled: Any, opt: Any, params: dict, grads: dict,
                 unpack: Callable | None = None, names: list[str] | None = None) -> None:
        self._compiled = compiled
        # jax returns dicts with sorted keys; keep the shape's order
        self._names = list(params) if names is None else names
        self._unpack = unpack
        self._params = to_device(params)
        self._grads = to_device(grads)
        self._state = jax.jit(opt.init)(self._params)
        jax.block_until_ready(self._state)

    def run(self, steps: int) -> None:
        for _ in range(steps):
            self._params, self._state = self._compiled(self._params, self._state, self._grads)
        jax.block_until_ready((self._params, self._state))

    def params(self) -> list[np.ndarray]:
        tree = self._params if self._unpack is None else self._unpack(self._params)
        return [np.asarray(tree[k]) for k in self._names]

    def state_bytes(self) -> int:
        """Bytes of params + grads + state held by this runner."""
        leaves = jax.tree.leaves((self._params, self._grads, self._state))
        return sum(leaf.nbytes for leaf in leaves)

    def peak_delta(self) -> int | None:
        """Device peak memory above what was in use, over one step; ``None`` where the backend
        keeps no statistics (CPU) or an earlier, higher peak hides this one."""
        device = jax.tree.leaves(self._params)[0].devices().pop()
        before = device.memory_stats()
        self.run(1)
        after = device.memory_stats()
        if not before or not after or "peak_bytes_in_use" not in after:
            return None
        if after["peak_bytes_in_use"] <= before["peak_bytes_in_use"]:
            return None
        return after["peak_bytes_in_use"] - before["bytes_in_use"]

    def faulted_bytes(self, steps: int = 3) -> int | None:
        """Host memory first touched per step (minor page faults × page size, averaged over
        ``steps`` steps after one untimed step): a step that writes into a freshly mapped
        temporary buffer pays for faulting it in every time. ``None`` where the platform keeps
        no fault counts."""
        try:
            import resource
        except ImportError:  # not a POSIX system
            return None
        self.run(1)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        self.run(steps)
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
        return round(faults / steps) * resource.getpagesize()


class TorchRunner:
    """Steps a ``torch.optim`` optimizer whose gradients were set once."""

    def __init__(self, make_opt: Callable, params: dict, grads: dict, device: str) -> None:
        self._device = device
        self._params = [
            torch.tensor(v, dtype=torch.float32, device=device).requires_grad_()
            for v in params.values()
        ]
        for p, g in zip(self._params, grads.values(), strict=True):
            p.grad = torch.tensor(g, dtype=torch.float32, device=device)
        self._opt = make_opt(self._params)

    def run(self, steps: int) -> None:
        with torch.no_grad():
            for _ in range(steps):
                self._opt.step()
        if self._device == "cuda":
            torch.cuda.synchronize()

    def params(self) -> list[np.ndarray]:
        return [p.detach().cpu().numpy().astype(DTYPE) for p in self._params]
