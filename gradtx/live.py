"""Live hyperparameters inside an optimizer's chain, and the optimizer's one step count.

An optimizer built by :func:`gradtx.inject_hyperparams` builds its chain of transforms once.
Each hyperparameter that lives in the state (a number, an array or a schedule) reaches the
transforms as a :class:`Live` placeholder; while the optimizer runs ``init`` or ``update`` it
opens a *step scope* holding the values of this step and its step count, and a transform turns
a placeholder into this step's value with :func:`read`. So the chain is never rebuilt and no
Python validation runs per step, while the values stay in the state: readable, settable,
schedulable, traced under ``jit`` and batched under ``vmap``.

Transforms that need the number of steps taken (bias corrections, NAdam's momentum schedule,
RAdam's rectification, schedules) read the optimizer's count with :func:`step_count` instead of
keeping their own, so an optimizer's state holds one step counter. Built outside any optimizer
they keep their own (see :mod:`gradtx.transforms.counting`).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Mapping
from typing import Any


class Live:
    """Stands for the hyperparameter ``name`` of one built optimizer (its ``owner``) inside
    that optimizer's chain; :func:`read` gives its value at the current step."""

    __slots__ = ("name", "owner")

    def __init__(self, name: str, owner: object):
        self.name = name
        self.owner = owner

    def __repr__(self) -> str:
        return f"<live hyperparameter {self.name!r}>"

    def _unread(self, *args, **kwargs):
        raise UnreadPlaceholder(
            f"{self!r} was used as a number without being read: a transformation must call "
            "gradtx.hyperparams.read(value) on its hyperparameters in its init and update."
        )

    # Anything but reading it through `read` refuses, loudly: arithmetic, comparisons, truth,
    # conversion to an array. A factory of transforms that are not gradtx's (an Optax factory)
    # does one of these, and gradtx.inject_hyperparams then rebuilds that factory per step.
    __jax_array__ = __array__ = __bool__ = __float__ = __int__ = __index__ = _unread
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _unread
    __truediv__ = __rtruediv__ = __pow__ = __rpow__ = __neg__ = __abs__ = _unread
    __lt__ = __le__ = __gt__ = __ge__ = _unread


class UnreadPlaceholder(TypeError):
    """A :class:`Live` placeholder was used as a number instead of being read."""


class _Frame:
    __slots__ = ("owner", "values", "count")

    def __init__(self, owner, values, count):
        self.owner, self.values, self.count = owner, values, count


_local = threading.local()


def _frames() -> list[_Frame]:
    frames = getattr(_local, "frames", None)
    if frames is None:
        frames = _local.frames = []
    return frames


@contextlib.contextmanager
def step_scope(owner: object, values: Mapping[str, Any], count: Any) -> Iterator[None]:
    """Within the block, placeholders of ``owner`` read ``values`` and :func:`step_count` is
    ``count`` (None: no shared count, transforms keep their own)."""
    frames = _frames()
    frames.append(_Frame(owner, values, count))
    try:
        yield
    finally:
        frames.pop()


def own_counts() -> contextlib.AbstractContextManager:
    """A block in which transforms keep their own step counts: for wrappers that skip some
    steps of the transformation they wrap, whose count then differs from the optimizer's."""
    return step_scope(None, {}, None)


def read(value):
    """This step's value of a hyperparameter: ``value`` itself unless it is a :class:`Live`
    placeholder, which is looked up in its optimizer's step scope."""
    if not isinstance(value, Live):
        return value
    for frame in reversed(_frames()):
        if frame.owner is value.owner:
            return frame.values[value.name]
    raise RuntimeError(
        f"{value!r} was read outside its optimizer's init or update. A transformation built "
        "by an optimizer runs only through that optimizer's init and update."
    )


def step_count():
    """The number of steps the enclosing optimizer has taken before this one (an int32
    scalar), or None when no optimizer shares its count here."""
    frames = _frames()
    return frames[-1].count if frames else None


def is_live(value) -> bool:
    return isinstance(value, Live)
