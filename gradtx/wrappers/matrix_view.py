r"""Running a matrix optimizer (Muon) on convolution kernels: each leaf of three or more
dimensions is handed to the inner transformation as a matrix, and its update reshaped back."""

from __future__ import annotations

import jax
import numpy as np

from gradtx import core, validation
from gradtx.core import GradientTransformation, OptState, Params, Updates

KERNEL_LAYOUTS = ("torch", "flax")
"""The values of ``layout``: where a kernel keeps its output channels. ``"torch"``:
``(out, in, *spatial)``, seen as ``(out, in·spatial)``; ``"flax"``: ``(*spatial, in, out)``,
seen as ``(spatial·in, out)``."""


def check_kernel_layout(name: str, value) -> str:
    """One of :data:`KERNEL_LAYOUTS`, by name."""
    return validation.check_choice(name, value, KERNEL_LAYOUTS)


def matrix_shape(shape, layout: str) -> tuple[int, ...]:
    """The shape a leaf is seen as: its own for fewer than three dimensions; otherwise the
    output channels on the side ``layout`` keeps them, every other dimension multiplied into
    the other side."""
    shape = tuple(int(d) for d in shape)
    if len(shape) < 3:
        return shape
    if layout == "torch":
        return (shape[0], int(np.prod(shape[1:])))
    return (int(np.prod(shape[:-1])), shape[-1])


def matrix_view(inner: GradientTransformation, layout: str = "torch") -> GradientTransformation:
    r"""``inner`` on every leaf of three or more dimensions seen as a matrix; other leaves
    (matrices, vectors, scalars, None) as they are.

    A convolution kernel :math:`W` with output channels :math:`O` becomes the matrix
    :math:`O \times (\text{in} \cdot \text{spatial})` for ``layout="torch"`` (torch's
    ``(out, in, kh, kw)``, viewed as ``W.view(len(W), -1)`` as Keller Jordan's and
    pytorch-optimizer's Muon do) or :math:`(\text{spatial} \cdot \text{in}) \times O` for
    ``layout="flax"`` (Flax's ``(kh, kw, in, out)``, the side a ``Dense`` kernel ``(in, out)``
    keeps its outputs on). ``inner`` sees those matrices (its state is shaped like them) and
    each update it returns is reshaped to its parameter's shape. So
    ``gx.matrix_view(gx.muon(...))`` is Muon on the kernels' matrices, and its shape factor
    :math:`r(A, B)` reads the matrix's :math:`(A, B)`.

    The state is ``inner``'s own: ``gx.tree_get`` and the hyperparameter functions reach it as
    if there were no wrapper.

    Args:
        inner: the transformation to run on the matrices.
        layout: ``"torch"`` or ``"flax"``, where the kernels keep their output channels.

    Example:
        >>> import gradtx as gx, jax.numpy as jnp
        >>> opt = gx.matrix_view(gx.muon(learning_rate=0.02, ns_dtype=None), "flax")
        >>> params = {"conv": jnp.zeros((3, 3, 4, 8))}
        >>> gx.tree_get(opt.init(params), "momentum_buffer")["conv"].shape
        (36, 8)
    """
    layout = check_kernel_layout("layout", layout)
    inner_update = core.with_extra_args(inner.update)

    def view(tree):
        return jax.tree_util.tree_map(lambda x: x.reshape(matrix_shape(x.shape, layout)), tree)

    def init(params: Params) -> OptState:
        return inner.init(view(params))

    def update(updates: Updates, state: OptState, params: Params | None = None, **extra_args):
        out, state = inner_update(view(updates), state,
                                  None if params is None else view(params), **extra_args)
        back = jax.tree_util.tree_map(lambda u, g: u.reshape(g.shape), out, updates)
        return back, state

    return GradientTransformation(init, update)
