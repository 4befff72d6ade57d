"""Inference backends, looked up by name and imported only when used.

Example:
    >>> from learngene_deploy.backends import get_backend, list_backends
    >>> list_backends()
    ['onnxruntime', 'openvino', 'tensorrt']
    >>> backend = get_backend("openvino")
    >>> compiled = backend.compile("model.onnx", "out/", precision="fp16")
    >>> logits = backend.load_runner(compiled, threads=2).run(images)
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from learngene_deploy.errors import ConfigError
from learngene_deploy.names import BACKEND_CLASSES

if TYPE_CHECKING:
    from learngene_deploy.backends.base import Backend, Compiled, Runner

__all__ = [
    "Backend",
    "Compiled",
    "Runner",
    "get_backend",
    "list_backends",
    "none_available",
    "unavailable_runtimes",
]


def list_backends() -> list[str]:
    """Names of all known backends, installed or not (probe with ``get_backend(name).is_available()``)."""
    return sorted(BACKEND_CLASSES)


def get_backend(name: str, **options: Any) -> Backend:
    """Create the backend registered as ``name``.

    Args:
        name: a name from :func:`list_backends`.
        **options: backend-specific constructor options (e.g. ``inference_precision="bf16"`` for openvino).

    Raises:
        ConfigError: unknown name (with the closest match and the valid names).
    """
    if name not in BACKEND_CLASSES:
        close = difflib.get_close_matches(name, BACKEND_CLASSES, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        msg = f"unknown backend '{name}'{hint}; valid backends are {', '.join(list_backends())}."
        raise ConfigError(msg)
    module, cls = BACKEND_CLASSES[name].split(":")
    return getattr(importlib.import_module(module), cls)(**options)


def unavailable_runtimes(backends: Iterable[str]) -> dict[str, str | None]:
    """Why each of ``backends`` cannot run on this machine (``None`` where it can), e.g. a missing package."""
    return {name: get_backend(name).unavailable_reason() for name in dict.fromkeys(backends)}


def none_available(missing: dict[str, str | None]) -> str | None:
    """One sentence when none of :func:`unavailable_runtimes`' backends runs here (their reasons), else ``None``."""
    if not missing or not all(missing.values()):
        return None
    return "; ".join(dict.fromkeys(r for r in missing.values() if r))


def __getattr__(name: str) -> Any:
    if name in ("Backend", "Compiled", "Runner"):
        from learngene_deploy.backends import base

        return getattr(base, name)
    raise AttributeError(f"module 'learngene_deploy.backends' has no attribute {name!r}")
