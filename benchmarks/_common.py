"""What the benchmark scripts share: where results go, writing them, the host facts and load they record."""

from __future__ import annotations

import argparse
import atexit
import json
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

RESULTS = Path("benchmarks/results")  # relative to the repository root, where `python -m benchmarks.NAME` runs


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON with a final newline, creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def arguments(args: argparse.Namespace) -> dict[str, Any]:
    """The parsed options as JSON values (paths as strings)."""
    return {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}


def command_line() -> str:
    """The command that started this run, to record with its results: ``python -m benchmarks.NAME ARGS...``."""
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    start = ["-m", spec.name] if spec is not None else sys.argv[:1]
    return " ".join(["python", *start, *sys.argv[1:]])


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (``platform.processor()`` where there is none)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def cpu_family() -> str:
    """The CPU's vendor, family and model numbers from /proc/cpuinfo, e.g. ``AuthenticAMD 25/17`` (AMD family 25 is
    Zen 3/4, 26 is Zen 5): the model name of a virtual machine often says only "AMD EPYC"."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        return ""
    fields: dict[str, str] = {}
    for line in cpuinfo.read_text().splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
        if not line.strip():
            break
    return f"{fields.get('vendor_id', '')} {fields.get('cpu family', '?')}/{fields.get('model', '?')}".strip()


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def _torch_version() -> str:
    import torch

    return torch.__version__


HOST_FACTS = {
    "machine": platform.machine,
    "processor": platform.processor,
    "cpu": cpu_model,
    "cpu_family": cpu_family,
    "cpus": os.cpu_count,
    "logical_cpus": os.cpu_count,
    "threads": _torch_threads,
    "torch": _torch_version,
    "python": platform.python_version,
}


def host_facts(*keys: str, **extra: Any) -> dict[str, Any]:
    """The named facts about this machine (:data:`HOST_FACTS`; each script records its own choice), then ``extra``."""
    return {key: HOST_FACTS[key]() for key in keys} | extra


def loadavg() -> str:
    """This machine's /proc/loadavg line: the 1, 5 and 15 minute load averages, then running/total tasks, last pid.

    ``loadavg().split()[:3]`` are the three averages as the JSON records them.
    """
    return Path("/proc/loadavg").read_text().strip()


def temp_workdir(prefix: str) -> Path:
    """A new temporary folder, removed with everything in it when the process exits (compiled models, artifacts)."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, workdir, True)
    return workdir


def print_depth_grid(title: str, rows: list[dict[str, Any]], counts: list[int], depth: int) -> None:
    """Print ``title``, then the top-1 (%) of recomposed nets: one row per depth 1..``depth``, one column per
    learngene count in ``counts`` (``rows``: a learngene's accuracy table, ``depth``, ``genes``, ``top1``)."""
    cells = {(r["depth"], r["genes"]): 100 * r["top1"] for r in rows}
    print(title)
    print("depth " + "".join(f"{k:>8}" for k in counts))
    for d in range(1, depth + 1):
        print(f"{d:>5} " + "".join(f"{cells[d, k]:8.2f}" for k in counts))
