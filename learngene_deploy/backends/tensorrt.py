"""TensorRT backend: a serialized engine (``model.plan``) built from the ONNX file, for NVIDIA GPUs and Jetson.

Written against the TensorRT 10 Python API and import-guarded: where ``tensorrt`` cannot be imported
(no NVIDIA libraries, as on this project's CPU machines) :meth:`TensorRTBackend.is_available` is False
with the reason and :meth:`TensorRTBackend.compile` raises :class:`BackendUnavailableError`.

- fp32, fp16, int8; fp16 keeps normalisation, softmax, reductions and the pow/sqrt of decomposed
  LayerNorms in fp32 (``OBEY_PRECISION_CONSTRAINTS``), since ViT LayerNorms overflow in fp16
  (TensorRT #2564, docs/anchors.md §4.2).
- int8 uses an ``IInt8EntropyCalibrator2`` fed with the given images; its cache is kept beside the engine
  (``calibration.cache``) and reused when it exists.
- A timing cache (``timing.cache``) is loaded and saved so rebuilds skip tactic timing.
- The builder workspace comes from ``profile.runtime.workspace_mb``.
- A spinner with the elapsed time runs while the engine builds (builds take minutes on a Jetson).

Engines only run on the GPU architecture and TensorRT version that built them: build on the target.
Device buffers are torch CUDA tensors (torch is a core dependency), so no extra CUDA binding is needed.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from learngene_deploy.backends.base import (
    Backend,
    Compiled,
    Runner,
    need_calibration,
    prepare,
    runner_threads,
    source_facts,
)
from learngene_deploy.errors import ArtifactError, BackendUnavailableError, ExportError

if TYPE_CHECKING:
    from learngene_deploy.profile import DeviceProfile

DEFAULT_WORKSPACE_MB = 1024
ENGINE_FILE = "model.plan"
TIMING_CACHE_FILE = "timing.cache"
CALIBRATION_CACHE_FILE = "calibration.cache"
CALIBRATION_BATCH = 8
MAX_DYNAMIC_BATCH = 32  # optimization profile range for a dynamic batch axis: 1 .. this, tuned at the profile's batch


def _is_norm_arithmetic(trt: Any, layer: Any) -> bool:
    """Pow and sqrt layers come from a LayerNorm decomposed into elementwise ops (opset < 17 exports)."""
    if layer.type == trt.LayerType.ELEMENTWISE:
        layer.__class__ = trt.IElementWiseLayer
        return layer.op == trt.ElementWiseOperation.POW
    if layer.type == trt.LayerType.UNARY:
        layer.__class__ = trt.IUnaryLayer
        return layer.op == trt.UnaryOperation.SQRT
    return False


def keep_sensitive_layers_fp32(trt: Any, network: Any) -> list[str]:
    """Pin LayerNorm (fused or decomposed), softmax and reductions of a network to fp32; returns their names."""
    sensitive = (trt.LayerType.NORMALIZATION, trt.LayerType.SOFTMAX, trt.LayerType.REDUCE)
    pinned = []
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.type not in sensitive and not _is_norm_arithmetic(trt, layer):
            continue
        if layer.type == trt.LayerType.NORMALIZATION:
            layer.__class__ = trt.INormalizationLayer
            layer.compute_precision = trt.float32
        layer.precision = trt.float32
        for j in range(layer.num_outputs):
            layer.set_output_type(j, trt.float32)
        pinned.append(layer.name)
    return pinned


def _make_calibrator(trt: Any, images: np.ndarray, cache_path: Path, input_shape: tuple[int | str, ...]) -> Any:
    """An entropy calibrator that feeds ``images`` in batches through a CUDA buffer and caches its scales."""
    import torch

    batch = input_shape[0] if isinstance(input_shape[0], int) else CALIBRATION_BATCH
    usable = len(images) - len(images) % batch

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.index = 0
            self.buffer = torch.empty((batch, *images.shape[1:]), dtype=torch.float32, device="cuda")

        def get_batch_size(self) -> int:
            return batch

        def get_batch(self, names: list[str]) -> list[int] | None:
            if self.index >= usable:
                return None
            self.buffer.copy_(torch.from_numpy(images[self.index : self.index + batch]))
            self.index += batch
            return [int(self.buffer.data_ptr())]

        def read_calibration_cache(self) -> bytes | None:
            return cache_path.read_bytes() if cache_path.is_file() else None

        def write_calibration_cache(self, cache: Any) -> None:
            cache_path.write_bytes(bytes(cache))

    return EntropyCalibrator()


def _build_with_spinner(builder: Any, network: Any, config: Any, what: str) -> Any:
    """Build a serialized engine while a spinner shows the elapsed time on stderr."""
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns = (SpinnerColumn(), TextColumn("[progress.description]{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
        progress.add_task(f"Building TensorRT engine ({what}); this can take minutes", total=None)
        return builder.build_serialized_network(network, config)


class TensorRTRunner(Runner):
    """A TensorRT execution context with CUDA input/output buffers held as torch tensors."""

    def __init__(self, compiled: Compiled, threads: int | None) -> None:
        super().__init__(compiled, threads)
        import tensorrt as trt
        import torch

        if not torch.cuda.is_available():
            msg = "running a TensorRT engine needs a CUDA GPU, and torch sees none here; run it on the target device."
            raise BackendUnavailableError(msg)
        self._trt, self._torch = trt, torch
        logger = trt.Logger(trt.Logger.WARNING)
        self.engine = trt.Runtime(logger).deserialize_cuda_engine(compiled.model_path.read_bytes())
        if self.engine is None:
            msg = (
                f"TensorRT could not load {compiled.model_path.name}; engines only run with the TensorRT version "
                "and GPU that built them, so rebuild it on this device."
            )
            raise ArtifactError(msg)
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self._input = next(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
        self._output = next(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT)
        self.stream = torch.cuda.Stream()

    def infer(self, x: np.ndarray) -> np.ndarray:
        torch = self._torch
        inp = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).cuda()
        self.context.set_input_shape(self._input, tuple(inp.shape))
        out = torch.empty(tuple(self.context.get_tensor_shape(self._output)), dtype=torch.float32, device="cuda")
        self.context.set_tensor_address(self._input, inp.data_ptr())
        self.context.set_tensor_address(self._output, out.data_ptr())
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            msg = "TensorRT failed to run the engine; check the input shape against the engine's optimization profile."
            raise ExportError(msg)
        self.stream.synchronize()
        return out.cpu().numpy()


class TensorRTBackend(Backend):
    """TensorRT engines for NVIDIA GPUs (desktop, server, Jetson)."""

    name: ClassVar[str] = "tensorrt"
    module: ClassVar[str] = "tensorrt"
    install_hint: ClassVar[str] = (
        "TensorRT's libraries come only from NVIDIA: use JetPack on a Jetson, or on an x86 machine with an NVIDIA "
        "GPU `pip install tensorrt` (its wheels download from pypi.nvidia.com), then `pip install learngene-deploy"
        "[tensorrt]`"
    )
    artifact_suffix: ClassVar[str] = ".plan"
    precisions: ClassVar[tuple[str, ...]] = ("fp32", "fp16", "int8")
    accelerators: ClassVar[tuple[str, ...]] = ("gpu", "dla")  # NVIDIA GPUs and Jetson DLAs, never a CPU

    def compile(
        self,
        onnx_path: str | Path,
        out_dir: str | Path,
        *,
        precision: str = "fp32",
        profile: DeviceProfile | None = None,
        calibration_data: np.ndarray | None = None,
    ) -> Compiled:
        """Build ``model.plan``, ``timing.cache`` and (int8) ``calibration.cache``; see :meth:`Backend.compile`."""
        src, out, start = prepare(self, onnx_path, out_dir, precision)
        import tensorrt as trt

        calibration = need_calibration(self, calibration_data) if precision == "int8" else None
        input_shape, source_sha256 = source_facts(src)
        runtime = profile.runtime if profile is not None else None
        workspace_mb = (runtime.workspace_mb if runtime is not None else None) or DEFAULT_WORKSPACE_MB
        batch = profile.budgets.batch if profile is not None else 1

        logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(logger)
        network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(src)):
            errors = "; ".join(parser.get_error(i).desc() for i in range(parser.num_errors))
            msg = f"TensorRT's ONNX parser rejected {src.name} ({errors}); re-export at opset 17 or 18 and simplify it."
            raise ExportError(msg)

        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
        timing_path = out / TIMING_CACHE_FILE
        timing_cache = config.create_timing_cache(timing_path.read_bytes() if timing_path.is_file() else b"")
        config.set_timing_cache(timing_cache, ignore_mismatch=False)
        if isinstance(input_shape[0], str):  # dynamic batch: one optimization profile tuned at the profile's batch
            shape = network.get_input(0).shape
            opt_profile = builder.create_optimization_profile()
            dims = tuple(shape)[1:]
            opt_profile.set_shape(
                network.get_input(0).name, (1, *dims), (batch, *dims), (max(batch, MAX_DYNAMIC_BATCH), *dims)
            )
            config.add_optimization_profile(opt_profile)
            if calibration is not None:
                config.set_calibration_profile(opt_profile)

        settings: dict[str, Any] = {"threads": None, "workspace_mb": workspace_mb, "fp32_layers": []}
        files = [out / ENGINE_FILE, timing_path]
        if precision in ("fp16", "int8"):
            config.set_flag(trt.BuilderFlag.FP16)
            config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
            settings["fp32_layers"] = keep_sensitive_layers_fp32(trt, network)
        if calibration is not None:
            cache_path = out / CALIBRATION_CACHE_FILE
            config.set_flag(trt.BuilderFlag.INT8)
            config.int8_calibrator = _make_calibrator(trt, calibration, cache_path, input_shape)
            settings["calibration"] = {"images": len(calibration), "calibrator": "IInt8EntropyCalibrator2"}
            files.append(cache_path)

        plan = _build_with_spinner(builder, network, config, precision)
        if plan is None:
            msg = (
                f"TensorRT failed to build a {precision} engine from {src.name} (see its log above); "
                f"raise runtime.workspace_mb above {workspace_mb} or try precision 'fp32'."
            )
            raise ExportError(msg)
        files[0].write_bytes(bytes(plan))
        timing_path.write_bytes(bytes(config.get_timing_cache().serialize()))
        return Compiled(
            backend=self.name,
            precision=precision,
            model_path=files[0],
            files=tuple(p for p in files if p.is_file()),
            input_shape=input_shape,
            source=src,
            source_sha256=source_sha256,
            tool=f"tensorrt {trt.__version__}",
            seconds=time.perf_counter() - start,
            settings=settings,
        )

    def load_runner(self, compiled: Compiled, *, threads: int | None = None) -> TensorRTRunner:
        """Deserialize the engine and create an execution context; see :meth:`Backend.load_runner`."""
        self.require()
        return TensorRTRunner(compiled, runner_threads(compiled, threads))
