"""The machine this runs on and the versions of the tools that shape an artifact (no heavy imports).

Recorded in manifests, latency tables and calibration runs so that a measurement is never mistaken for another
machine's, and read by selection to notice a table measured elsewhere.
"""

from __future__ import annotations

import contextlib
import os
import platform
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

# Distributions whose versions go into every manifest (read from package metadata; nothing is imported).
TOOLS = (
    "learngene-deploy",
    "torch",
    "timm",
    "onnx",
    "onnxscript",
    "onnxsim",
    "onnxslim",
    "onnxruntime",
    "openvino",
    "nncf",
    "tensorrt",
    "numpy",
)


def tool_versions() -> dict[str, str | None]:
    """Installed versions of the tools that shape an artifact (None where not installed)."""
    versions: dict[str, str | None] = {}
    for dist in TOOLS:
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return versions


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _memory_mb() -> float | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024
    return None


def host_facts() -> dict[str, Any]:
    """The machine this runs on (recorded so build-machine measurements are never mistaken for the target's)."""
    return {
        "hostname": platform.node(),
        "system": platform.system(),
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "memory_mb": _memory_mb(),
        "python": platform.python_version(),
    }


def utc_now() -> str:
    """The current UTC time as manifests record it (ISO 8601, whole seconds)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def process_age_s() -> float | None:
    """Seconds since this process started (Linux ``/proc``; None elsewhere): a command's start-up time so far."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22 (starttime), counted after the name
    except (OSError, ValueError, IndexError):
        return None
