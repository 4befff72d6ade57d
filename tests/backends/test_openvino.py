"""OpenVINO backend: IR fp32, fp16 (compressed weights) and NNCF int8, always with an explicit precision hint."""

from __future__ import annotations

import pytest

from learngene_deploy.backends import get_backend
from learngene_deploy.errors import ConfigError

from .template import BackendConformance

pytestmark = pytest.mark.openvino


class TestOpenVINOFp32(BackendConformance):
    backend_name = "openvino"
    precision = "fp32"

    def test_precision_hint_is_explicit(self, compiled) -> None:
        # The CPU plugin's default is bf16 on CPUs with avx512_bf16; the runner must always say f32.
        assert compiled.settings["inference_precision"] == "f32"


class TestOpenVINOFp16(BackendConformance):
    backend_name = "openvino"
    precision = "fp16"

    def test_weights_are_half_size(self, compiled, tmp_path, tiny_onnx) -> None:
        fp32 = get_backend("openvino").compile(tiny_onnx, tmp_path, precision="fp32")
        assert compiled.bytes < 0.6 * fp32.bytes


class TestOpenVINOInt8(BackendConformance):
    backend_name = "openvino"
    precision = "int8"
    requires = ("nncf",)

    def test_calibration_is_recorded(self, compiled, calibration_images) -> None:
        assert compiled.settings["calibration"]["images"] == len(calibration_images)


def test_int8_without_calibration_data_says_what_to_pass(tiny_onnx, tmp_path) -> None:
    with pytest.raises(ConfigError, match="calibration_data"):
        get_backend("openvino").compile(tiny_onnx, tmp_path, precision="int8")


def test_unknown_inference_precision_lists_valid_ones() -> None:
    with pytest.raises(ConfigError, match="f32, bf16, f16"):
        get_backend("openvino", inference_precision="fp8")


def test_gpu_profile_compiles_here_with_f16_hint_but_runs_only_on_a_gpu(tiny_onnx, tmp_path) -> None:
    from learngene_deploy.errors import BackendUnavailableError
    from learngene_deploy.profile import load_profile

    backend = get_backend("openvino")
    compiled = backend.compile(tiny_onnx, tmp_path, precision="fp16", profile=load_profile("intel-core-ultra-nuc"))
    assert compiled.settings["device"] == "GPU" and compiled.settings["inference_precision"] == "f16"
    with pytest.raises(BackendUnavailableError, match="device 'GPU' is not present"):
        backend.load_runner(compiled)
