"""OpenVINO backend: IR (``model.xml`` + ``model.bin``) in fp32, fp16 (compressed weights) and NNCF int8.

- fp32: ``ov.convert_model`` on the ONNX file, saved uncompressed.
- fp16: the same IR with weights stored as fp16 (``compress_to_fp16``); half the file size.
- int8: static post-training quantization with ``nncf.quantize(..., model_type=ModelType.TRANSFORMER)``
  calibrated on the given images (SmoothQuant, and NNCF's transformer patterns that leave sensitive ops
  such as LayerNorm and softmax in float).

The execution precision is always set explicitly with ``INFERENCE_PRECISION_HINT``: OpenVINO's CPU plugin
silently runs bf16 by default on CPUs with avx512_bf16 or AMX (max logit error 0.15 on this project's Zen 4,
docs/platform-notes §4). The hint is ``f32`` unless another is asked for with
``get_backend("openvino", inference_precision="bf16")``; fp16 IRs run with ``f16`` on GPU and NPU devices.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from learngene_deploy._imports import require
from learngene_deploy.backends.base import (
    Backend,
    Compiled,
    Execution,
    Runner,
    labelled_batches,
    need_calibration,
    prepare,
    runner_threads,
    source_facts,
    top1,
)
from learngene_deploy.errors import BackendUnavailableError, ConfigError, ExportError
from learngene_deploy.export import error_summary

if TYPE_CHECKING:
    from learngene_deploy.profile import DeviceProfile

INFERENCE_PRECISIONS: tuple[str, ...] = ("f32", "bf16", "f16")
CALIBRATION_BATCH = 1  # NNCF feeds the IR one calibration sample at a time


class OpenVINORunner(Runner):
    """An ``ov.CompiledModel`` with an explicit inference precision and thread count."""

    def __init__(self, compiled: Compiled, threads: int | None) -> None:
        super().__init__(compiled, threads)
        import openvino as ov

        settings = compiled.settings
        config: dict[str, Any] = {
            "INFERENCE_PRECISION_HINT": settings["inference_precision"],
            "PERFORMANCE_HINT": "LATENCY",
        }
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        core = ov.Core()
        device = settings.get("device", "CPU")
        if device != "AUTO" and not any(d.split(".")[0] == device for d in core.available_devices):
            msg = (
                f"OpenVINO device '{device}' is not present on this machine (available: "
                f"{', '.join(core.available_devices)}); run on the target device or compile for one listed."
            )
            raise BackendUnavailableError(msg)
        self.model = core.compile_model(str(compiled.model_path), device, config)
        self.request = self.model.create_infer_request()

    def infer(self, x: np.ndarray) -> np.ndarray:
        result = self.request.infer({0: np.ascontiguousarray(x, dtype=np.float32)})
        return np.array(result[0])

    def execution(self) -> Execution:
        """The compiled model's ``EXECUTION_DEVICES`` (what an AUTO or GPU request really got)."""
        requested = self.compiled.settings.get("device", "CPU")
        try:
            executed: tuple[str, ...] | None = tuple(self.model.get_property("EXECUTION_DEVICES"))
        except RuntimeError:  # a plugin that does not report it
            executed = None
        return Execution("openvino", requested, executed, 'compiled_model.get_property("EXECUTION_DEVICES")')


