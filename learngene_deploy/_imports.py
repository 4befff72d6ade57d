"""Probe optional dependencies without importing them.

Heavy modules (torch, onnx, onnxruntime, openvino, tensorrt) are imported only inside the
functions that use them, so ``lgdeploy --help`` stays fast and works without any runtime.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from learngene_deploy.errors import BackendUnavailableError

# module name -> how to install it (backends carry their own hint: Backend.install_hint)
_INSTALL_HINTS: dict[str, str] = {
    "nncf": "`pip install 'learngene-deploy[int8]'`",
    "datasets": "`pip install 'learngene-deploy[hf]'`",
    "onnxslim": "`pip install 'learngene-deploy[slim]'`",
}


def is_available(module: str) -> bool:
    """Return True when ``module`` can be imported, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require(module: str, *, purpose: str, hint: str | None = None) -> ModuleType:
    """Import ``module`` or raise BackendUnavailableError naming how to install it.

    The one optional-import helper: backends (:meth:`learngene_deploy.backends.base.Backend.require`), the
    exporters' simplifiers, NNCF and ``datasets`` all go through it.

    Args:
        module: top-level module name, e.g. ``"tensorrt"``.
        purpose: what it is needed for, used in the error message.
        hint: how to install it, as the end of a sentence (default: ``install it with `pip install ...```).
    """
    hint = hint or f"install it with {_INSTALL_HINTS.get(module, f'`pip install {module}`')}"
    if not is_available(module):
        msg = f"{purpose} needs the Python module '{module}', which is not installed here; {hint}."
        raise BackendUnavailableError(msg)
    try:
        return importlib.import_module(module)
    except (ImportError, OSError) as e:  # installed but broken (e.g. missing shared libraries)
        msg = f"{purpose} needs '{module}', which is installed but fails to import ({e}); {hint}."
        raise BackendUnavailableError(msg) from e
