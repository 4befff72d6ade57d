"""TensorRT backend: conformance where TensorRT and a GPU exist, a clear unavailability error elsewhere.

TensorRT's libraries cannot be installed on this project's CPU machines (no registry they can reach has
them), so the conformance classes skip here with the reason printed by ``pytest -rs``.
"""

from __future__ import annotations

import pytest

from learngene_deploy.backends import get_backend
from learngene_deploy.errors import BackendUnavailableError

from .template import BackendConformance

pytestmark = pytest.mark.tensorrt


class TestTensorRTFp32(BackendConformance):
    backend_name = "tensorrt"
    precision = "fp32"


class TestTensorRTFp16(BackendConformance):
    backend_name = "tensorrt"
    precision = "fp16"

    def test_layernorm_and_softmax_stay_fp32(self, compiled) -> None:
        assert compiled.settings["fp32_layers"], "no layer was pinned to fp32"


class TestTensorRTInt8(BackendConformance):
    backend_name = "tensorrt"
    precision = "int8"

    def test_calibration_cache_is_written(self, compiled) -> None:
        assert any(p.name == "calibration.cache" for p in compiled.files)


@pytest.mark.skipif(get_backend("tensorrt").is_available(), reason="TensorRT is installed here")
def test_compile_without_tensorrt_says_how_to_get_it(tiny_onnx, tmp_path) -> None:
    backend = get_backend("tensorrt")
    assert "tensorrt" in backend.unavailable_reason()
    with pytest.raises(BackendUnavailableError, match="NVIDIA"):
        backend.compile(tiny_onnx, tmp_path, precision="fp16")