class OpenVINOBackend(Backend):
    """OpenVINO IR for CPU, GPU or NPU devices."""

    name: ClassVar[str] = "openvino"
    module: ClassVar[str] = "openvino"
    install_hint: ClassVar[str] = "install it with `pip install openvino` (and `pip install nncf` for int8)"
    artifact_suffix: ClassVar[str] = ".xml"
    precisions: ClassVar[tuple[str, ...]] = ("fp32", "fp16", "int8")

    def __init__(self, *, inference_precision: str | None = None) -> None:
        """Create the backend.

        Args:
            inference_precision: execution precision hint (``f32``, ``bf16`` or ``f16``) overriding the
                default (``f32``, or ``f16`` for fp16 IRs on GPU/NPU).
        """
        if inference_precision is not None and inference_precision not in INFERENCE_PRECISIONS:
            msg = (
                f"unknown OpenVINO inference precision '{inference_precision}'; "
                f"valid: {', '.join(INFERENCE_PRECISIONS)}."
            )
            raise ConfigError(msg)
        self.inference_precision = inference_precision

    def compile(
        self,
        onnx_path: str | Path,
        out_dir: str | Path,
        *,
        precision: str = "fp32",
        profile: DeviceProfile | None = None,
        calibration_data: np.ndarray | None = None,
    ) -> Compiled:
        """Write ``model.xml`` and ``model.bin`` into ``out_dir``; see :meth:`Backend.compile`."""
        import openvino as ov

        src, out, start = prepare(self, onnx_path, out_dir, precision)
        calibration = need_calibration(self, calibration_data) if precision == "int8" else None
        runtime = profile.runtime if profile is not None else None
        device = (runtime.device if runtime is not None else None) or "CPU"
        model = _convert(src)
        input_shape, source_sha256 = source_facts(src)
        settings: dict[str, Any] = {
            "threads": runtime.threads if runtime is not None else None,
            "device": device,
            "inference_precision": self.inference_precision
            or ("f16" if precision == "fp16" and device in ("GPU", "NPU") else "f32"),
            "weights": {"fp32": "f32", "fp16": "f16 (compressed)", "int8": "int8 (NNCF)"}[precision],
        }
        if calibration is not None:
            model = _quantize_int8(model, calibration, input_shape)
            settings["calibration"] = {"images": len(calibration), "model_type": "TRANSFORMER", "preset": "PERFORMANCE"}
        xml = out / "model.xml"
        ov.save_model(model, str(xml), compress_to_fp16=precision == "fp16")
        return Compiled(
            backend=self.name,
            precision=precision,
            model_path=xml,
            files=(xml, xml.with_suffix(".bin")),
            input_shape=input_shape,
            source=src,
            source_sha256=source_sha256,
            tool=f"openvino {ov.get_version().split('-')[0]}",
            seconds=time.perf_counter() - start,
            settings=settings,
        )

    accuracy_control: ClassVar[str | None] = "NNCF quantize_with_accuracy_control"

    def compile_accuracy_controlled(
        self,
        onnx_path: str | Path,
        out_dir: str | Path,
        *,
        calibration_data: np.ndarray,
        calibration_labels: np.ndarray,
        max_drop_points: float,
        profile: DeviceProfile | None = None,
    ) -> Compiled:
        """NNCF's ``quantize_with_accuracy_control``: quantize, then revert the most sensitive layers to float until
        the top-1 drop on the labelled calibration images is within ``max_drop_points``; see
        :meth:`Backend.compile_accuracy_controlled`.

        The search runs in a spawned child process: after it, torch in the same process can crash (a segfault in the
        next model's ONNX export, seen with nncf 2.x and openvino 2025-2026 on this machine), and one process may
        build several profiles (``--all``, the Python API).
        """
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        args = (str(onnx_path), str(out_dir), calibration_data, calibration_labels, max_drop_points, profile)
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            return pool.submit(_accuracy_controlled_in_child, *args).result()

    def _accuracy_controlled_here(
        self,
        onnx_path: str | Path,
        out_dir: str | Path,
        calibration_data: np.ndarray,
        calibration_labels: np.ndarray,
        max_drop_points: float,
        profile: DeviceProfile | None,
    ) -> Compiled:
        import openvino as ov

        src, out, start = prepare(self, onnx_path, out_dir, "int8")
        calibration = need_calibration(self, calibration_data)
        runtime = profile.runtime if profile is not None else None
        device = (runtime.device if runtime is not None else None) or "CPU"
        model = _convert(src)
        input_shape, source_sha256 = source_facts(src)
        batch = input_shape[0] if isinstance(input_shape[0], int) else CALIBRATION_BATCH
        items = labelled_batches(calibration, calibration_labels, batch)
        quantized = _quantize_with_accuracy_control(model, items, max_drop_points)
        kept = _fp32_layers(quantized)
        search_drop = _search_drop(model, quantized, items)
        xml = out / "model.xml"
        ov.save_model(quantized, str(xml), compress_to_fp16=False)
        settings: dict[str, Any] = {
            "threads": runtime.threads if runtime is not None else None,
            "device": device,
            "inference_precision": self.inference_precision or "f32",
            "weights": "int8 (NNCF, accuracy-controlled)",
            "calibration": {"images": len(calibration), "model_type": "TRANSFORMER", "preset": "PERFORMANCE"},
            "accuracy_control": {
                "method": "nncf.quantize_with_accuracy_control (absolute top-1 drop)",
                "data": "labelled fine-tune (train) images, not the validation images",
                "max_drop_points": max_drop_points,
                "search_drop_points": search_drop,
                "fp32_layers": kept,  # every matmul/convolution no FakeQuantize feeds (NNCF's patterns included)
                "int8_layers": _layer_count(quantized) - len(kept),
            },
        }
        return Compiled(
            backend=self.name,
            precision="int8",
            model_path=xml,
            files=(xml, xml.with_suffix(".bin")),
            input_shape=input_shape,
            source=src,
            source_sha256=source_sha256,
            tool=f"openvino {ov.get_version().split('-')[0]}",
            seconds=time.perf_counter() - start,
            settings=settings,
        )

    def host_variant(self, compiled: Compiled) -> tuple[Compiled, str | None]:
        """Run on this machine's CPU with f32 execution when the target device (GPU, NPU) is not here."""
        import openvino as ov

        device = compiled.settings.get("device", "CPU")
        available = ov.Core().available_devices
        if device == "AUTO" or any(d.split(".")[0] == device for d in available):
            return compiled, None
        settings = {**compiled.settings, "device": "CPU", "inference_precision": "f32"}
        note = (
            f"OpenVINO device {device} is not on this machine (available: {', '.join(available)}), so the same IR "
            "was verified and measured on this machine's CPU with f32 execution"
        )
        return replace(compiled, settings=settings), note

    def load_runner(self, compiled: Compiled, *, threads: int | None = None) -> OpenVINORunner:
        """Compile the IR for its device with the recorded precision hint; see :meth:`Backend.load_runner`."""
        self.require()
        return OpenVINORunner(compiled, runner_threads(compiled, threads))


