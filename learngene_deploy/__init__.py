"""learngene-deploy: recompose Vision Transformers of any size from learngenes and deploy them per device.

Importing this package is cheap: torch, onnx and the runtimes are imported only by the
modules that need them. The public API (``__all__``) is documented in :mod:`learngene_deploy.api`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from learngene_deploy._version import __version__

if TYPE_CHECKING:
    from learngene_deploy.api import Artifact, Learngene, Selection, build, load_learngene, select
    from learngene_deploy.data.contract import Preprocessing
    from learngene_deploy.data.presets import PRESETS, Preset
    from learngene_deploy.profile import DeviceProfile, list_profiles, load_profile

__all__ = [
    "PRESETS",
    "Artifact",
    "DeviceProfile",
    "Learngene",
    "Preprocessing",
    "Preset",
    "Selection",
    "__version__",
    "build",
    "list_profiles",
    "load_learngene",
    "load_profile",
    "select",
]

_LAZY = {
    "DeviceProfile": "learngene_deploy.profile",
    "load_profile": "learngene_deploy.profile",
    "list_profiles": "learngene_deploy.profile",
    "Learngene": "learngene_deploy.api",
    "Selection": "learngene_deploy.api",
    "Artifact": "learngene_deploy.api",
    "build": "learngene_deploy.api",
    "load_learngene": "learngene_deploy.api",
    "select": "learngene_deploy.api",
    "Preprocessing": "learngene_deploy.data.contract",
    "Preset": "learngene_deploy.data.presets",
    "PRESETS": "learngene_deploy.data.presets",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'learngene_deploy' has no attribute {name!r}")
