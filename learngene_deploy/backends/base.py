"""The one small interface every inference backend implements.

A backend turns an ONNX file into files its runtime loads (:meth:`Backend.compile` -> :class:`Compiled`)
and runs them (:meth:`Backend.load_runner` -> :class:`Runner`). Runtimes are imported inside the methods,
so listing or probing backends never imports onnxruntime, openvino or tensorrt. Every backend passes the
shared conformance test in ``tests/backends/template.py``.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from learngene_deploy.errors import BackendUnavailableError, ConfigError

if TYPE_CHECKING:
    from learngene_deploy.profile import DeviceProfile


@dataclass(frozen=True)
class Compiled:
    """Files a backend wrote for one ONNX model, and the settings a runner needs to load them."""

    backend: str  # registry name, e.g. "openvino"
    precision: str  # "fp32" | "fp16" | "int8"
    model_path: Path  # the file a runner loads (model.onnx, model.ort, model.xml, model.plan)
    files: tuple[Path, ...]  # every file written, model_path first
    input_shape: tuple[int | str, ...]  # model input shape; a str dim is dynamic
    source: Path  # the ONNX file it was compiled from
    source_sha256: str
    tool: str  # runtime and version, e.g. "openvino 2026.4.1"
    seconds: float  # wall time of compile()
    settings: dict[str, Any] = field(default_factory=dict)  # JSON-serialisable runner settings

    @property
    def bytes(self) -> int:
        """Total size of the written files."""
        return sum(p.stat().st_size for p in self.files)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form; :meth:`from_dict` reverses it."""
        data = asdict(self)
        data.update(
            model_path=str(self.model_path),
            files=[str(p) for p in self.files],
            source=str(self.source),
            input_shape=list(self.input_shape),
        )
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Compiled:
        return cls(
            **{
                **data,
                "model_path": Path(data["model_path"]),
                "files": tuple(Path(p) for p in data["files"]),
                "source": Path(data["source"]),
                "input_shape": tuple(data["input_shape"]),
            }
        )


@dataclass(frozen=True)
class Execution:
    """Where a loaded model actually runs, as its runtime reports it, against where it was asked to run.

    Runtimes fall back silently (an ONNX Runtime CUDA provider that cannot start leaves the session on the CPU
    provider; an OpenVINO AUTO device picks what it likes), so the build records what ran and fails on a mismatch.
    """

    backend: str
    requested: str  # the execution provider (ORT) or device (OpenVINO) the profile asked for
    executed: tuple[str, ...] | None  # what the runtime reports; None when it cannot say
    reported_by: str  # the call that reported it, e.g. "session.get_providers()"

    @property
    def passed(self) -> bool:
        if self.executed is None or self.requested == "AUTO":
            return True
        if self.backend == "onnxruntime":  # the first provider of the session is the one nodes are assigned to first
            return bool(self.executed) and self.executed[0] == self.requested
        return bool(self.executed) and all(d.split(".")[0] == self.requested for d in self.executed)

    def message(self) -> str:
        """One sentence saying what ran where it should not (only meaningful when not :attr:`passed`)."""
        ran = ", ".join(self.executed or ()) or "nothing"
        return (
            f"{self.backend} was asked to run the model on {self.requested} but ran it on {ran} "
            f"({self.reported_by}); install the {self.backend} build that supports {self.requested} on this machine, "
            "or set the profile's runtime to what this machine has, instead of shipping a model measured elsewhere."
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "requested": self.requested,
            "executed": list(self.executed) if self.executed is not None else None,
            "reported_by": self.reported_by,
            "passed": self.passed,
        }


