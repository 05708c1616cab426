"""Named state: read and replace entries of an optimizer state by name.

An optimizer state is a pytree of NamedTuples, dicts and tuples. Its *entries* are named by
the steps that lead to them: NamedTuple field names, string dict keys, and the attribute names
of registered dataclass-like nodes. Tuple and list positions carry no name. So in

.. code-block:: python

   {"opt": (EmptyState(), Moments(count=c, mu={"w": w}))}

``"opt"``, ``"count"``, ``"mu"`` and ``"w"`` name entries (``"opt"`` the whole tuple, ``"mu"``
a dict, ``"w"`` and ``"count"`` arrays). A key selects the one entry it names, anywhere in the
tree; it may be qualified by the names of enclosing entries, joined by ``/`` (``"mu/w"``,
``"opt/count"``): a qualified key matches an entry when it spells the last names along the
entry's path. A key starting with ``/`` must spell the whole path from the root (``"/opt"``),
which selects an entry whose name is also the end of another entry's path.

:func:`tree_get` returns an entry; :func:`tree_set` returns a copy of the tree with entries
replaced, checked to keep the tree structure, shapes and dtypes, so that a jitted step taking
the state is not recompiled and the state cannot be silently corrupted.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

PyTree = Any

__all__ = ["tree_get", "tree_set"]

# At most this many names are listed in an error message.
_MAX_LISTED = 40
_MISSING = object()


class _Entry(NamedTuple):
    index: tuple[int, ...]  # child positions from the root, to rebuild the tree
    keypath: tuple  # JAX key entries from the root, for messages
    names: tuple[str, ...]  # the named steps along keypath
    value: Any


# --------------------------------------------------------------------------------------------
# Walking the tree


def _one_level(node):
    """``(keys, children, treedef)`` of ``node`` one level down, or None when it is a leaf.

    ``None`` is an empty node (no children), as it is for JAX.
    """
    flat, treedef = jax.tree_util.tree_flatten_with_path(node, is_leaf=lambda x: x is not node)
    if len(flat) == 1 and flat[0][0] == ():
        return None
    return [path[0] for path, _ in flat], [child for _, child in flat], treedef


def _field_names(node, children) -> tuple[str, ...] | None:
    """Attribute names for the children of a node registered without keys, when the node is a
    dataclass (or exposes ``_fields``) and its children are exactly its fields' values, in
    order and all distinct objects; otherwise None (the children stay unnamed)."""
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        names = tuple(f.name for f in dataclasses.fields(node))
    else:
        names = getattr(node, "_fields", None)
        if not isinstance(names, (tuple, list)):
            return None
        names = tuple(names)
    if len(names) != len(children) or not all(isinstance(n, str) for n in names):
        return None
    if len({id(c) for c in children}) != len(children):
        return None
    if all(getattr(node, n, _MISSING) is c for n, c in zip(names, children, strict=True)):
        return names
    return None


def _named_keys(node, keys, children):
    """``(key, name or None)`` for each child: the key entry to show in messages and the name
    the step adds (None for tuple/list positions and non-string dict keys)."""
    fields = None
    if any(isinstance(k, jax.tree_util.FlattenedIndexKey) for k in keys):
        fields = _field_names(node, children)
    out = []
    for i, key in enumerate(keys):
        if isinstance(key, jax.tree_util.GetAttrKey):
            out.append((key, key.name))
        elif isinstance(key, jax.tree_util.DictKey) and isinstance(key.key, str):
            out.append((key, key.key))
        elif isinstance(key, jax.tree_util.FlattenedIndexKey) and fields is not None:
            out.append((jax.tree_util.GetAttrKey(fields[i]), fields[i]))
        else:
            out.append((key, None))
    return out


def _entries(tree: PyTree) -> list[_Entry]:
    """Every named entry of ``tree`` (leaves and subtrees), in tree order. An entry holding
    ``None`` holds nothing (a transform's own step count left out inside an optimizer, which
    keeps one), so it is not an entry: ``count`` names the optimizer's one count."""
    found: list[_Entry] = []

    def visit(node, index, keypath, names):
        level = _one_level(node)
        if level is None:
            return
        keys, children, _ = level
        for i, ((key, name), child) in enumerate(
            zip(_named_keys(node, keys, children), children, strict=True)
        ):
            child_index, child_keypath = index + (i,), keypath + (key,)
            child_names = names if name is None else names + (name,)
            if name is not None and child is not None:
                found.append(_Entry(child_index, child_keypath, child_names, child))
            visit(child, child_index, child_keypath, child_names)

    visit(tree, (), (), ())
    return found


