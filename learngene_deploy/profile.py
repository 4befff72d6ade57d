"""Device profiles: what a target device is, which runtime it uses, and the budgets a model must meet.

A profile is a YAML file (``profiles/NAME.yaml`` in a checkout, shipped inside the package in a wheel).
It is validated strictly at load time: unknown keys, wrong types, missing fields and impossible values
are :class:`~learngene_deploy.errors.ProfileError` with one sentence naming the key and the valid choices.

Example:
    >>> from learngene_deploy.profile import load_profile
    >>> p = load_profile("raspberry-pi-5")
    >>> p.runtime.backend, p.budgets.latency_ms
    ('onnxruntime', 60.0)
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from learngene_deploy._schema import SchemaError, dump_dataclass, load_dataclass, spec
from learngene_deploy.errors import ProfileError
from learngene_deploy.names import AUTO_BACKEND, Precision, RuntimeChoice

NAME_PATTERN = r"[a-z0-9][a-z0-9-]{0,63}"
MAX_PROFILE_BYTES = 1 << 20


ORT_EXECUTION_PROVIDERS: tuple[str, ...] = (
    "CPUExecutionProvider",
    "XnnpackExecutionProvider",
    "CUDAExecutionProvider",
    "TensorrtExecutionProvider",
    "QNNExecutionProvider",
    "CoreMLExecutionProvider",
    "NnapiExecutionProvider",
    "OpenVINOExecutionProvider",
    "DmlExecutionProvider",
)
# ONNX Runtime runs fp16 models fast only on these accelerators (on CPU it would silently upcast).
_ORT_FP16_PROVIDERS = frozenset(
    {"CUDAExecutionProvider", "TensorrtExecutionProvider", "QNNExecutionProvider", "CoreMLExecutionProvider"}
)
OPENVINO_DEVICES: tuple[str, ...] = ("CPU", "GPU", "NPU", "AUTO")


@dataclass(frozen=True, kw_only=True)
class PeakCompute:
    """Peak dense throughput of the device per precision (vendor or measured figures)."""

    fp32: float = spec("peak fp32 throughput, GFLOP/s", gt=0)
    fp16: float | None = spec("peak fp16 throughput, GFLOP/s; null if unsupported", default=None, gt=0)
    int8: float | None = spec("peak int8 throughput, GOP/s; null if unsupported", default=None, gt=0)

    def at(self, precision: str) -> float | None:
        return getattr(self, precision)


@dataclass(frozen=True, kw_only=True)
class DeviceFacts:
    """Hardware facts used for roofline latency estimates and memory checks."""

    name: str = spec("human-readable device name")
    arch: Literal["aarch64", "x86_64"] = spec("CPU instruction set architecture")
    accelerator: Literal["cpu", "gpu", "npu", "dla"] = spec("the unit that runs the model")
    memory_mb: float = spec("memory available to CPU and accelerator, MB", gt=0)
    memory_bandwidth_gbs: float = spec("peak memory bandwidth, GB/s", gt=0)
    peak_gflops: PeakCompute = spec("peak throughput per precision")
    efficiency: float = spec(
        "fraction of roofline a ViT typically reaches on this device, 0 < e <= 1", default=0.5, gt=0, le=1
    )
    cpu: str | None = spec("CPU cores and clocks", default=None)
    power_mode: str | None = spec("power mode the budgets assume (e.g. MAXN_SUPER)", default=None)
    source: str | None = spec("where the facts come from", default=None)


@dataclass(frozen=True, kw_only=True)
class RuntimeSpec:
    """The runtime the artifact is compiled for and how it is run."""

    backend: RuntimeChoice = spec(
        "inference runtime; 'auto' (host profiles): the fastest verified runtime installed here"
    )
    precision: Precision = spec("numeric precision of the compiled model")
    version: str | None = spec("PEP 440 version specifier the target runtime must satisfy", default=None)
    threads: int | None = spec("intra-op CPU threads; null = runtime default", default=None, ge=1, le=1024)
    execution_provider: str | None = spec(
        "ONNX Runtime execution provider", default=None, choices=ORT_EXECUTION_PROVIDERS
    )
    device: str | None = spec("OpenVINO device", default=None, choices=OPENVINO_DEVICES)
    workspace_mb: int | None = spec("TensorRT builder workspace, MB", default=None, ge=1)
    format: Literal["onnx", "ort"] = spec("ONNX Runtime model format ('ort' for ORT Mobile)", default="onnx")
    opset: int = spec("ONNX opset of the exported model", default=18, ge=13, le=23)


@dataclass(frozen=True, kw_only=True)
class Budgets:
    """What a model must meet on the device."""

    latency_ms: float = spec("latency budget at the given percentile, ms", gt=0)
    percentile: Literal[50, 90, 95, 99] = spec("latency percentile the budget applies to", default=90)
    memory_mb: float = spec("peak memory budget for weights + activations, MB", gt=0)
    model_size_mb: float = spec("budget for the compiled model file(s), MB", gt=0)
    batch: int = spec("batch size the model is built and measured at", default=1, ge=1, le=4096)
    input_size: int | Literal["native"] = spec(
        "input height = width in pixels, or 'native' for the learngene's own size", default="native", ge=8, le=4096
    )


@dataclass(frozen=True, kw_only=True)
class DeviceProfile:
    """A target device: facts, runtime and budgets. Load with :func:`load_profile`."""

    schema_version: Literal[1] = spec("profile schema version")
    name: str = spec("profile id: lowercase letters, digits and '-'", pattern=NAME_PATTERN)
    description: str = spec("one line for humans")
    device: DeviceFacts = spec("hardware facts")
    runtime: RuntimeSpec = spec("runtime settings")
    budgets: Budgets = spec("budgets the model must meet")
    host: bool = spec("true: the profile describes the machine lgdeploy runs on", default=False)
    latency_table: str | None = spec("measured latency table (path relative to this file)", default=None)
    # Filled in by the loader, never read from the file.
    source: str = spec("file the profile was loaded from", default="", loaded=False)
    sha256: str = spec("sha256 of the file's bytes", default="", loaded=False)

    @property
    def latency_table_path(self) -> Path | None:
        if self.latency_table is None:
            return None
        return (Path(self.source).parent / self.latency_table).resolve()

    @property
    def threads_label(self) -> str:
        return str(self.runtime.threads) if self.runtime.threads else "default"

    def to_dict(self) -> dict[str, Any]:
        """The profile as plain data, in file order (without the loader's fields)."""
        return dump_dataclass(self)


def _check_consistency(p: DeviceProfile) -> None:
    """Cross-field rules that a single field's type cannot express."""
    rt, b, d = p.runtime, p.budgets, p.device
    if rt.backend == AUTO_BACKEND and not p.host:
        msg = (
            "'runtime.backend' auto chooses among the runtimes installed on the machine lgdeploy runs on, so it needs "
            "'host: true'; name the runtime of this device (onnxruntime, openvino or tensorrt)"
        )
        raise SchemaError("runtime.backend", msg)
    only_for = {"execution_provider": "onnxruntime", "device": "openvino", "workspace_mb": "tensorrt"}
    for key, backend in only_for.items():
        if getattr(rt, key) is not None and rt.backend != backend:
            msg = f"'runtime.{key}' applies only to backend '{backend}', but the backend is '{rt.backend}'; remove it"
            raise SchemaError(f"runtime.{key}", msg)
    if rt.format == "ort" and rt.backend != "onnxruntime":
        msg = f"'runtime.format: ort' applies only to backend 'onnxruntime', not '{rt.backend}'; use 'onnx'"
        raise SchemaError("runtime.format", msg)
    if rt.backend == "onnxruntime" and rt.precision == "fp16":
        ep = rt.execution_provider or "CPUExecutionProvider"
        if ep not in _ORT_FP16_PROVIDERS:
            msg = (
                f"'runtime.precision' fp16 is not supported by ONNX Runtime's {ep}; use fp32 or int8, "
                f"or one of the providers {', '.join(sorted(_ORT_FP16_PROVIDERS))}"
            )
            raise SchemaError("runtime.precision", msg)
    if d.peak_gflops.at(rt.precision) is None:
        msg = (
            f"'device.peak_gflops.{rt.precision}' is null but 'runtime.precision' is {rt.precision}; "
            f"give the device's {rt.precision} peak or choose a precision it supports"
        )
        raise SchemaError(f"device.peak_gflops.{rt.precision}", msg)
    if b.memory_mb > d.memory_mb:
        msg = f"'budgets.memory_mb' ({b.memory_mb:g}) exceeds the device's memory 'device.memory_mb' ({d.memory_mb:g})"
        raise SchemaError("budgets.memory_mb", msg)
    if b.model_size_mb > b.memory_mb:
        msg = f"'budgets.model_size_mb' ({b.model_size_mb:g}) exceeds 'budgets.memory_mb' ({b.memory_mb:g})"
        raise SchemaError("budgets.model_size_mb", msg)
    if rt.version is not None:
        from packaging.specifiers import InvalidSpecifier, SpecifierSet

        try:
            SpecifierSet(rt.version)
        except InvalidSpecifier:
            msg = (
                f"'runtime.version' is {rt.version!r}, which is not a PEP 440 version specifier "
                "such as '>=1.20' or '==10.3.*'"
            )
            raise SchemaError("runtime.version", msg) from None


def profile_from_dict(data: Any, *, source: str = "<dict>", sha256: str = "") -> DeviceProfile:
    """Validate parsed YAML and build a DeviceProfile.

    Raises:
        ProfileError: one sentence naming the file, the key and what is valid.
    """
    if not isinstance(data, dict):
        got = "is empty" if data is None else f"holds a {type(data).__name__}"
        msg = f"{source}: a profile must be a YAML mapping of keys to values, but the file {got}."
        raise ProfileError(msg)
    try:
        profile = load_dataclass(DeviceProfile, data)
        _check_consistency(profile)
    except SchemaError as e:
        raise ProfileError(f"{source}: {e}.") from e
    from dataclasses import replace

    profile = replace(profile, source=source, sha256=sha256)
    table = profile.latency_table_path
    if table is not None and not table.is_file():
        msg = f"{source}: 'latency_table' points to {table}, which does not exist; run `lgdeploy profiles calibrate`."
        raise ProfileError(msg)
    return profile


def load_profile_file(path: str | Path) -> DeviceProfile:
    """Load and validate one profile file."""
    import yaml

    from learngene_deploy._fs import read_regular
    from learngene_deploy._schema import load_yaml

    path = Path(path)
    if not path.exists():
        msg = (
            f"profile file {path} does not exist; pass a path to a .yaml profile "
            "or a shipped name (`lgdeploy profiles list`)."
        )
        raise ProfileError(msg)
    try:
        raw = read_regular(path, limit=MAX_PROFILE_BYTES)
    except (OSError, ValueError) as e:
        why = "a directory" if path.is_dir() else getattr(e, "strerror", None) or str(e)
        msg = f"profile {path} cannot be read ({why}); pass a .yaml profile file of at most {MAX_PROFILE_BYTES} bytes."
        raise ProfileError(msg) from e
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        msg = f"{path} is not UTF-8 text (byte {e.start}); a profile is a UTF-8 YAML file."
        raise ProfileError(msg) from e
    try:
        data = load_yaml(text)
    except SchemaError as e:
        raise ProfileError(f"{path}: {e}; a profile is a flat YAML mapping a few levels deep.") from e
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        msg = f"{path} is not valid YAML{where} ({problem}); fix the syntax and try again."
        raise ProfileError(msg) from e
    return profile_from_dict(data, source=str(path), sha256=hashlib.sha256(raw).hexdigest())


def shipped_profiles_dir() -> Path:
    """Directory of the profiles shipped with this installation (wheel package data, or the checkout)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_shipped" / "profiles", here.parent / "profiles"):
        if candidate.is_dir():
            return candidate
    msg = "the shipped profiles are missing from this installation; reinstall learngene-deploy."
    raise ProfileError(msg)


def list_profiles() -> list[str]:
    """Names of the shipped profiles, sorted."""
    return sorted(p.stem for p in shipped_profiles_dir().glob("*.yaml"))


def resolve_profile_path(ref: str | Path) -> Path:
    """Turn a shipped name or a file path into a path, refusing anything else."""
    text = str(ref)
    if isinstance(ref, Path) or text.endswith((".yaml", ".yml")):
        return Path(ref)
    if re.fullmatch(NAME_PATTERN, text):
        from learngene_deploy.families import FAMILIES, family_error

        if text in FAMILIES:
            raise ProfileError(family_error(text))
        path = shipped_profiles_dir() / f"{text}.yaml"
        if not path.is_file():
            import difflib

            names = list_profiles()
            close = difflib.get_close_matches(text, [*names, *FAMILIES], n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            msg = (
                f"no shipped profile named '{text}'{hint}; shipped profiles are: {', '.join(names)} "
                f"(families: {', '.join(FAMILIES)}), or pass a path to a .yaml file."
            )
            raise ProfileError(msg)
        return path
    msg = (
        f"'{text}' is neither a shipped profile name (lowercase letters, digits and '-') nor a path ending in "
        ".yaml or .yml; run `lgdeploy profiles list` for names or pass the path of a .yaml file."
    )
    raise ProfileError(msg)


def load_profile(ref: str | Path) -> DeviceProfile:
    """Load a profile by shipped name (``"jetson-orin-nano"``) or from any file path."""
    return load_profile_file(resolve_profile_path(ref))


def resolve_profile(ref: str | Path, backend: str | None = None, precision: str | None = None) -> DeviceProfile:
    """Load a profile and apply runtime overrides, re-validating the result like a file."""
    profile = load_profile(ref)
    if backend is None and precision is None:
        return profile
    data = profile.to_dict()
    runtime = data["runtime"]
    if backend is not None and backend != runtime["backend"]:
        runtime.update(backend=backend, execution_provider=None, device=None, workspace_mb=None, format="onnx")
    if precision is not None:
        runtime["precision"] = precision
    overridden = profile_from_dict(data, source=f"{profile.source} (with --backend/--precision)", sha256=profile.sha256)
    return dataclasses.replace(overridden, source=profile.source)
