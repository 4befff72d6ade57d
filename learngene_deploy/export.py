"""PyTorch -> ONNX export and ONNX simplification.

Two stage functions, each returning a frozen :class:`OnnxArtifact` that records where it came from:

- :func:`torch2onnx` exports a timm ViT with the dynamo exporter (default) or the legacy TorchScript
  exporter, at a static input size with an optional dynamic batch axis, and writes build facts into the
  model's ``metadata_props``.
- :func:`simplify` runs onnxsim (default) or onnxslim on an exported file.

Exports are deterministic: the same weights, input shape, options and tool versions give a byte-identical
file, in the same process or a fresh one and wherever the packages are installed (no timestamps are
written and the exporters' per-node debug records, which hold local file paths, are dropped; checked
across processes in ``tests/test_export.py``). torch, onnx and the
simplifiers are imported inside the functions, so importing this module is cheap.

Example:
    >>> art = torch2onnx(model, input_shape=(1, 3, 32, 32), out_path="model.onnx", metadata={"arch": arch.name})
    >>> simple = simplify(art, "model.sim.onnx")
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import inspect
import io
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from learngene_deploy._fs import sha256_file
from learngene_deploy._imports import require
from learngene_deploy._version import __version__
from learngene_deploy.errors import ConfigError, ExportError
from learngene_deploy.names import EXPORTERS, SIMPLIFIERS, Exporter, Simplifier

if TYPE_CHECKING:
    import onnx
    import torch

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
BATCH_DIM = "batch"
MAX_DYNAMIC_BATCH = 1024
METADATA_PREFIX = "lgdeploy."


@dataclass(frozen=True)
class OnnxArtifact:
    """An ONNX file written by :func:`torch2onnx` or :func:`simplify`."""

    path: Path  # the .onnx file
    sha256: str  # of the file's bytes
    bytes: int  # file size
    stage: Literal["export", "simplify"]  # which function wrote it
    tool: str  # "torch 2.15.0 dynamo", "onnxsim 0.8.1", ...
    opset: int  # default-domain opset of the file
    input_shape: tuple[int | str, ...]  # ("batch", 3, H, W) when the batch axis is dynamic
    num_nodes: int  # top-level graph nodes
    seconds: float  # wall time of the stage
    source: str  # what it was made from: the model's class name, or the source file's path
    source_sha256: str | None = None  # sha256 of the source file (simplify only)
    metadata: dict[str, str] = field(default_factory=dict)  # the file's metadata_props

    @property
    def dynamic_batch(self) -> bool:
        return isinstance(self.input_shape[0], str)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (paths as strings)."""
        return {**asdict(self), "path": str(self.path), "input_shape": list(self.input_shape)}


def error_summary(error: BaseException, limit: int = 200) -> str:
    """First line of an exception's message, shortened, for embedding in a one-sentence error."""
    first = (str(error).strip().splitlines() or [type(error).__name__])[0].strip()
    return first if len(first) <= limit else first[: limit - 3] + "..."


def onnx_input_shape(model: onnx.ModelProto) -> tuple[int | str, ...]:
    """Shape of the model's first graph input, with named (dynamic) dims as strings."""
    dims = model.graph.input[0].type.tensor_type.shape.dim
    return tuple(d.dim_param or d.dim_value for d in dims)


def _opset(model: onnx.ModelProto) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def _artifact(
    model: onnx.ModelProto,
    path: Path,
    *,
    stage: Literal["export", "simplify"],
    tool: str,
    seconds: float,
    source: str,
    source_sha256: str | None,
) -> OnnxArtifact:
    return OnnxArtifact(
        path=path,
        sha256=sha256_file(path),
        bytes=path.stat().st_size,
        stage=stage,
        tool=tool,
        opset=_opset(model),
        input_shape=onnx_input_shape(model),
        num_nodes=len(model.graph.node),
        seconds=seconds,
        source=source,
        source_sha256=source_sha256,
        metadata={p.key: p.value for p in model.metadata_props},
    )


def _set_metadata(model: onnx.ModelProto, entries: dict[str, str]) -> None:
    """Replace or add ``metadata_props`` entries, keeping the file's key order stable (sorted)."""
    merged = {p.key: p.value for p in model.metadata_props} | entries
    del model.metadata_props[:]
    for key in sorted(merged):
        model.metadata_props.add(key=key, value=str(merged[key]))


def _strip_debug_info(model: onnx.ModelProto) -> None:
    """Drop per-node debug records (stack traces with local file paths, FX node text) so files are portable."""
    graph = model.graph
    for node in graph.node:
        node.doc_string = ""
        del node.metadata_props[:]
    for value in (*graph.input, *graph.output, *graph.value_info, *graph.initializer):
        del value.metadata_props[:]