def _aliases(names: tuple[str, ...]) -> set[str]:
    """The keys that match an entry with these names: every ending of its path joined by
    ``/``, and the whole path after a leading ``/``."""
    return {"/".join(names[k:]) for k in range(len(names))} | {"/" + "/".join(names)}


class _Index:
    """The entries of a tree and which keys match them."""

    def __init__(self, tree: PyTree):
        self.entries = _entries(tree)
        self.matches: dict[str, list[int]] = {}
        for i, entry in enumerate(self.entries):
            for alias in _aliases(entry.names):
                self.matches.setdefault(alias, []).append(i)

    def short_name(self, entry: _Entry) -> str | None:
        """The shortest key that selects ``entry`` alone, or None when no key does (another
        entry has the same names along its path: they differ only by tuple positions)."""
        names = entry.names
        for k in range(len(names) - 1, -1, -1):
            candidate = "/".join(names[k:])
            if len(self.matches[candidate]) == 1:
                return candidate
        anchored = "/" + "/".join(names)
        return anchored if len(self.matches[anchored]) == 1 else None

    def find(self, key: str) -> _Entry:
        if not isinstance(key, str):
            raise TypeError(f"an entry name must be a str, got {type(key).__name__}: {key!r}")
        hits = self.matches.get(key, [])
        if len(hits) == 1:
            return self.entries[hits[0]]
        if not hits:
            raise KeyError(self._missing_message(key))
        raise KeyError(self._ambiguous_message(key, [self.entries[i] for i in hits]))

    def _missing_message(self, key: str) -> str:
        if not self.entries:
            return (
                f"no entry named {key!r}: this tree has no named entries (entries are named by "
                "NamedTuple fields, dataclass fields and string dict keys)"
            )
        # An entry no key selects alone shows its whole path and how many entries share it.
        names, listed = set(), set()
        for entry in self.entries:
            short = self.short_name(entry)
            if short is not None:
                names.add(short)
                listed.add(short)
            else:
                full = "/".join(entry.names)
                names.add(full)
                listed.add(f"{full} ({len(self.matches['/' + full])} entries)")
        message = f"no entry named {key!r}."
        close = difflib.get_close_matches(key, sorted(names), n=3)
        if close:
            message = f"no entry named {key!r}; did you mean {' or '.join(map(repr, close))}?"
        return f"{message} Entries: {_listing(sorted(listed))}"

    def _ambiguous_message(self, key: str, hits: list[_Entry]) -> str:
        selectable = [n for n in (self.short_name(e) for e in hits) if n is not None]
        hidden = [e for e in hits if self.short_name(e) is None]
        message = f"entry name {key!r} is ambiguous: it matches {len(hits)} entries."
        if selectable:
            message += f" Qualify it as one of: {_listing(selectable)}."
        if hidden:
            paths = [_where(e.keypath) for e in hidden]
            # The subtree below the entry's last unnamed step, where its names are unique.
            example = hidden[0]
            cut = max(
                (i + 1 for i, k in enumerate(example.keypath) if _step_name(k) is None),
                default=0,
            )
            rest = [n for k in example.keypath[cut:] if (n := _step_name(k)) is not None]
            message += (
                f" The entries at {_listing(paths)} have the same names along their paths (they "
                "differ only by tuple or list positions), so no key selects one of them: look "
                "it up in the part of the tree that holds it, e.g. "
                f"tree_get(tree{jax.tree_util.keystr(example.keypath[:cut])}, "
                f"{'/'.join(rest)!r})."
            )
        return message


