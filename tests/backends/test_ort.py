"""ONNX Runtime backend: fp32 and dynamic int8, as .onnx and as .ort (ORT Mobile) files."""

from __future__ import annotations

import pytest

from .template import BackendConformance


class TestOrtFp32(BackendConformance):
    backend_name = "onnxruntime"
    precision = "fp32"


class TestOrtInt8(BackendConformance):
    backend_name = "onnxruntime"
    precision = "int8"


class TestOrtMobileInt8(BackendConformance):
    """The snapdragon profile asks for runtime.format 'ort': ORT's converter writes model_int8.ort."""

    backend_name = "onnxruntime"
    precision = "int8"
    profile = "snapdragon-8-gen-3"
    model_suffix = ".ort"

    def test_operator_list_for_reduced_builds(self, compiled) -> None:
        assert compiled.settings["format"] == "ort"
        assert compiled.settings["threads"] == 4
        assert any(p.name.endswith(".required_operators.config") for p in compiled.files)


def test_missing_execution_provider_names_the_available_ones(tiny_onnx, tmp_path) -> None:
    from dataclasses import replace

    from learngene_deploy.backends import get_backend
    from learngene_deploy.errors import BackendUnavailableError

    backend = get_backend("onnxruntime")
    compiled = backend.compile(tiny_onnx, tmp_path, precision="fp32")
    cuda = replace(compiled, settings={**compiled.settings, "execution_provider": "CUDAExecutionProvider"})
    with pytest.raises(BackendUnavailableError, match=r"CUDAExecutionProvider is not available.*CPUExecutionProvider"):
        backend.load_runner(cuda)