class Runner(ABC):
    """A loaded model: float32 N x C x H x W images in, N x classes logits out."""

    def __init__(self, compiled: Compiled, threads: int | None) -> None:
        self.compiled = compiled
        self.threads = threads

    @property
    def input_shape(self) -> tuple[int | str, ...]:
        return self.compiled.input_shape

    @property
    def static_batch(self) -> int | None:
        """The model's fixed batch size, or ``None`` when the batch axis is dynamic."""
        batch = self.input_shape[0]
        return batch if isinstance(batch, int) and batch > 0 else None

    @abstractmethod
    def infer(self, x: np.ndarray) -> np.ndarray:
        """Run one batch whose size the model accepts (:attr:`static_batch` when that is set)."""

    def execution(self) -> Execution | None:
        """Where the runtime reports the model runs (see :class:`Execution`); ``None`` when it cannot say."""
        return None

    def run(self, x: np.ndarray) -> np.ndarray:
        """Run any number of images, in chunks of the static batch when the model has one.

        Raises:
            ConfigError: the number of images is not a multiple of the model's static batch.
        """
        batch = self.static_batch
        if batch is None or len(x) == batch:
            return self.infer(x)
        if len(x) % batch:
            msg = (
                f"{len(x)} images cannot be split into batches of {batch}, the model's static batch; "
                f"pass a multiple of {batch} images or export with a dynamic batch."
            )
            raise ConfigError(msg)
        return np.concatenate([self.infer(x[i : i + batch]) for i in range(0, len(x), batch)])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.run(x)


class Backend(ABC):
    """An inference runtime that compiles ONNX files and runs the result."""

    name: ClassVar[str]  # registry name
    module: ClassVar[str]  # Python module of the runtime, probed by is_available()
    install_hint: ClassVar[str]  # how to install the runtime
    artifact_suffix: ClassVar[str]  # suffix of Compiled.model_path
    precisions: ClassVar[tuple[str, ...]]  # precisions compile() supports
    accelerators: ClassVar[tuple[str, ...]] = ("cpu", "gpu", "npu")  # profile accelerators the runtime can run on

    def require(self) -> ModuleType:
        """Import the runtime module or raise :class:`BackendUnavailableError` naming how to install it."""
        from learngene_deploy._imports import require

        return require(self.module, purpose=f"the {self.name} backend", hint=self.install_hint)

    def unavailable_reason(self) -> str | None:
        """Why the backend cannot run here (one sentence), or ``None`` when it can."""
        try:
            self.require()
        except BackendUnavailableError as e:
            return str(e)
        return None

    def is_available(self) -> bool:
        """True when the runtime imports on this machine."""
        return self.unavailable_reason() is None

    def check_precision(self, precision: str) -> None:
        if precision not in self.precisions:
            msg = (
                f"the {self.name} backend cannot compile precision '{precision}'; valid: {', '.join(self.precisions)}."
            )
            raise ConfigError(msg)

    def host_variant(self, compiled: Compiled) -> tuple[Compiled, str | None]:
        """The compiled model as this machine can run it, for verification and build-machine benchmarks.

        Returns:
            ``(compiled, None)`` when this machine runs it exactly as the target would; otherwise the same model
            file with runner settings this machine supports, and one sentence saying what differs.
        """
        return compiled, None

    @abstractmethod
    def compile(
        self,
        onnx_path: str | Path,
        out_dir: str | Path,
        *,
        precision: str = "fp32",
        profile: DeviceProfile | None = None,
        calibration_data: np.ndarray | None = None,
    ) -> Compiled:
        """Compile an ONNX file into ``out_dir`` for this runtime.

        Args:
            onnx_path: the (simplified) ONNX model.
            out_dir: directory for the written files (created if missing).
            precision: ``"fp32"``, ``"fp16"`` or ``"int8"`` (see :attr:`precisions`).
            profile: the target device's profile; its ``runtime`` section supplies threads, execution
                provider, device, workspace and format.
            calibration_data: N x C x H x W float32 images for INT8 calibration (real, preprocessed).

        Returns:
            What was written and the settings a runner needs.

        Raises:
            BackendUnavailableError: the runtime is not installed.
            ConfigError: an unsupported precision, or missing calibration data where it is needed.
            ExportError: the runtime failed to convert the model.
        """

    accuracy_control: ClassVar[str | None] = None  # the library path behind compile_accuracy_controlled, if any

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
        """INT8 that keeps the layers most sensitive to quantization in float until the top-1 drop is within limits.

        The drop is measured on the labelled calibration images (fine-tune data), never on the validation images
        the build's accuracy gate then measures. ``settings["accuracy_control"]`` records the layers kept in fp32
        and the drop the search reached.

        Raises:
            ConfigError: this backend has no accuracy-aware INT8 path.
            ExportError: even the search's last step misses the limit.
        """
        del onnx_path, out_dir, calibration_data, calibration_labels, max_drop_points, profile
        msg = (
            f"the {self.name} backend has no accuracy-controlled INT8; use onnxruntime or openvino, calibrate on more "
            "representative images, or raise --max-int8-drop."
        )
        raise ConfigError(msg)

    @abstractmethod
    def load_runner(self, compiled: Compiled, *, threads: int | None = None) -> Runner:
        """Load compiled files for inference.

        Args:
            compiled: the result of :meth:`compile` (possibly rebuilt with :meth:`Compiled.from_dict`).
            threads: intra-op CPU threads; ``None`` takes ``compiled.settings["threads"]``, then the runtime default.
        """


