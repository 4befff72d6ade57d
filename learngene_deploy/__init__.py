"""learngene-deploy: recompose Vision Transformers of any size from learngenes and deploy them per device.

Importing this package is cheap: torch, onnx and the runtimes are imported only by the
modules that need them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from learngene_deploy._version import __version__

if TYPE_CHECKING:
    from learngene_deploy.profile import DeviceProfile, list_profiles, load_profile

__all__ = ["DeviceProfile", "__version__", "list_profiles", "load_profile"]

_LAZY = {
    "DeviceProfile": "learngene_deploy.profile",
    "load_profile": "learngene_deploy.profile",
    "list_profiles": "learngene_deploy.profile",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'learngene_deploy' has no attribute {name!r}")
