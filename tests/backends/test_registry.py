"""The backend registry: names, close-match errors, and no heavy imports until a backend is used."""

from __future__ import annotations

import subprocess
import sys

import pytest

from learngene_deploy.backends import get_backend, list_backends
from learngene_deploy.errors import ConfigError


def test_list_backends() -> None:
    assert list_backends() == ["onnxruntime", "openvino", "tensorrt"]


def test_unknown_backend_suggests_the_closest_name() -> None:
    with pytest.raises(ConfigError, match=r"did you mean 'openvino'.*onnxruntime, openvino, tensorrt"):
        get_backend("openvion")


def test_unsupported_precision_lists_valid_ones(tmp_path) -> None:
    with pytest.raises(ConfigError, match="valid: fp32, int8"):
        get_backend("onnxruntime").compile(tmp_path / "missing.onnx", tmp_path, precision="fp16")


def test_looking_up_backends_imports_no_runtime() -> None:
    code = (
        "import sys\n"
        "from learngene_deploy.backends import get_backend, list_backends\n"
        "import learngene_deploy.bench, learngene_deploy.export, learngene_deploy.gates\n"
        "[get_backend(n) for n in list_backends()]\n"
        "heavy = ('torch', 'onnx', 'onnxruntime', 'openvino', 'tensorrt', 'nncf')\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ""
