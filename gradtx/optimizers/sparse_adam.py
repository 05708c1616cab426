"""SparseAdam: Adam that updates only the rows a gradient touches, as ``torch.optim.SparseAdam``
does for the sparse gradients of an ``nn.Embedding(sparse=True)``."""

from __future__ import annotations

import jax

from gradtx.core import GradientTransformation, ScalarOrSchedule
from gradtx.hyperparams.declarations import POSITIVE
from gradtx.optimizers._common import (
    BETA,
    LEARNING_RATE,
    MAXIMIZE,
    negate_if,
    optimizer,
    optimizer_chain,
)
from gradtx.transforms.scaling import scale_by_learning_rate
from gradtx.transforms.sparse_rows import scale_by_sparse_adam


@optimizer(
    learning_rate=LEARNING_RATE,
    b1=BETA,
    b2=BETA,
    eps=POSITIVE,
    maximize=MAXIMIZE,
)
def sparse_adam(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: float | jax.Array = 0.9,
    b2: float | jax.Array = 0.999,
    eps: float | jax.Array = 1e-8,
    maximize: bool = False,
) -> GradientTransformation:
    r"""SparseAdam, equal step for step to ``torch.optim.SparseAdam`` fed the sparse gradients
    of an ``nn.Embedding(sparse=True)``: Adam on the rows a gradient touches, the other rows
    left as they are.

    A row is a slice along axis 0 (an embedding vector); each entry of a 1-D leaf, and a 0-d
    leaf as a whole, is a row of its own. A row whose gradient is entirely zero is *absent*,
    as in a sparse gradient that does not list it: its moments are not decayed and the
    parameter row does not move. For a present row :math:`r`:

    .. math::
        g_t &\leftarrow \pm\nabla_\theta f(\theta_{t-1}) \\
        m_{t,r} &= \beta_1 m_{t-1,r} + (1-\beta_1) g_{t,r}, \qquad
        v_{t,r} = \beta_2 v_{t-1,r} + (1-\beta_2) g_{t,r}^2 \\
        \theta_{t,r} &= \theta_{t-1,r} - \eta\, \frac{\sqrt{1-\beta_2^t}}{1-\beta_1^t}\,
            \frac{m_{t,r}}{\sqrt{v_{t,r}} + \epsilon}

    :math:`t` is the number of steps taken, the same for every row: a row seen for the first
    time at step 5 is bias-corrected with :math:`t = 5`, as in torch. :math:`\epsilon` is added
    to the uncorrected :math:`\sqrt{v}` (torch's SparseAdam; its Adam adds it to
    :math:`\sqrt{\hat v}`), so with every row present at every step this is not
    :func:`gradtx.adam`.

    Chain: ``[scale(-1)] → scale_by_sparse_adam(β1, β2, ε) → scale_by_learning_rate(η)``.

    Args:
        learning_rate: :math:`\eta \ge 0`.
        b1: :math:`\beta_1 \in [0, 1)`.
        b2: :math:`\beta_2 \in [0, 1)`.
        eps: :math:`\epsilon > 0`: with :math:`\epsilon = 0` an entry that is zero in every
            row it was present in would step by 0/0.
        maximize: maximise the objective instead of minimising it.

    State (named, for :func:`gradtx.tree_get`): ``count``, the one step count (torch's
    ``step``), ``mu`` (torch's ``exp_avg``) and ``nu`` (``exp_avg_sq``).

    torch.optim: ``SparseAdam(params, lr, betas=(b1, b2), eps, maximize)``, with the gradients
    in sparse COO layout (``nn.Embedding(sparse=True)`` makes them; a dense gradient converts
    with ``grad.to_sparse(sparse_dim=min(1, grad.dim()))``; ``sparse_dim=1`` fails on a 0-d
    one). As torch, gradtx refuses :math:`\epsilon = 0` and complex parameters; torch also
    refuses :math:`\eta = 0` (gradtx accepts it, as for its other optimizers: no step, as a
    torch scheduler may reach it). Where they differ:

    * gradtx sees dense gradients, so it cannot tell a row that a sparse gradient lists with
      zero values from an absent one. torch treats every listed row as present, zero or not
      (a row looked up twice whose two contributions cancel exactly is present there, so its
      moments decay and it moves); here an all-zero row is always absent.
    * torch advances a parameter's ``step`` only when its ``.grad`` is not None. A table left
      out of the forward pass after ``zero_grad()`` (``set_to_none=True``) has no gradient and
      its count stays; here every update advances the count, as torch does for a gradient
      that lists no row (a lookup of no index).

    Differences from ``optax``: Optax has no SparseAdam.

    Example:
        >>> import gradtx as gx, jax.numpy as jnp
        >>> opt = sparse_adam(learning_rate=0.1)
        >>> params = {"table": jnp.ones((3, 2))}
        >>> state = opt.init(params)
        >>> grads = {"table": jnp.asarray([[1.0, -1.0], [0.0, 0.0], [0.0, 2.0]])}
        >>> updates, state = opt.update(grads, state, params)
        >>> params = gx.apply_updates(params, updates)
        >>> [[round(x, 6) for x in row] for row in params["table"].tolist()]  # row 1 is absent
        [[0.9, 1.1], [1.0, 1.0], [1.0, 0.9]]
        >>> [[round(x, 6) for x in row] for row in gx.tree_get(state, "mu")["table"].tolist()]
        [[0.1, -0.1], [0.0, 0.0], [0.0, 0.2]]
    """
    return optimizer_chain(
        negate_if(maximize),
        scale_by_sparse_adam(b1, b2, eps),
        scale_by_learning_rate(learning_rate),
        real_only="sparse_adam",
    )