def _step_name(key) -> str | None:
    if isinstance(key, jax.tree_util.GetAttrKey):
        return key.name
    if isinstance(key, jax.tree_util.DictKey) and isinstance(key.key, str):
        return key.key
    return None


def _listing(items: list[str]) -> str:
    if len(items) <= _MAX_LISTED:
        return ", ".join(items)
    return ", ".join(items[:_MAX_LISTED]) + f", ... ({len(items) - _MAX_LISTED} more)"


def _where(keypath) -> str:
    return jax.tree_util.keystr(tuple(keypath)) or "<root>"


# --------------------------------------------------------------------------------------------
# Checking and converting new values


def _is_array_like(x) -> bool:
    return hasattr(x, "shape") and hasattr(x, "dtype")


_CATEGORIES = (
    ("bool", jnp.bool_),
    ("integer", jnp.integer),
    ("floating", jnp.floating),
    ("complex", jnp.complexfloating),
)


def _rank(dtype) -> int | None:
    """0 bool, 1 integer, 2 floating, 3 complex; a value converts to a dtype of its rank or a
    higher one (as NumPy's ``same_kind`` casting, also for bfloat16 and the float8s)."""
    for rank, (_, kind) in enumerate(_CATEGORIES):
        if jnp.issubdtype(dtype, kind):
            return rank
    return None


def _describe(node) -> str:
    if node is None:
        return "None"
    level = _one_level(node)
    if level is None:
        if _is_array_like(node):
            return f"an array of shape {tuple(node.shape)} and dtype {np.dtype(node.dtype)}"
        return f"a {type(node).__name__} leaf"
    keys, kind = level[0], type(node).__name__
    if all(isinstance(k, jax.tree_util.SequenceKey) for k in keys):
        return f"a {kind} of {len(keys)} entries"
    labels = [
        repr(k.key) if isinstance(k, jax.tree_util.DictKey) else jax.tree_util.keystr((k,))
        for k in keys
    ]
    shown = ", ".join(labels[:10]) + (", ..." if len(labels) > 10 else "")
    return f"a {kind} with entries ({shown})"


def _conform(key: str, old, new, keypath) -> Any:
    """``new`` as a replacement of ``old``: the same tree structure, every array leaf the same
    shape and dtype (NumPy values and Python numbers converted to the old dtype); raises
    ``ValueError`` naming ``key`` and the path where they differ."""
    old_level, new_level = _one_level(old), _one_level(new)
    if old_level is None and new_level is None:
        return _conform_leaf(key, old, new, keypath)
    if old_level is None or new_level is None or old_level[2] != new_level[2]:
        raise ValueError(
            f"tree_set: the new value for {key!r} does not have the structure of the entry: at "
            f"{_where(keypath)} the entry holds {_describe(old)}, the new value "
            f"{_describe(new)}."
        )
    children = [
        _conform(key, o, n, keypath + (k,))
        for k, o, n in zip(old_level[0], old_level[1], new_level[1], strict=True)
    ]
    return new_level[2].unflatten(children)


