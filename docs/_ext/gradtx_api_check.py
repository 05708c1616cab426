"""Fails the build when the API reference and ``gradtx.__all__`` disagree.

At the end of every build (the docs build with ``-W``, so a warning fails it), this compares
``gradtx.__all__`` with the Python objects documented as ``gradtx.<name>`` (by ``autofunction``,
``autoclass``, ``py:type``, ...) and warns, listing the names:

* public names missing from the reference;
* names documented as ``gradtx.<name>`` that are not in ``gradtx.__all__``;
* optimizers whose docstring has no ``.. math::`` block (their pages show the update rule).
"""

from __future__ import annotations

import inspect

from sphinx.application import Sphinx
from sphinx.util import logging

logger = logging.getLogger(__name__)

PACKAGE = "gradtx"
# Public names in gradtx.optimizers that are not optimizers (a recipe is a multi_transform
# of optimizers whose pages give the rules).
NOT_OPTIMIZERS = frozenset({"relative_step_size", "is_hidden_matrix", "muon_with_adamw"})


def documented_names(app: Sphinx) -> set[str]:
    """The ``x`` of every object documented as ``gradtx.x`` (not ``gradtx.a.b``)."""
    prefix = PACKAGE + "."
    domains = app.env.domains
    # Sphinx >= 8.1 names the domains as attributes; older versions look them up by name.
    python = domains.python_domain if hasattr(domains, "python_domain") else domains["py"]
    return {
        name[len(prefix) :]
        for name, entry in python.objects.items()
        if name.startswith(prefix) and "." not in name[len(prefix) :] and not entry.aliased
    }


def check_api(app: Sphinx, exception: Exception | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    import gradtx
    import gradtx.optimizers

    public = set(gradtx.__all__)
    documented = documented_names(app)
    missing = sorted(public - documented)
    if missing:
        logger.warning(
            "API reference: %d public name(s) in gradtx.__all__ are not documented: %s. Add "
            "them to a page under docs/api/.",
            len(missing), ", ".join(missing), type="gradtx", subtype="api",
        )
    unknown = sorted(documented - public)
    if unknown:
        logger.warning(
            "API reference: documented as gradtx.<name> but not in gradtx.__all__: %s.",
            ", ".join(unknown), type="gradtx", subtype="api",
        )
    no_rule = [
        name
        for name in gradtx.optimizers.__all__
        if name not in NOT_OPTIMIZERS
        and ".. math::" not in (inspect.getdoc(getattr(gradtx.optimizers, name)) or "")
    ]
    if no_rule:
        logger.warning(
            "API reference: optimizer docstrings without an update rule (a `.. math::` "
            "block): %s.", ", ".join(no_rule), type="gradtx", subtype="api",
        )
    if not (missing or unknown or no_rule):
        logger.info("gradtx_api_check: all %d public names are documented.", len(public))


def setup(app: Sphinx) -> dict:
    # build-finished runs on every build, incremental ones included, after all pages are read.
    app.connect("build-finished", check_api)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
