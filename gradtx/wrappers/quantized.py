r"""Low-memory optimizer state: any optimizer's large state arrays kept as 8-bit codes with one
float32 scale per block, after Dettmers et al. (2021), "8-bit Optimizers via Block-wise
Quantization".

:func:`quantize_state` wraps an optimizer. Between steps, every floating-point leaf of the inner
state with at least ``min_size`` elements is held as a :class:`QuantizedArray`: one ``uint8``
code per element and one ``float32`` scale per block of ``block_size`` elements. Each step
decodes those leaves, runs the inner optimizer unchanged, and encodes its new state again.

The code
--------

A value :math:`x` in a block :math:`b` with absolute maximum :math:`s_b` is stored as the code
:math:`c` whose entry :math:`q_c` of a fixed 256-entry table is nearest to :math:`x / s_b`, and
read back as :math:`q_c\,s_b`. The table is a *dynamic* code: floating-point-like, with a unary
exponent. Its magnitudes are the bit strings ``0...0 1 f`` of 7 bits: a run of :math:`e` zeros
picks the decade, the ``1`` ends the run and the :math:`k = 6 - e` bits of :math:`f` are a
linear fraction within the decade,

.. math::
    q(e, f) = 10^{-e}\Bigl(0.1 + 0.9\,\frac{f + 1}{2^k}\Bigr), \qquad
    e = 0..6,\ f = 0..2^k - 1,

plus the all-zero string for :math:`0`, and a sign bit: 127 magnitudes in :math:`[10^{-6}, 1]`,
their negatives and zero (255 values; the 256th code is unused and decodes as NaN). Decade
:math:`e` covers :math:`(10^{-e-1}, 10^{-e}]` with steps of :math:`0.9 \cdot 10^{-e} / 2^k`,
so the code is densest, in absolute terms, near :math:`\pm 1` (steps of :math:`0.9/64`) and
still represents values six decades below the block's maximum; :math:`0` and :math:`\pm 1` are
exact.

A block whose values are all :math:`\ge 0` (a second moment, a sum of squares) has no use for
the sign, so it uses the *unsigned* code: the same construction with the sign bit as one more
bit, i.e. 8-bit strings, decades :math:`e = 0..7` with :math:`k = 7 - e` fraction bits (256
values in :math:`\{0\} \cup [10^{-7}, 1]`, steps of :math:`0.9/128` near 1). In such a block a
positive value is never stored as zero: one below the smallest code's half gets the smallest
code, so that a second moment that was positive never decodes as zero (Adam would then divide
its first moment by :math:`\epsilon` alone). Each block picks its code when it is encoded, and
the choice is kept in the sign of its stored scale: :math:`+s_b` for the signed code,
:math:`-s_b` for the unsigned one, so it costs no memory and works under ``jit``.

Codes are stored in the order of the values they stand for (code 0 is the smallest), and the
nearest code is found exactly: a table indexed by the leading bits of the float32 value gives
the one midpoint between codes that can lie near it, and one comparison with that midpoint
decides (about 15 times as fast on CPU as a binary search over the midpoints).

Errors: with :math:`s_b` the block's absolute maximum, an element in decade :math:`e` is off by
at most half a step, :math:`0.45 \cdot 10^{-e} s_b / 2^k`: :math:`0.7\%` of :math:`s_b` near
the maximum for the signed code and :math:`0.35\%` for the unsigned one, a relative error that
grows toward the bottom of each decade. Elements more than six (signed) or seven (unsigned)
decades below :math:`s_b` are stored as zero (signed) or as :math:`10^{-7}s_b` (unsigned). The
block's maximum itself, zeros, and blocks of one element are exact.

Memory
------

A quantized leaf of :math:`n` elements takes :math:`n + 4\lceil n/B \rceil` bytes (``uint8``
codes and float32 scales, :math:`B` = ``block_size``) instead of :math:`4n` in float32:
:math:`1 + 4/B` bytes per element, 1.016 for :math:`B = 256`. Adam and AdamW keep two moments
per parameter, so their state drops from 8 to :math:`2 + 8/B` (2.03) bytes per parameter for
the leaves that are quantized; the step counters and hyperparameters stay as they are.
:func:`state_nbytes` counts the bytes of a state.

What is quantized, and what is not
----------------------------------

* Floating-point leaves of at least one dimension and at least ``min_size`` elements:
  quantized.
* Smaller leaves (biases, small layers), 0-d leaves (hyperparameters, scalars, whatever
  ``min_size``), integer and boolean leaves
  (step counters, flags): kept exactly as the inner optimizer left them. Their share of the
  memory is small, and a scalar such as a learning rate must not move.
* The state of a :func:`quantize_state` nested inside ``inner``: left to that one.

Decoded values are **float32**, whatever the dtype of the leaf the inner optimizer created
(the code has far less precision than float32 anyway), so the inner optimizer computes its
step with float32 state for those leaves; its updates for bf16 or float16 parameters may then
come out in float32 (``apply_updates`` casts each update to its parameter's dtype). Values are
converted to float32 before encoding.

Non-finite values: a block holding a NaN or an Inf gets a NaN scale, so *every* element of
that block decodes as NaN. A NaN in the state never silently becomes a finite number; the
block it sits in is lost, as the inner optimizer's state would be anyway.

Quantize optimizer *statistics*, not copies of the parameters: the slow weights of
:func:`gradtx.lookahead`, the average of :func:`gradtx.with_param_average`, Schedule-Free's
:math:`z` or Prodigy's starting point :math:`x_0` would lose most of their precision in 8 bits.
Wrap the inner optimizer instead: ``lookahead(quantize_state(adam(...)), ...)``, or pass a
``min_size`` above the parameters' sizes.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradtx import core, validation
from gradtx.core import GradientTransformation, OptState, PyTree


class QuantizedArray(NamedTuple):
    """An array stored as 8-bit codes and one scale per block (see the module's description).

    Attributes:
        codes: ``uint8``, the shape of the original array: each element's code.
        scales: ``float32`` of shape ``(ceil(size / block_size),)``: the absolute maximum of
            each block of the flattened array, negated for blocks stored with the unsigned
            code; NaN for blocks that held a NaN or an Inf.
    """

    codes: jax.Array
    scales: jax.Array


class QuantizedState(NamedTuple):
    """The state of :func:`quantize_state`: the inner optimizer's state with each large
    floating-point leaf replaced by a :class:`QuantizedArray`."""

    inner_state: OptState


# --- The code tables (NumPy, built once at import) ---------------------------------------------


def _magnitudes(bits: int) -> np.ndarray:
    """The sorted non-negative values of the dynamic code whose magnitude field has ``bits``
    bits: zero, then for each decade e (a run of e zeros and a one) the 2**(bits-1-e) values
    10**-e * (0.1 + 0.9 (f + 1) / 2**(bits-1-e))."""
    values = [0.0]
    for e in range(bits):
        k = bits - 1 - e
        values += [10.0**-e * (0.1 + 0.9 * (f + 1) / 2**k) for f in range(2**k)]
    return np.array(sorted(values), dtype=np.float64)


_SIGNED_MAGNITUDES = _magnitudes(7)  # 128 values: 0 and [1e-6, 1]
_UNSIGNED_MAGNITUDES = _magnitudes(8)  # 256 values: 0 and [1e-7, 1]
_ZERO_CODE = 127  # the signed code of 0

#: The signed code: ``SIGNED_CODE[c]`` is the value (relative to the block's absolute maximum)
#: that code ``c`` stands for; increasing, ``SIGNED_CODE[127] == 0``; code 255 is unused (NaN).
SIGNED_CODE: np.ndarray = np.concatenate(
    [-_SIGNED_MAGNITUDES[:0:-1], _SIGNED_MAGNITUDES, [np.nan]]
).astype(np.float32)
#: The unsigned code, for blocks without negative values: increasing, from 0 to 1.
UNSIGNED_CODE: np.ndarray = _UNSIGNED_MAGNITUDES.astype(np.float32)

# Decoding reads one table: signed codes at 0..255, unsigned ones at 256..511.
_DECODE = np.concatenate([SIGNED_CODE, UNSIGNED_CODE])

# Encoding finds the rank of a magnitude a in [0, 1] among the midpoints of a table of
# magnitudes (the number of midpoints below it), which is the index of the nearest value. The
# float32 bit pattern of a, shifted right by _SHIFT, numbers buckets of 2**_MANTISSA_BITS per
# power of two; buckets are narrower than the gap between midpoints, so each holds at most one,
# and rank = (midpoints below the bucket) + (a > the next midpoint). Everything below 2**-26
# (under half the smallest non-zero code) shares bucket 0.
_MANTISSA_BITS = 8
_SHIFT = 23 - _MANTISSA_BITS


def _bucket_of(bits: np.ndarray | int) -> np.ndarray | int:
    return bits >> _SHIFT


_FIRST_BUCKET = _bucket_of(int(np.float32(2.0**-26).view(np.uint32)))
_NUM_BUCKETS = _bucket_of(int(np.float32(1.0).view(np.uint32))) - _FIRST_BUCKET + 1


def _midpoints(magnitudes: np.ndarray) -> np.ndarray:
    return ((magnitudes[1:] + magnitudes[:-1]) / 2).astype(np.float32)


def _bucket_starts() -> np.ndarray:
    first = (np.arange(_NUM_BUCKETS, dtype=np.uint32) + _FIRST_BUCKET) << _SHIFT
    starts = first.view(np.float32).copy()
    starts[0] = 0.0
    return starts


_SIGNED_MIDPOINTS = _midpoints(_SIGNED_MAGNITUDES)  # 127
_UNSIGNED_MIDPOINTS = _midpoints(_UNSIGNED_MAGNITUDES)  # 255
# Both midpoint lists in one array, each closed by +inf so that "the next midpoint" exists.
_UNSIGNED_OFFSET = len(_SIGNED_MIDPOINTS) + 1
_MIDPOINTS = np.concatenate(
    [_SIGNED_MIDPOINTS, [np.inf], _UNSIGNED_MIDPOINTS, [np.inf]]
).astype(np.float32)
# For each bucket (signed buckets, then unsigned ones): where its first candidate midpoint is
# in _MIDPOINTS.
_FIRST_CANDIDATE = np.concatenate(
    [
        np.searchsorted(_SIGNED_MIDPOINTS, _bucket_starts(), side="left"),
        np.searchsorted(_UNSIGNED_MIDPOINTS, _bucket_starts(), side="left") + _UNSIGNED_OFFSET,
    ]
).astype(np.int32)


def _rank(a: jax.Array, unsigned: jax.Array) -> jax.Array:
    """The index of the value nearest to ``a`` (float32 in [0, 1]) in the signed code's
    magnitudes, or in the unsigned code's where ``unsigned``; int32."""
    bits = jax.lax.bitcast_convert_type(a, jnp.uint32)
    bucket = jnp.clip(_bucket_of(bits).astype(jnp.int32) - _FIRST_BUCKET, 0, _NUM_BUCKETS - 1)
    unsigned = unsigned.astype(jnp.int32)
    position = jnp.asarray(_FIRST_CANDIDATE)[bucket + _NUM_BUCKETS * unsigned]
    above = a > jnp.asarray(_MIDPOINTS)[position]
    return position - _UNSIGNED_OFFSET * unsigned + above.astype(jnp.int32)


# --- One array ---------------------------------------------------------------------------------


def _num_blocks(size: int, block_size: int) -> int:
    return -(-size // block_size)


def _as_blocks(flat: jax.Array, block_size: int) -> jax.Array:
    """``(num_blocks, block_size)``, the last block padded with zeros (which change neither a
    block's maximum nor its choice of code)."""
    blocks = _num_blocks(flat.shape[0], block_size)
    padding = blocks * block_size - flat.shape[0]
    if padding:
        flat = jnp.pad(flat, (0, padding))
    return flat.reshape(blocks, block_size)


@functools.partial(jax.jit, static_argnames="block_size")
def quantize_blockwise(x: jax.Array, block_size: int = 256) -> QuantizedArray:
    """Encodes ``x`` (any shape, any float dtype, at least one element) as 8-bit codes with one
    scale per block of ``block_size`` consecutive elements of ``x.ravel()``.

    Read it back with ``dequantize_blockwise`` and the same ``block_size``.
    """
    block_size = validation.check_static_int("block_size", block_size)
    x = jnp.asarray(x)
    if x.size == 0:
        raise ValueError("quantize_blockwise: cannot quantize an empty array.")
    # The barrier stops XLA from constant-folding the encoding of a constant (the zeros of a
    # state made under jit), which takes seconds per million elements at compile time.
    x = jax.lax.optimization_barrier(x)
    blocks = _as_blocks(x.astype(jnp.float32).ravel(), block_size)
    absmax = jnp.max(jnp.abs(blocks), axis=1)
    finite = jnp.isfinite(absmax)
    # All >= 0 and not all zero: the unsigned code (all-zero blocks take the signed one, so a
    # zero block is stored as scale +0 and decodes as +0).
    unsigned = (jnp.min(blocks, axis=1) >= 0) & (absmax > 0)
    divisor = jnp.where(finite & (absmax > 0), absmax, 1.0)
    magnitude = jnp.abs(blocks) / divisor[:, None]  # in [0, 1]: |x| <= absmax divides exactly
    rank = _rank(magnitude, unsigned[:, None])
    signed_codes = _ZERO_CODE + jnp.where(blocks < 0, -rank, rank)
    unsigned_codes = jnp.where(blocks > 0, jnp.maximum(rank, 1), rank)
    codes = jnp.where(unsigned[:, None], unsigned_codes, signed_codes).astype(jnp.uint8)
    scales = jnp.where(finite, jnp.where(unsigned, -absmax, absmax), jnp.nan)
    return QuantizedArray(
        codes=codes.ravel()[: x.size].reshape(x.shape), scales=scales.astype(jnp.float32)
    )


@functools.partial(jax.jit, static_argnames="block_size")
def dequantize_blockwise(q: QuantizedArray, block_size: int = 256) -> jax.Array:
    """The float32 array that ``q`` (from ``quantize_blockwise`` with the same
    ``block_size``) stands for: each code's table value times its block's absolute maximum."""
    block_size = validation.check_static_int("block_size", block_size)
    codes = jnp.asarray(q.codes)
    scales = jnp.asarray(q.scales, dtype=jnp.float32)
    expected = (_num_blocks(codes.size, block_size),)
    if codes.dtype != jnp.uint8 or scales.shape != expected:
        raise ValueError(
            f"dequantize_blockwise: expected uint8 codes and {expected[0]} scales for "
            f"{codes.size} elements in blocks of {block_size}, got {codes.dtype} codes and "
            f"scales of shape {scales.shape}."
        )
    blocks = _as_blocks(codes.ravel(), block_size).astype(jnp.int32)
    unsigned = (scales < 0).astype(jnp.int32)  # a NaN scale reads as signed: NaN either way
    values = jnp.asarray(_DECODE)[blocks + 256 * unsigned[:, None]] * jnp.abs(scales)[:, None]
    return values.ravel()[: codes.size].reshape(codes.shape)


# --- The wrapper -------------------------------------------------------------------------------


def _opaque(x) -> bool:
    # A nested quantize_state keeps its own state; a QuantizedArray is one value, not a subtree.
    return isinstance(x, (QuantizedState, QuantizedArray))


def quantize_state(
    inner: GradientTransformation, *, block_size: int = 256, min_size: int = 4096
) -> GradientTransformation:
    r"""Keeps the large floating-point leaves of ``inner``'s state in 8 bits per element.

    Every floating-point leaf of ``inner``'s state with at least ``min_size`` elements is stored
    as a :class:`QuantizedArray`: a ``uint8`` code per element (same shape as the leaf) and a
    float32 scale per block of ``block_size`` elements of the flattened leaf (the last block may
    be partial). Each ``update``

    .. math::
        \text{state} \xrightarrow{\text{decode}} s
        \xrightarrow{\text{inner.update}} (\text{updates}, s')
        \xrightarrow{\text{encode}} \text{state}'

    so ``inner`` itself is unchanged and computes with the decoded (float32) values; only what
    is kept between steps is rounded. Each element is rounded to the nearest entry of a
    non-linear 256-entry code (a sign, a unary exponent choosing a decade, and linear fraction
    bits) scaled by its block's absolute maximum; blocks without negative values use an
    unsigned variant with one more bit of precision. The description of the module
    ``gradtx.wrappers.quantized`` gives the code, its errors and the memory arithmetic.

    Memory: a quantized leaf costs :math:`1 + 4/B` bytes per element instead of 4 in float32
    (:math:`B` = ``block_size``), so Adam's two moments cost :math:`2 + 8/B \approx 2.03`
    bytes per parameter instead of 8. Count a state's bytes with :func:`state_nbytes`.

    Smaller leaves (scalars, hyperparameters, biases), integer and boolean leaves (counters)
    and ``None`` are kept as they are, so :func:`gradtx.get_hyperparam` and
    :func:`gradtx.set_hyperparam` work on the wrapped state. Decoded values are float32. A
    block holding a NaN or an Inf decodes as NaN throughout.

    Args:
        inner: the optimizer whose state to quantize, any transformation.
        block_size: elements per scale, a positive int. Smaller blocks follow the local scale
            of the values more closely and cost :math:`4/B` bytes per element more.
        min_size: the fewest elements a leaf needs to be quantized, an int :math:`\ge 0`;
            0-d leaves are never quantized.

    Reference: Dettmers, Lewis, Shleifer and Zettlemoyer (2021), "8-bit Optimizers via
    Block-wise Quantization" (dynamic tree quantization, block-wise absmax scaling). torch.optim
    has no equivalent; ``bitsandbytes.optim.Adam8bit`` is one outside it, for Adam.

    Example:
        >>> import jax.numpy as jnp
        >>> import gradtx as gx
        >>> from gradtx.wrappers.quantized import quantize_state, state_nbytes
        >>> opt = quantize_state(gx.adamw(1e-3))
        >>> w, b = jnp.zeros((1024, 1024), jnp.float32), jnp.zeros(1024, jnp.float32)
        >>> params = {"w": w, "b": b}
        >>> state = opt.init(params)
        >>> updates, state = opt.update(params, state, params)
        >>> round(state_nbytes(state) / 1024**2, 3)  # MiB; w: 2 x (1 + 4/256) bytes an element
        2.039
        >>> round(state_nbytes(gx.adamw(1e-3).init(params)) / 1024**2, 3)  # float32 state
        8.008
    """
    core._check_transforms((inner,), "quantize_state")
    block_size = validation.check_static_int("block_size", block_size)
    min_size = validation.check_static_int("min_size", min_size, minimum=0)
    threshold = max(min_size, 1)  # an empty leaf has nothing to save

    def encode(x):
        # 0-d leaves (hyperparameters, scalars) are never quantized: they would not shrink (one
        # code plus a float32 scale), and a float64 hyperparameter would lose digits.
        if (
            _opaque(x)
            or not _is_float_array(x)
            or np.ndim(x) == 0
            or math.prod(np.shape(x)) < threshold
        ):
            return x
        return quantize_blockwise(x, block_size)

    def decode(x):
        return dequantize_blockwise(x, block_size) if isinstance(x, QuantizedArray) else x

    def compress(state):
        return jax.tree_util.tree_map(encode, state, is_leaf=_opaque)

    def init(params):
        return QuantizedState(inner_state=compress(inner.init(params)))

    inner_update = core.with_extra_args(inner.update)

    def update(updates, state, params=None, **extra_args):
        if not isinstance(state, QuantizedState):
            raise ValueError(
                f"quantize_state: expected a QuantizedState, got {type(state).__name__}. Was "
                "the state made by this transformation's init?"
            )
        inner_state = jax.tree_util.tree_map(decode, state.inner_state, is_leaf=_opaque)
        updates, inner_state = inner_update(updates, inner_state, params, **extra_args)
        return updates, QuantizedState(inner_state=compress(inner_state))

    return GradientTransformation(init, update)


def state_nbytes(state: PyTree) -> int:
    """The total bytes of the array leaves of ``state`` (any pytree; also the
    ``jax.ShapeDtypeStruct`` leaves that ``jax.eval_shape`` returns, to size a state without
    building it).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> import gradtx as gx
        >>> from gradtx.wrappers.quantized import state_nbytes
        >>> params = {"w": jnp.zeros(1000, jnp.float32)}
        >>> state_nbytes(jax.eval_shape(gx.sgd(0.1, momentum=0.9).init, params)) >= 4000
        True
    """
    total = 0
    for leaf in jax.tree_util.tree_leaves(state):
        if isinstance(leaf, jax.ShapeDtypeStruct):
            total += math.prod(leaf.shape) * np.dtype(leaf.dtype).itemsize
        else:
            total += int(getattr(leaf, "nbytes", None) or np.asarray(leaf).nbytes)
    return total


def _is_float_array(x) -> bool:
    dtype = getattr(x, "dtype", None)
    return dtype is not None and jnp.issubdtype(dtype, jnp.floating)