def _check_and_save(model: onnx.ModelProto, out_path: Path, what: str) -> None:
    import onnx

    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        msg = (
            f"{what} produced an invalid ONNX model ({error_summary(e)}); "
            "try the other exporter or simplifier, or opset 18."
        )
        raise ExportError(msg) from e
    out_path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, out_path)


def _export_dynamo(model: torch.nn.Module, example: torch.Tensor, opset: int, dynamic_batch: bool) -> onnx.ModelProto:
    import torch

    dynamic_shapes = None
    if dynamic_batch:
        param = next(iter(inspect.signature(model.forward).parameters))
        dynamic_shapes = {param: {0: torch.export.Dim(BATCH_DIM, min=1, max=MAX_DYNAMIC_BATCH)}}
    program = torch.onnx.export(
        model,
        (example,),
        None,
        dynamo=True,
        opset_version=opset,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_shapes=dynamic_shapes,
        external_data=False,
        verbose=False,
        optimize=True,
    )
    if program is None:  # pragma: no cover - torch returns None only when f is given
        msg = "the dynamo exporter returned no program; update torch or use exporter='legacy'."
        raise ExportError(msg)
    return program.model_proto


def _export_legacy(model: torch.nn.Module, example: torch.Tensor, opset: int, dynamic_batch: bool) -> onnx.ModelProto:
    import onnx
    import torch

    buffer = io.BytesIO()
    axes = {INPUT_NAME: {0: BATCH_DIM}, OUTPUT_NAME: {0: BATCH_DIM}} if dynamic_batch else None
    torch.onnx.export(
        model,
        (example,),
        buffer,
        dynamo=False,
        opset_version=opset,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_axes=axes,
        do_constant_folding=True,
    )
    return onnx.load_model_from_string(buffer.getvalue())


def _check_export_args(exporter: str, input_shape: tuple[int, ...]) -> None:
    if exporter not in EXPORTERS:
        msg = f"unknown exporter '{exporter}'; valid exporters are {', '.join(EXPORTERS)}."
        raise ConfigError(msg)
    if len(input_shape) != 4 or not all(isinstance(d, int) and d > 0 for d in input_shape):
        msg = f"input_shape must be four positive integers (batch, channels, height, width), got {input_shape!r}."
        raise ConfigError(msg)
    require("onnx", purpose="ONNX export")
    if exporter == "dynamo":
        require("onnxscript", purpose="the dynamo ONNX exporter")


def _run_exporter(
    model: torch.nn.Module, exporter: Exporter, input_shape: tuple[int, ...], opset: int, dynamic_batch: bool
) -> tuple[onnx.ModelProto, float]:
    """The exporter's ONNX proto at exactly ``opset`` (eval mode, training flag restored) and its time in seconds."""
    import torch

    was_training = model.training
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(0)
    example = torch.randn(input_shape, generator=generator).to(device)
    export = _export_dynamo if exporter == "dynamo" else _export_legacy
    start = time.perf_counter()
    try:
        model.eval()
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
            warnings.simplefilter("ignore")  # legacy: deprecation + TracerWarnings from timm's asserts (harmless)
            proto = export(model, example, opset, dynamic_batch)
    except ExportError:
        raise
    except Exception as e:
        other = "legacy" if exporter == "dynamo" else "dynamo"
        msg = (
            f"the {exporter} ONNX exporter failed at opset {opset} ({error_summary(e)}); "
            f"try exporter='{other}' or opset 18."
        )
        raise ExportError(msg) from e
    finally:
        model.train(was_training)
    seconds = time.perf_counter() - start
    if _opset(proto) != opset:
        msg = (
            f"the {exporter} exporter could not produce opset {opset} (it wrote opset {_opset(proto)}); "
            f"export at opset {_opset(proto)} or use exporter='legacy' for older opsets."
        )
        raise ExportError(msg)
    return proto, seconds