def _convert(src: Path) -> Any:
    import openvino as ov

    try:
        return ov.convert_model(str(src))
    except Exception as e:
        msg = (
            f"OpenVINO could not convert {src.name} ({error_summary(e)}); "
            "re-export at opset 18 or simplify the model first."
        )
        raise ExportError(msg) from e


_QUANTIZABLE = ("MatMul", "Convolution")
_PASS_THROUGH = ("Convert", "Reshape", "Transpose", "Subtract", "Multiply", "Unsqueeze", "Squeeze")


def _fp32_layers(model: Any) -> list[str]:
    """Names of the matmuls and convolutions of a quantized ``ov.Model`` that no FakeQuantize feeds: left in float."""

    def quantized(node: Any, depth: int = 4) -> bool:
        for value in node.inputs():
            source = value.get_source_output().get_node()
            kind = source.get_type_name()
            if kind == "FakeQuantize" or (depth and kind in _PASS_THROUGH and quantized(source, depth - 1)):
                return True
        return False

    return sorted(op.get_friendly_name() for op in model.get_ordered_ops() if op.get_type_name() in _QUANTIZABLE
                  and not quantized(op))  # fmt: skip


def _layer_count(model: Any) -> int:
    return sum(op.get_type_name() in _QUANTIZABLE for op in model.get_ordered_ops())


def _search_drop(model: Any, quantized: Any, items: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """Top-1 drop (points) of ``quantized`` against ``model`` on the labelled calibration batches, both run in f32."""
    import openvino as ov

    accuracy = []
    for m in (model, quantized):
        compiled = ov.Core().compile_model(m, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        accuracy.append(top1(lambda x, c=compiled: c(x)[0], items)[0])
    return 100.0 * (accuracy[0] - accuracy[1])


@contextlib.contextmanager
def _nncf_quiet() -> Iterator[None]:
    """NNCF's logger at ERROR for the duration (it logs statistics collection progress at INFO)."""
    logger = logging.getLogger("nncf")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _accuracy_controlled_in_child(*args: Any) -> Compiled:
    """The body of :meth:`OpenVINOBackend.compile_accuracy_controlled`, in the spawned child process."""
    return OpenVINOBackend()._accuracy_controlled_here(*args)


def _quantize_with_accuracy_control(model: Any, items: list[tuple[np.ndarray, np.ndarray]], max_drop: float) -> Any:
    """NNCF's accuracy-aware quantization on labelled batches (calibration and validation: the fine-tune data)."""
    nncf = require("nncf", purpose="OpenVINO accuracy-controlled int8 quantization")

    def validate(compiled_model: Any, data: Any) -> tuple[float, list[float]]:
        return top1(lambda x: compiled_model(x)[0], list(data))

    try:
        with _nncf_quiet():
            return nncf.quantize_with_accuracy_control(
                model,
                nncf.Dataset(items, lambda item: item[0]),
                nncf.Dataset(items),
                validate,
                max_drop=max_drop / 100.0,
                drop_type=nncf.DropType.ABSOLUTE,
                subset_size=len(items),
                model_type=nncf.ModelType.TRANSFORMER,
                preset=nncf.QuantizationPreset.PERFORMANCE,
            )
    except Exception as e:
        msg = (
            f"NNCF accuracy-controlled int8 quantization failed ({error_summary(e)}); calibrate on more images or "
            "raise --max-int8-drop."
        )
        raise ExportError(msg) from e


def _quantize_int8(model: Any, images: np.ndarray, input_shape: tuple[int | str, ...]) -> Any:
    """Post-training static int8 quantization with NNCF on ``images``."""
    nncf = require("nncf", purpose="OpenVINO int8 quantization")
    batch = input_shape[0] if isinstance(input_shape[0], int) else CALIBRATION_BATCH
    usable = len(images) - len(images) % batch
    if usable == 0:
        msg = f"OpenVINO int8 calibration got {len(images)} images but the model's static batch is {batch}; pass more."
        raise ConfigError(msg)
    batches = [images[i : i + batch] for i in range(0, usable, batch)]
    try:
        with _nncf_quiet():
            return nncf.quantize(
                model,
                nncf.Dataset(batches),
                subset_size=len(batches),
                model_type=nncf.ModelType.TRANSFORMER,
                preset=nncf.QuantizationPreset.PERFORMANCE,
            )
    except Exception as e:
        msg = (
            f"NNCF int8 quantization failed ({error_summary(e)}); "
            "check the calibration images' shape or use precision 'fp16'."
        )
        raise ExportError(msg) from e
