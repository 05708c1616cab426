"""The parameter trees the benchmark steps on, and their (float32, host) contents."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

# Every benchmark array is float32, whatever JAX's x64 setting (the tests enable x64).
DTYPE = np.float32


class Shape(NamedTuple):
    """A named parameter tree: leaf name -> array shape (leaves in a fixed order).

    ``optimizers`` names the optimizers benchmarked on it (``None``: all of them)."""

    key: str
    title: str
    leaves: dict[str, tuple[int, ...]]
    optimizers: tuple[str, ...] | None = None

    @property
    def n_params(self) -> int:
        return sum(int(np.prod(s)) for s in self.leaves.values())

    @property
    def n_leaves(self) -> int:
        return len(self.leaves)


def single_leaf(n: int, key: str = "single") -> Shape:
    """One flat leaf of ``n`` elements."""
    return Shape(key, f"single leaf of {n:,} params", {"w": (n,)})


def many_leaves(count: int, size: int) -> Shape:
    """``count`` flat leaves of ``size`` elements each."""
    leaves = {f"leaf_{i:03d}": (size,) for i in range(count)}
    return Shape("many", f"{count} leaves × {size:,} ({count * size:,} params)", leaves)


def distinct_leaves(count: int, smallest: int, largest: int,
                    optimizers: tuple[str, ...] | None = None) -> Shape:
    """``count`` flat leaves whose sizes are spread evenly from ``smallest`` to ``largest``, no
    two equal: no compiled kernel can be shared between two leaves."""
    sizes = np.linspace(smallest, largest, count).round().astype(int).tolist()
    if len(set(sizes)) != count:
        raise ValueError(f"{count} sizes from {smallest} to {largest} are not all distinct.")
    leaves = {f"leaf_{i:03d}": (n,) for i, n in enumerate(sizes)}
    title = (f"{count} leaves of distinct sizes {smallest:,}–{largest:,} "
             f"({sum(sizes):,} params)")
    return Shape("distinct", title, leaves, optimizers)


def distinct_matrices(count: int, rows: int, cols: int,
                      optimizers: tuple[str, ...] | None = None) -> Shape:
    """``count`` matrices of distinct shapes: the i-th is ``(rows + i) × (cols + i)``."""
    leaves = {f"w_{i:03d}": (rows + i, cols + i) for i in range(count)}
    n = sum(int(np.prod(s)) for s in leaves.values())
    last = count - 1
    title = (f"{count} matrices of distinct shapes {rows}×{cols}–{rows + last}×{cols + last} "
             f"({n:,} params)")
    return Shape("distinct-2d", title, leaves, optimizers)


def transformer(layers: int, d: int, vocab: int, context: int) -> Shape:
    """A decoder-only transformer's parameters: per layer the q, k, v, o projections (d×d),
    a 4d MLP (d×4d, 4d×d), their biases and two layer norms (16 leaves); plus token and position
    embeddings and a final layer norm (4 leaves)."""
    leaves: dict[str, tuple[int, ...]] = {"tok_emb": (vocab, d), "pos_emb": (context, d)}
    for i in range(layers):
        p = f"layer_{i:02d}/"
        for name in ("wq", "wk", "wv", "wo"):
            leaves[p + name] = (d, d)
            leaves[p + "b" + name[1]] = (d,)
        leaves[p + "w_up"], leaves[p + "b_up"] = (d, 4 * d), (4 * d,)
        leaves[p + "w_down"], leaves[p + "b_down"] = (4 * d, d), (d,)
        for norm in ("ln1", "ln2"):
            leaves[p + norm + "_scale"], leaves[p + norm + "_bias"] = (d,), (d,)
    leaves["ln_f_scale"], leaves["ln_f_bias"] = (d,), (d,)
    n = sum(int(np.prod(s)) for s in leaves.values())
    title = f"transformer-like: {len(leaves)} leaves, {n:,} params (d={d}, {layers} layers)"
    return Shape("transformer", title, leaves)


def mlp(sizes: tuple[int, ...], key: str = "mlp") -> Shape:
    """A multi-layer perceptron's parameters: per layer a weight matrix (fan-in × fan-out) and a
    bias, for consecutive ``sizes``."""
    leaves: dict[str, tuple[int, ...]] = {}
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        leaves[f"layer_{i}/w"], leaves[f"layer_{i}/b"] = (fan_in, fan_out), (fan_out,)
    n = sum(int(np.prod(s)) for s in leaves.values())
    dims = "-".join(str(d) for d in sizes)
    return Shape(key, f"MLP-like {dims}: {len(leaves)} leaves, {n:,} params", leaves)


# The eager-step tree: 4 weight matrices and 4 biases, 67,338 params (the same in a quick run:
# an eager step's cost is per operation, not per element, and this tree is already small).
EAGER_MLP_SIZES = (64, 256, 128, 128, 10)


def eager_shape() -> Shape:
    """The ~65K-parameter tree the eager (un-jitted) steps run on."""
    return mlp(EAGER_MLP_SIZES, key="eager-mlp")


# The optimizers benchmarked on the compile-time trees: compiling their per-leaf steps takes
# tens of seconds per optimizer and contender, so only Adam's.
COMPILE_TREE_OPTIMIZERS = ("Adam",)


def benchmark_shapes(quick: bool) -> list[Shape]:
    """The benchmark trees: a single leaf, many equal leaves, a transformer's 500 leaves, and
    the two compile-time trees (every leaf shape distinct, so a per-leaf step compiles a kernel
    per leaf); ``quick`` gives tiny versions of the same kinds."""
    only = COMPILE_TREE_OPTIMIZERS
    if quick:
        return [single_leaf(65_536), many_leaves(10, 2_000), transformer(2, 16, 64, 16),
                distinct_leaves(12, 100, 1_200, only), distinct_matrices(6, 8, 12, only)]
    # 31 layers × 16 + 4 = 500 leaves, ~26.7M params. The distinct-size tree: 500 leaves of
    # 1,000 to 17,800 params, 4.7M in all; the matrices: 32×48 to 231×247, ~4.5M.
    return [single_leaf(2**24), many_leaves(200, 20_000), transformer(31, 256, 8_192, 512),
            distinct_leaves(500, 1_000, 17_800, only), distinct_matrices(200, 32, 48, only)]


def gpu_large_shape(quick: bool) -> Shape:
    """The ≥1B-parameter single leaf timed only on a GPU (a smaller one in a quick run)."""
    return single_leaf(2**22 if quick else 2**30, key="gpu-large")


def host_tree(shape: Shape, seed: int, scale: float) -> dict[str, np.ndarray]:
    """Float32 normal values times ``scale`` for every leaf, on the host."""
    rng = np.random.default_rng(seed)
    tree = {}
    for name, dims in shape.leaves.items():
        leaf = rng.standard_normal(dims, dtype=DTYPE)
        leaf *= DTYPE(scale)
        tree[name] = leaf
    return tree