def torch2onnx(
    model: torch.nn.Module,
    *,
    input_shape: tuple[int, int, int, int],
    out_path: str | Path,
    opset: int = 18,
    exporter: Exporter = "dynamo",
    dynamic_batch: bool = False,
    metadata: dict[str, str] | None = None,
) -> OnnxArtifact:
    """Export a PyTorch image classifier (N x C x H x W -> N x classes) to one self-contained ONNX file.

    The model is exported in eval mode (its training flag is restored afterwards), on CPU inputs of
    ``input_shape``. The input is named ``input`` and the output ``logits``; with ``dynamic_batch`` the
    first axis of both is named ``batch`` (1 to 1024). Build facts (toolkit and torch versions, exporter,
    opset, input shape) and ``metadata`` are written into ``metadata_props``.

    Args:
        model: the model, e.g. a timm ``VisionTransformer``.
        input_shape: static input shape (batch, channels, height, width) used for tracing.
        out_path: where to write the ``.onnx`` file (parent directories are created).
        opset: ONNX opset (the dynamo exporter translates at 18 and converts to others).
        exporter: ``"dynamo"`` (torch.export based) or ``"legacy"`` (TorchScript tracing, deprecated but fast).
        dynamic_batch: make the batch axis dynamic.
        metadata: extra string entries for ``metadata_props`` (e.g. architecture name, learngene id).

    Returns:
        The written file's :class:`OnnxArtifact`.

    Raises:
        ConfigError: an unknown exporter or a malformed input shape.
        ExportError: the exporter failed or produced an invalid model.
        BackendUnavailableError: onnx or (for dynamo) onnxscript is not installed.
    """
    _check_export_args(exporter, input_shape)
    import torch

    proto, seconds = _run_exporter(model, exporter, input_shape, opset, dynamic_batch)
    tool = f"torch {torch.__version__} {exporter}"
    facts = {
        "toolkit": f"learngene-deploy {__version__}",
        "exporter": tool,
        "opset": str(_opset(proto)),
        "input_shape": "x".join(str(d) for d in onnx_input_shape(proto)),
        "model_class": type(model).__name__,
    }
    _strip_debug_info(proto)
    _set_metadata(proto, {METADATA_PREFIX + k: v for k, v in facts.items()} | (metadata or {}))
    out_path = Path(out_path)
    _check_and_save(proto, out_path, f"the {exporter} exporter")
    return _artifact(
        proto, out_path, stage="export", tool=tool, seconds=seconds, source=type(model).__name__, source_sha256=None
    )


def _run_simplifier(model: onnx.ModelProto, tool: Simplifier) -> onnx.ModelProto:
    if tool == "onnxsim":
        onnxsim = require("onnxsim", purpose="simplifying with onnxsim")
        simplified, ok = onnxsim.simplify(model)
        if not ok:
            msg = "onnxsim's own numeric check failed on the simplified model; simplify with tool='onnxslim' instead."
            raise ExportError(msg)
        return simplified
    onnxslim = require("onnxslim", purpose="simplifying with onnxslim")
    return onnxslim.slim(model)


def simplify(source: OnnxArtifact | str | Path, out_path: str | Path, *, tool: Simplifier = "onnxsim") -> OnnxArtifact:
    """Simplify an ONNX file (constant folding, dead-node and shape-op elimination) with onnxsim or onnxslim.

    The source's ``metadata_props`` are kept and ``lgdeploy.simplifier`` is added. Outputs are not
    compared here: run a :mod:`learngene_deploy.gates` check on the result, as after every stage.

    Args:
        source: the exported artifact or the path of an ``.onnx`` file.
        out_path: where to write the simplified file.
        tool: ``"onnxsim"`` (fast, best on dynamo graphs) or ``"onnxslim"`` (best on legacy graphs).

    Returns:
        The simplified file's :class:`OnnxArtifact` (``source`` is the input path).

    Raises:
        ConfigError: an unknown tool.
        ExportError: the source is missing or the simplifier failed.
    """
    if tool not in SIMPLIFIERS:
        msg = f"unknown simplifier '{tool}'; valid simplifiers are {', '.join(SIMPLIFIERS)}."
        raise ConfigError(msg)
    onnx = require("onnx", purpose="ONNX simplification")
    src = Path(source.path if isinstance(source, OnnxArtifact) else source)
    if not src.is_file():
        msg = f"cannot simplify {src}: the file does not exist; export the model first (torch2onnx)."
        raise ExportError(msg)
    model = onnx.load_model(src)
    version = importlib.metadata.version(tool)
    start = time.perf_counter()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            simplified = _run_simplifier(model, tool)
    except ExportError:
        raise
    except Exception as e:
        other = "onnxslim" if tool == "onnxsim" else "onnxsim"
        msg = f"{tool} failed on {src.name} ({error_summary(e)}); use tool='{other}' or skip simplification."
        raise ExportError(msg) from e
    seconds = time.perf_counter() - start
    _set_metadata(
        simplified,
        {p.key: p.value for p in model.metadata_props} | {METADATA_PREFIX + "simplifier": f"{tool} {version}"},
    )
    out_path = Path(out_path)
    _check_and_save(simplified, out_path, tool)
    return _artifact(
        simplified,
        out_path,
        stage="simplify",
        tool=f"{tool} {version}",
        seconds=seconds,
        source=str(src),
        source_sha256=sha256_file(src),
    )