def _conform_leaf(key: str, old, new, keypath):
    where = _where(keypath)

    def fail(detail: str):
        return ValueError(f"tree_set: the new value for {key!r} at {where} {detail}")

    if not _is_array_like(old):
        # A Python number (or other object) held as a leaf: keep its type.
        if isinstance(old, (bool, int, float, complex)):
            if isinstance(new, (bool, int, float, complex)) and not _is_array_like(new):
                if _rank(np.result_type(new)) <= _rank(np.result_type(old)):
                    return type(old)(new)
            raise fail(f"is {new!r}; the entry is a Python {type(old).__name__}, give one.")
        if type(new) is type(old):
            return new
        raise fail(f"is a {type(new).__name__}; the entry is a {type(old).__name__}.")

    shape, dtype = tuple(old.shape), np.dtype(old.dtype)
    if isinstance(new, jax.Array):  # a JAX array or a traced value: exact shape and dtype
        accepted = {dtype, np.dtype(jax.dtypes.canonicalize_dtype(dtype))}
        if tuple(new.shape) != shape or np.dtype(new.dtype) not in accepted:
            raise fail(
                f"has shape {tuple(new.shape)} and dtype {np.dtype(new.dtype)}; the entry has "
                f"shape {shape} and dtype {dtype} (convert it with .astype({str(dtype)!r}))."
            )
        return new

    # A NumPy value, Python number or other array-like: converted to the entry's dtype.
    try:
        value = np.asarray(new)
    except Exception as error:  # reported as a problem of the value
        raise fail(f"cannot be converted to an array: {error}") from error
    src_rank, dst_rank = _rank(value.dtype), _rank(dtype)
    if src_rank is None:
        raise fail(f"has dtype {value.dtype}, which is not numeric; the entry has dtype {dtype}.")
    if dst_rank is None or src_rank > dst_rank:
        raise fail(
            f"has dtype {value.dtype}, which does not convert to the entry's dtype {dtype} "
            "without losing its kind (e.g. a float for an integer entry)."
        )
    if value.shape != shape:
        raise fail(
            f"has shape {value.shape}; the entry has shape {shape} (give exactly that shape; "
            "only a 0-d entry takes a scalar)."
        )
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported just below
        converted = value.astype(dtype)
    if dst_rank == 1 and not np.array_equal(converted.astype(value.dtype), value):
        raise fail(f"does not fit the entry's dtype {dtype}.")
    if dst_rank >= 2 and not np.array_equal(
        np.isfinite(converted), np.isfinite(value), equal_nan=False
    ):
        raise fail(f"overflows the entry's dtype {dtype}.")

    if isinstance(old, (np.ndarray, np.generic)):
        return converted if isinstance(old, np.ndarray) else converted[()]
    if isinstance(old, jax.Array) and not isinstance(old, jax.core.Tracer):
        sharding = getattr(old, "sharding", None)
        if sharding is not None and len(sharding.device_set) > 1:
            return jax.device_put(converted, sharding)  # keep the entry's sharding
    return jnp.asarray(converted)


def _rebuild(node, replacements: dict[tuple[int, ...], Any], index: tuple[int, ...]):
    if index in replacements:
        return replacements[index]
    _, children, treedef = _one_level(node)
    depth = len(index)
    for i in sorted({r[depth] for r in replacements if r[:depth] == index}):
        children[i] = _rebuild(children[i], replacements, index + (i,))
    return treedef.unflatten(children)


# --------------------------------------------------------------------------------------------
# Public API


def tree_get(tree: PyTree, key: str) -> Any:
    """The one entry of ``tree`` named ``key``: a leaf or a whole subtree.

    Entries are named by NamedTuple field names, string dict keys and the attribute names of
    registered dataclass-like nodes, anywhere in the tree; tuple and list positions carry no
    name. ``key`` may be qualified by the names of enclosing entries, joined by ``/``
    (``"opt/mu"``): it matches an entry when it spells the last names along the entry's path.
    A key that starts with ``/`` must spell the whole path from the root.

    Works eagerly and inside ``jax.jit`` (the tree's structure is static).

    Args:
        tree: a pytree, e.g. an optimizer state.
        key: an entry name, possibly qualified (``"mu"``, ``"opt/mu"``, ``"mu/w"``).

    Returns:
        The entry itself (the same object as in ``tree``).

    Raises:
        KeyError: no entry matches ``key`` (the message lists the entries' names, each
            qualified enough to be unique), or several do (the message lists their qualified
            names to choose from).
        TypeError: ``key`` is not a string.

    Example:
        >>> from typing import NamedTuple
        >>> import jax.numpy as jnp
        >>> import gradtx as gx
        >>> class Moments(NamedTuple):
        ...     count: object
        ...     mu: object
        >>> state = {"opt": Moments(count=jnp.zeros([], jnp.int32),
        ...                         mu={"w": jnp.ones(2, jnp.float32)})}
        >>> gx.tree_get(state, "w").tolist()
        [1.0, 1.0]
        >>> gx.tree_get(state, "opt/mu")  # a subtree
        {'w': Array([1., 1.], dtype=float32)}
        >>> gx.tree_get(state, "counts")
        Traceback (most recent call last):
        ...
        KeyError: "no entry named 'counts'; did you mean 'count'? Entries: count, mu, opt, w"
    """
    return _Index(tree).find(key).value


