"""Tools for testing gradient transformations: an invariant checker and hypothesis strategies.

:func:`check_transformation` runs a few steps of any :class:`~gradtx.GradientTransformation`
(gradtx's or your own) and checks the properties that gradtx's own test suite checks for every
optimizer: jitted steps equal eager ones, repeated runs are bitwise equal, composing with
:func:`~gradtx.identity` changes nothing, the state keeps its structure, shapes and dtypes (so a
jitted training loop never recompiles), updates have the parameters' structure, and ``vmap`` over
a batch of parameters equals a Python loop. It raises ``AssertionError`` naming every invariant
that fails. :data:`DEFAULT_CHECKS` names the invariants it checks by default and
:data:`OPTIONAL_CHECKS` those it checks when asked. The checker is defined in
``gradtx.testing.invariants``.

:func:`pytrees`, :func:`arrays_like` and :func:`hyperparameters` are `hypothesis
<https://hypothesis.readthedocs.io>`_ strategies that draw parameter trees, gradients shaped like
them, and valid hyperparameters of a registered optimizer. They are defined in
``gradtx.testing.strategies``.

Import them from here, ``gradtx.testing``, which is not imported by ``import gradtx``. The
checker needs JAX and NumPy only; the strategies need hypothesis (``pip install hypothesis``),
which is imported when a strategy is built, so gradtx itself never depends on it and this
package imports without it.
"""

from __future__ import annotations

from gradtx.testing import invariants as _invariants
from gradtx.testing.invariants import check_transformation
from gradtx.testing.strategies import arrays_like, hyperparameters, pytrees

# Bound here, with their docstrings, rather than imported: Sphinx reads a constant's docstring
# from the source of the module that documents it (docs/api/testing.rst documents this one).
DEFAULT_CHECKS: tuple[str, ...] = _invariants.DEFAULT_CHECKS
"""The invariants :func:`check_transformation` checks unless told otherwise; every gradtx
optimizer and transform satisfies them."""

OPTIONAL_CHECKS: tuple[str, ...] = _invariants.OPTIONAL_CHECKS
"""Invariants that hold for some transformations only; ask for them by name."""

__all__ = [
    "DEFAULT_CHECKS",
    "OPTIONAL_CHECKS",
    "arrays_like",
    "check_transformation",
    "hyperparameters",
    "pytrees",
]