def prepare(backend: Backend, onnx_path: str | Path, out_dir: str | Path, precision: str) -> tuple[Path, Path, float]:
    """Common start of ``compile``: probe the runtime, check the precision and paths; returns (onnx, out, t0)."""
    from learngene_deploy.errors import ExportError

    backend.require()
    backend.check_precision(precision)
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        msg = f"cannot compile {onnx_path} with {backend.name}: the file does not exist; export the model first."
        raise ExportError(msg)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return onnx_path, out, time.perf_counter()


def need_calibration(backend: Backend, calibration_data: np.ndarray | None) -> np.ndarray:
    """Return the calibration images as float32, or raise ConfigError when INT8 got none."""
    if calibration_data is None or len(calibration_data) == 0:
        msg = (
            f"{backend.name} int8 needs calibration images; pass calibration_data as N x C x H x W float32 "
            "images from the training or validation data (a few hundred are enough)."
        )
        raise ConfigError(msg)
    return np.ascontiguousarray(calibration_data, dtype=np.float32)


def labelled_batches(images: np.ndarray, labels: np.ndarray, batch: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Whole batches of (images, labels) for calibration and accuracy searches (a static-batch model needs them)."""
    if len(labels) != len(images):
        msg = f"got {len(images)} calibration images but {len(labels)} labels; pass one integer label per image."
        raise ConfigError(msg)
    usable = len(images) - len(images) % batch
    if usable == 0:
        msg = f"{len(images)} calibration images do not fill one batch of {batch}; pass more."
        raise ConfigError(msg)
    return [(images[i : i + batch], np.asarray(labels[i : i + batch])) for i in range(0, usable, batch)]


def top1(logits_fn: Any, batches: list[tuple[np.ndarray, np.ndarray]]) -> tuple[float, list[float]]:
    """Top-1 accuracy of ``logits_fn`` over labelled batches, and each batch's accuracy."""
    per_batch = [float(np.mean(np.asarray(logits_fn(x)).argmax(1) == y)) for x, y in batches]
    sizes = [len(y) for _, y in batches]
    return float(np.average(per_batch, weights=sizes)), per_batch


def source_facts(onnx_path: Path) -> tuple[tuple[int | str, ...], str]:
    """Input shape (named dims as strings) and sha256 of the ONNX file a backend compiles."""
    import onnx

    from learngene_deploy._fs import sha256_file
    from learngene_deploy.export import onnx_input_shape

    return onnx_input_shape(onnx.load_model(onnx_path, load_external_data=False)), sha256_file(onnx_path)


def runner_threads(compiled: Compiled, threads: int | None) -> int | None:
    """Threads for a runner: the explicit value, else the compile-time setting, else None (runtime default)."""
    return threads if threads is not None else compiled.settings.get("threads")
