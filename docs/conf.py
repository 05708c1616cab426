"""Sphinx configuration for the gradtx documentation.

Build it (warnings are errors; nothing is fetched from the network):

    python -m sphinx -W --keep-going -b html docs docs/_build/html

Generated at build time, so that nothing can drift from the code (all git-ignored):

* ``notebooks/``: copies of ``../notebooks/*.ipynb`` and their index page, rendered from the
  outputs stored in them (never executed here); see ``_ext/gradtx_notebooks.py``.
* ``api/generated/``: one page per optimizer (``sphinx.ext.autosummary``).
* the torch.optim and Optax tables, built from ``gradtx.optimizers.registry`` and the installed
  torch and optax signatures (``_ext/gradtx_tables.py``).

``_ext/gradtx_api_check.py`` fails the build when a name in ``gradtx.__all__`` is not
documented in the API reference.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent))  # the checkout's gradtx, whether installed or not
sys.path.insert(0, str(DOCS / "_ext"))

import gradtx  # noqa: E402

project = "gradtx"
author = "gradtx authors"
copyright = "gradtx authors"
release = version = gradtx.__version__

extensions = [
    "myst_nb",  # Markdown pages and notebooks (registers myst_parser itself)
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    # MathJax 3 copied into _static from a package: formulas render with no network.
    "sphinx-mathjax-offline",
    "gradtx_notebooks",
    "gradtx_tables",
    "gradtx_api_check",
]

exclude_patterns = ["_build", "**.ipynb_checkpoints", "_ext"]
root_doc = "index"

# --- MyST and notebooks ----------------------------------------------------------------------
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
# The notebooks are saved with their outputs; the docs show those and never run them.
nb_execution_mode = "off"
# Drop stderr (JAX platform warnings, progress bars) from the rendered outputs.
nb_output_stderr = "remove"
nb_merge_streams = True

# --- API reference ---------------------------------------------------------------------------
autosummary_generate = True
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_typehints_format = "short"
# Keep the library's own type aliases by name in signatures rather than expanding them.
autodoc_type_aliases = {
    name: f"gradtx.{name}"
    for name in ("Params", "Updates", "OptState", "Schedule", "ScalarOrSchedule")
}
python_use_unqualified_type_names = True
python_maximum_signature_line_length = 90
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_attr_annotations = True

# Every cross-reference must resolve, except to libraries whose docs are not linked (the
# build is offline: no intersphinx).
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(jax|jaxlib|numpy|np|jnp|collections|typing|optax|torch)(\..*)?"),
    (r"py:.*", r"(Any|Callable|Iterable|Mapping|Sequence|NamedTuple|Protocol)"),
    (r"py:.*", r"(PyTree|Mask|InitFn|UpdateFn)"),  # internal aliases, described in the text
    (r"py:.*", r"(float|int|bool|str|None|tuple|list|dict)"),
    (r"py:.*", r"(SearchStrategy|OptimizerInfo)"),  # hypothesis's type; the registry's record
]

# --- HTML ------------------------------------------------------------------------------------
html_theme = "sphinx_book_theme"
html_title = f"gradtx {release}"
html_theme_options = {
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "use_download_button": True,
}
html_static_path: list[str] = []


# --- Local fixes -----------------------------------------------------------------------------
# Sphinx prints an aliased type nested in another (`Sequence[Schedule]`, `ScalarOrSchedule |
# None`) as "TypeAliasForwardRef('gradtx.Schedule')": put the alias's name back. A function as a
# default value (adafactor's `relative_step_size`) prints as "<function name>": keep the name.
# (autodoc_preserve_defaults would do the latter, but it replaces the signatures of the live
# functions, which the generated tables read.)
_SIGNATURE_FIXES = (
    (re.compile(r"TypeAliasForwardRef\('([\w.]+)'\)"), r"\1"),
    (re.compile(r"<function (\w+)[^>]*>"), r"\1"),
)


def _clean_signature(app, what, name, obj, options, signature, return_annotation):
    def fix(text):
        for pattern, replacement in _SIGNATURE_FIXES:
            text = pattern.sub(replacement, text) if text else text
        return text

    return fix(signature), fix(return_annotation)


def setup(app):
    app.connect("autodoc-process-signature", _clean_signature)
