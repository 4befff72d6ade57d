"""Probe optional dependencies without importing them.

Heavy modules (torch, onnx, onnxruntime, openvino, tensorrt) are imported only inside the
functions that use them, so ``lgdeploy --help`` stays fast and works without any runtime.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from learngene_deploy.errors import BackendUnavailableError

# module name -> (extra that installs it, what to tell the user)
_INSTALL_HINTS: dict[str, str] = {
    "tensorrt": "TensorRT's libraries come only from NVIDIA (JetPack on Jetson, or `pip install tensorrt` "
    "with NVIDIA's index on an x86 machine with a GPU)",
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


def require(module: str, *, purpose: str) -> ModuleType:
    """Import ``module`` or raise BackendUnavailableError naming how to install it.

    Args:
        module: top-level module name, e.g. ``"tensorrt"``.
        purpose: what it is needed for, used in the error message.
    """
    hint = _INSTALL_HINTS.get(module, f"`pip install {module}`")
    if not is_available(module):
        msg = f"{purpose} needs the Python module '{module}', which is not installed here; install it with {hint}."
        raise BackendUnavailableError(msg)
    try:
        return importlib.import_module(module)
    except ImportError as e:  # installed but broken (e.g. missing shared libraries)
        msg = f"{purpose} needs '{module}', which is installed but fails to import ({e}); reinstall it with {hint}."
        raise BackendUnavailableError(msg) from e
