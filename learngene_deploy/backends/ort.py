"""ONNX Runtime backend: fp32, int8 (dynamic quantization) and the ``.ort`` format for ORT Mobile.

- fp32: the ONNX file itself (ORT optimises the graph when the session is created).
- int8: ``quant_pre_process`` (shape inference + graph clean-up) then ``quantize_dynamic`` with int8
  weights; activations are quantized at run time, so no calibration data is needed. On this project's
  Zen 4 CPU that is ~1.6x faster than fp32 (docs/platform-notes §4); static QDQ quantization was slower.
- ``runtime.format: ort`` in the profile converts the result with ORT's own converter
  (``onnxruntime.tools.convert_onnx_models_to_ort``, fixed optimisations, platform from ``device.arch``).

The execution provider and threads come from the profile. Sessions are created with intra-op spinning
off by default (``session.intra_op.allow_spinning=0``): idle sessions' spinning threads otherwise slow
every other session in the process (up to 8x on 2 cores).
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from learngene_deploy.backends.base import (
    Backend,
    Compiled,
    Execution,
    Runner,
    prepare,
    runner_threads,
    source_facts,
)
from learngene_deploy.errors import BackendUnavailableError, ConfigError, ExportError
from learngene_deploy.export import error_summary

if TYPE_CHECKING:
    from learngene_deploy.profile import DeviceProfile

DEFAULT_PROVIDER = "CPUExecutionProvider"


class OrtRunner(Runner):
    """An ``onnxruntime.InferenceSession`` with one input and one output."""

    def __init__(self, compiled: Compiled, threads: int | None) -> None:
        super().__init__(compiled, threads)
        import onnxruntime as ort

        settings = compiled.settings
        provider = settings.get("execution_provider", DEFAULT_PROVIDER)
        available = ort.get_available_providers()
        if provider not in available:
            msg = (
                f"ONNX Runtime's {provider} is not available in this onnxruntime build (available: "
                f"{', '.join(available)}); install the matching onnxruntime package or run on the target device."
            )
            raise BackendUnavailableError(msg)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or 0
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if settings.get("spinning") else "0")
        providers = [provider] if provider == DEFAULT_PROVIDER else [provider, DEFAULT_PROVIDER]
        self.session = ort.InferenceSession(str(compiled.model_path), sess_options=options, providers=providers)
        self._input = self.session.get_inputs()[0].name
        self._output = self.session.get_outputs()[0].name

    def infer(self, x: np.ndarray) -> np.ndarray:
        return self.session.run([self._output], {self._input: np.ascontiguousarray(x, dtype=np.float32)})[0]

    def execution(self) -> Execution:
        """The session's providers in priority order; a provider that failed to start is missing from them."""
        requested = self.compiled.settings.get("execution_provider", DEFAULT_PROVIDER)
        executed = tuple(self.session.get_providers())
        return Execution("onnxruntime", requested, executed, "session.get_providers()")


