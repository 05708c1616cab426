"""The comparison's optional packages, imported only when a run needs them.

gradtx itself depends on JAX and NumPy alone; the comparison also needs scikit-learn (the digits
data), tqdm (progress bars) and matplotlib (the plot), which the ``gradtx[compare]`` extra
installs. Importing them here, on demand, keeps ``import gradtx`` working without them.
"""

from __future__ import annotations

import importlib
from types import ModuleType

INSTALL_HINT = 'pip install "gradtx[compare]"  (from a checkout: pip install -e ".[compare]")'


class MissingDependency(RuntimeError):
    """An optional package the comparison needs is not installed."""


def require(module: str, package: str, purpose: str) -> ModuleType:
    """Imports ``module``; if that fails, raises :class:`MissingDependency` naming ``package``
    (the name to install, which may differ from the module's: ``sklearn`` is scikit-learn)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependency(
            f"`python -m gradtx compare` needs {package} for {purpose}, and it is not installed "
            f"({exc}). Install it with: {INSTALL_HINT}"
        ) from None