def tree_set(tree: PyTree, values: Mapping[str, Any] | None = None, /, **kwargs: Any) -> PyTree:
    """A copy of ``tree`` in which each named entry is replaced by the given value.

    Each key selects one entry by :func:`tree_get`'s rules. Keys with a ``/`` (qualified names)
    cannot be keyword arguments: give them in the ``values`` mapping,
    ``tree_set(state, {"opt/mu": new_mu}, count=0)``.

    Every new value must have the entry's tree structure, and every leaf the old leaf's shape
    and dtype, so a jitted step taking the tree is not recompiled and the tree is never
    silently corrupted. JAX arrays (and traced values) must match exactly; NumPy values and
    Python numbers are converted to the old leaf's dtype when that keeps their kind (an int for
    a float entry, not a float for an integer one) and their values fit, and must have the old
    shape (a scalar only for a 0-d entry). Works eagerly and inside ``jax.jit``.

    The input is not modified; the result shares every entry that is not replaced.

    Args:
        tree: a pytree, e.g. an optimizer state.
        values: entries to replace, by (possibly qualified) name.
        **kwargs: more entries to replace, by plain name.

    Returns:
        The changed copy of ``tree``.

    Raises:
        KeyError: a key matches no entry or several (as :func:`tree_get`).
        ValueError: a new value differs from its entry in structure, shape or dtype (the
            message names the key and the path), or two keys select the same entry or one
            inside the other.
        TypeError: a key is not a string, is given twice, or ``values`` is not a mapping.

    Example:
        >>> from typing import NamedTuple
        >>> import jax.numpy as jnp
        >>> import gradtx as gx
        >>> class Moments(NamedTuple):
        ...     count: object
        ...     mu: object
        >>> state = {"opt": Moments(count=jnp.zeros([], jnp.int32),
        ...                         mu={"w": jnp.ones(2, jnp.float32)})}
        >>> new = gx.tree_set(state, {"mu/w": jnp.asarray([3.0, 4.0], jnp.float32)}, count=5)
        >>> new["opt"].mu["w"].tolist(), new["opt"].count.tolist(), new["opt"].count.dtype
        ([3.0, 4.0], 5, dtype('int32'))
        >>> state["opt"].count.tolist()  # the input is unchanged
        0
        >>> gx.tree_set(state, w=jnp.ones(3, jnp.float32))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: tree_set: the new value for 'w' at ['opt'].mu['w'] has shape (3,) ...
    """
    updates: dict[str, Any] = {}
    if values is not None:
        if not isinstance(values, Mapping):
            raise TypeError(
                "tree_set's second argument is a mapping from entry names to new values, got "
                f"{type(values).__name__}"
            )
        updates.update(values)
    for name, value in kwargs.items():
        if name in updates:
            raise TypeError(f"tree_set: entry {name!r} is given twice")
        updates[name] = value
    if not updates:
        return tree

    index = _Index(tree)
    chosen: list[tuple[str, _Entry, Any]] = []
    for name, value in updates.items():
        entry = index.find(name)
        chosen.append((name, entry, _conform(name, entry.value, value, entry.keypath)))

    chosen.sort(key=lambda c: c[1].index)
    for (name_a, a, _), (name_b, b, _) in zip(chosen, chosen[1:], strict=False):
        if b.index[: len(a.index)] == a.index:
            detail = "the same entry" if a.index == b.index else "an entry and one inside it"
            raise ValueError(
                f"tree_set: {name_a!r} and {name_b!r} select {detail} "
                f"({_where(a.keypath)}, {_where(b.keypath)}); give one of them."
            )
    return _rebuild(tree, {entry.index: new for _, entry, new in chosen}, ())