class OrtBackend(Backend):
    """ONNX Runtime: fp32 and dynamic int8, as ``.onnx`` or ``.ort`` files."""

    name: ClassVar[str] = "onnxruntime"
    module: ClassVar[str] = "onnxruntime"
    install_hint: ClassVar[str] = "install it with `pip install onnxruntime` (or onnxruntime-gpu for CUDA/TensorRT EPs)"
    artifact_suffix: ClassVar[str] = ".onnx"
    precisions: ClassVar[tuple[str, ...]] = ("fp32", "int8")

    def __init__(self, *, spinning: bool = False) -> None:
        """Create the backend.

        Args:
            spinning: let idle intra-op threads spin (lower latency for a lone session, harmful when several
                sessions share a process).
        """
        self.spinning = spinning

    def compile(
        self,
        onnx_path: str | Path,
        out_dir: str | Path,
        *,
        precision: str = "fp32",
        profile: DeviceProfile | None = None,
        calibration_data: np.ndarray | None = None,
    ) -> Compiled:
        """Write the model into ``out_dir``; see :meth:`Backend.compile`.

        fp32 is ``model.onnx`` (the source itself when it already lies in ``out_dir``), int8 is
        ``model_int8.onnx``; with ``runtime.format: ort`` either becomes ``model.ort`` plus its
        ``model.required_operators.config``.
        """
        import onnxruntime as ort

        src, out, start = prepare(self, onnx_path, out_dir, precision)
        runtime = profile.runtime if profile is not None else None
        to_ort = profile is not None and profile.runtime.format == "ort"
        quantized = out / "model_int8.onnx"
        try:
            model = src
            if precision == "int8":
                _quantize_dynamic(src, quantized)
                model = quantized
            if to_ort:
                files = _convert_to_ort(model, out, arch=profile.device.arch)
                quantized.unlink(missing_ok=True)
            elif model == src and src.parent.resolve() != out.resolve():
                files = (Path(shutil.copyfile(src, out / "model.onnx")),)
            else:
                files = (model,)  # the quantized file, or the source itself when it already lies in out_dir
        except (ExportError, BackendUnavailableError):
            raise
        except Exception as e:
            msg = (
                f"ONNX Runtime could not build the {precision} model from {src.name} ({error_summary(e)}); "
                "try precision 'fp32'."
            )
            raise ExportError(msg) from e
        input_shape, source_sha256 = source_facts(src)

        settings: dict[str, Any] = {
            "threads": runtime.threads if runtime is not None else None,
            "execution_provider": (runtime.execution_provider if runtime is not None else None) or DEFAULT_PROVIDER,
            "format": "ort" if to_ort else "onnx",
            "quantization": "dynamic int8 weights (QInt8), per-tensor" if precision == "int8" else None,
            "spinning": self.spinning,
        }
        return Compiled(
            backend=self.name,
            precision=precision,
            model_path=files[0],
            files=files,
            input_shape=input_shape,
            source=src,
            source_sha256=source_sha256,
            tool=f"onnxruntime {ort.__version__}",
            seconds=time.perf_counter() - start,
            settings=settings,
        )

    accuracy_control: ClassVar[str | None] = "static QDQ int8, per-channel weights, sensitive nodes excluded"

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
        """Static QDQ INT8 (``quantize_static``, per-channel weights) with the most sensitive nodes kept in fp32.

        Sensitivity is ORT's own QDQ debugging measure (``qdq_loss_debug``): the signal-to-quantization-noise ratio
        of every quantized activation on a few calibration images. The consumers of the noisiest activations are
        excluded from quantization, 1, 2, 4, ... of them, until the top-1 drop on the labelled calibration images
        is within ``max_drop_points``; see :meth:`Backend.compile_accuracy_controlled`.
        """
        import onnxruntime as ort

        from learngene_deploy.backends.base import labelled_batches, need_calibration, top1

        src, out, start = prepare(self, onnx_path, out_dir, "int8")
        calibration = need_calibration(self, calibration_data)
        runtime = profile.runtime if profile is not None else None
        if runtime is not None and runtime.format == "ort":
            msg = "accuracy-controlled INT8 writes QDQ .onnx models; set runtime.format to onnx to use it."
            raise ConfigError(msg)
        input_shape, source_sha256 = source_facts(src)
        batch = input_shape[0] if isinstance(input_shape[0], int) else 1
        items = labelled_batches(calibration, calibration_labels, batch)
        target, prepared = out / "model_int8.onnx", out / "model_int8.prep.onnx"
        attempts: list[dict[str, Any]] = []
        try:
            with _quiet():
                from onnxruntime.quantization import quant_pre_process

                quant_pre_process(str(src), str(prepared))
            reference = top1(_session_fn(prepared), items)[0]

            def attempt(excluded: list[str]) -> float:
                _quantize_static(prepared, target, calibration, batch, excluded)
                drop = 100.0 * (reference - top1(_session_fn(target), items)[0])
                attempts.append({"excluded": len(excluded), "drop_points": drop})
                return drop

            excluded: list[str] = []
            drop = attempt(excluded)
            if drop > max_drop_points:
                ranked = _sensitive_nodes(prepared, target, calibration[: 8 * batch], batch)
                k = 1
                while drop > max_drop_points and excluded != ranked:
                    excluded = ranked[:k]
                    drop = attempt(excluded)
                    k *= 2
        except (ExportError, ConfigError):
            raise
        except Exception as e:
            msg = f"ONNX Runtime static INT8 quantization of {src.name} failed ({error_summary(e)}); try 'fp32'."
            raise ExportError(msg) from e
        finally:
            prepared.unlink(missing_ok=True)
        if drop > max_drop_points:
            msg = (
                f"ONNX Runtime static INT8 misses the {max_drop_points:g}-point limit even with {len(excluded)} "
                f"sensitive nodes in fp32 (drop {drop:.2f} points on the calibration images); use fp32 or openvino."
            )
            raise ExportError(msg)
        settings: dict[str, Any] = {
            "threads": runtime.threads if runtime is not None else None,
            "execution_provider": (runtime.execution_provider if runtime is not None else None) or DEFAULT_PROVIDER,
            "format": "onnx",
            "quantization": "static QDQ int8 (QUInt8 activations, QInt8 per-channel weights), accuracy-controlled",
            "spinning": self.spinning,
            "accuracy_control": {
                "method": "onnxruntime.quantization.quantize_static, nodes ranked by qdq_loss_debug activation SQNR",
                "data": "labelled fine-tune (train) images, not the validation images",
                "max_drop_points": max_drop_points,
                "search_drop_points": drop,
                "fp32_layers": excluded,
                "attempts": attempts,
            },
        }
        return Compiled(
            backend=self.name,
            precision="int8",
            model_path=target,
            files=(target,),
            input_shape=input_shape,
            source=src,
            source_sha256=source_sha256,
            tool=f"onnxruntime {ort.__version__}",
            seconds=time.perf_counter() - start,
            settings=settings,
        )

    def host_variant(self, compiled: Compiled) -> tuple[Compiled, str | None]:
        """Run with the CPU provider when the target's execution provider is not in this onnxruntime build."""
        import onnxruntime as ort

        provider = compiled.settings.get("execution_provider", DEFAULT_PROVIDER)
        if provider in ort.get_available_providers():
            return compiled, None
        note = (
            f"ONNX Runtime's {provider} is not in this onnxruntime build, so the same model was verified and "
            f"measured with {DEFAULT_PROVIDER}"
        )
        return replace(compiled, settings={**compiled.settings, "execution_provider": DEFAULT_PROVIDER}), note

    def load_runner(self, compiled: Compiled, *, threads: int | None = None) -> OrtRunner:
        """Create an inference session; see :meth:`Backend.load_runner`."""
        self.require()
        return OrtRunner(compiled, runner_threads(compiled, threads))


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence ORT's tools, which print and log (INFO/WARNING) every step."""
    logging.disable(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logging.disable(logging.NOTSET)


def _quantize_dynamic(src: Path, target: Path) -> None:
    """Pre-process (shape inference, ORT clean-up) and quantize weights to int8."""
    from onnxruntime.quantization import QuantType, quant_pre_process, quantize_dynamic

    prepared = target.with_suffix(".prep.onnx")
    try:
        with _quiet():
            quant_pre_process(str(src), str(prepared))
            quantize_dynamic(prepared, target, weight_type=QuantType.QInt8)
    finally:
        prepared.unlink(missing_ok=True)


_QUANTIZED_OPS = ["MatMul", "Gemm", "Conv"]


class _Reader:
    """An ``onnxruntime.quantization.CalibrationDataReader`` over images in batches of the model's static batch."""

    def __init__(self, model: Path, images: np.ndarray, batch: int) -> None:
        import onnx

        self.name = onnx.load_model(model, load_external_data=False).graph.input[0].name
        self.batches = [images[i : i + batch] for i in range(0, len(images) - len(images) % batch, batch)]
        self.position = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.position >= len(self.batches):
            return None
        self.position += 1
        return {self.name: np.ascontiguousarray(self.batches[self.position - 1], dtype=np.float32)}

    def rewind(self) -> None:
        self.position = 0

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        while (item := self.get_next()) is not None:
            yield item


def _session_fn(model: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(model), sess_options=options, providers=[DEFAULT_PROVIDER])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: np.ascontiguousarray(x, dtype=np.float32)})[0]


def _quantize_static(src: Path, target: Path, images: np.ndarray, batch: int, excluded: list[str]) -> None:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    with _quiet():
        quantize_static(
            src,
            target,
            _Reader(src, images, batch),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=_QUANTIZED_OPS,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=excluded,
        )


def _sensitive_nodes(float_model: Path, qdq_model: Path, images: np.ndarray, batch: int) -> list[str]:
    """Quantizable nodes, most sensitive first: by the worst SQNR of the QDQ activations they read (ORT's debugger)."""
    import onnx
    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        compute_activation_error,
        create_activation_matching,
        modify_model_output_intermediate_tensors,
    )

    collected = []
    for model in (qdq_model, float_model):  # compute_activation_error needs the float model's activations too
        augmented = model.with_suffix(".debug.onnx")
        try:
            with _quiet():
                modify_model_output_intermediate_tensors(model, augmented)
                collected.append(collect_activations(str(augmented), _Reader(model, images, batch)))
        finally:
            augmented.unlink(missing_ok=True)
    errors = compute_activation_error(create_activation_matching(*collected))
    graph = onnx.load_model(float_model, load_external_data=False).graph
    nodes = [n for n in graph.node if n.op_type in _QUANTIZED_OPS]
    score = {n.name: min((errors[t]["qdq_err"] for t in n.input if t in errors), default=float("inf")) for n in nodes}
    return [name for name in sorted(score, key=score.__getitem__) if score[name] != float("inf")] or list(score)


def _convert_to_ort(model: Path, out: Path, *, arch: str) -> tuple[Path, Path]:
    """Convert with ORT's own converter (fixed optimisations) into ``out/model.ort``.

    Returns:
        The ``.ort`` file and the operator list a reduced ORT Mobile build needs (``.required_operators.config``).
    """
    from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort

    with _quiet():
        convert_onnx_models_to_ort(
            model,
            output_dir=out,
            optimization_styles=[OptimizationStyle.Fixed],
            target_platform="arm" if arch == "aarch64" else "amd64",
        )
    converted, operators = out / f"{model.stem}.ort", out / f"{model.stem}.required_operators.config"
    if not converted.is_file():
        msg = f"ONNX Runtime's converter wrote no {converted.name}; convert {model.name} by hand to see its errors."
        raise ExportError(msg)
    if model.stem != "model":
        converted = converted.replace(out / "model.ort")
        operators = operators.replace(out / "model.required_operators.config")
    return converted, operators
