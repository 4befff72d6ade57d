"""The Python API: what ``lgdeploy`` does, as functions and objects for notebooks and training scripts.

    import learngene_deploy as lgd

    lg = lgd.load_learngene("lets-fashion-mnist")        # a shipped name or a .safetensors file
    model = lg.recompose(depth=6, width=64)                 # a plain timm VisionTransformer
    sel = lgd.select("raspberry-pi-5", lg)                  # which size fits the device, and why
    art = lgd.build("cpu-host", data="digits", finetune_steps=20, out="artifacts/cpu-host", force=True)
    print(art.predict(["photo.png"])[0].top)              # [(class name, probability), ...]

Every function raises the library's own errors (:mod:`learngene_deploy.errors`, one sentence each), never
``SystemExit``; the command line is a thin shell over these same functions. Nothing heavy is imported until a
function needs it: ``import learngene_deploy`` stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from learngene_deploy.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from timm.models.vision_transformer import VisionTransformer

    from learngene_deploy.artifact.manifest import Manifest
    from learngene_deploy.artifact.predict import Prediction
    from learngene_deploy.data.contract import Preprocessing
    from learngene_deploy.learngene.base import WeightGenerator
    from learngene_deploy.pipeline.options import BuildOptions
    from learngene_deploy.profile import DeviceProfile


class Learngene:
    """A learngene file: its method, metadata, the sizes it recomposes and their direct accuracy."""

    def __init__(self, path: str | Path, metadata: dict[str, Any]) -> None:
        self.path = Path(path)
        self.metadata = metadata
        self._generator: WeightGenerator | None = None

    def __repr__(self) -> str:
        return f"Learngene({self.path.name!r}, method={self.method!r}, sizes={len(self.sizes)})"

    @property
    def method(self) -> str:
        """``"ldr"`` or ``"lets"``."""
        return str(self.metadata["method"])

    @property
    def sizes(self) -> list[dict[str, Any]]:
        """Every size it offers, as the keyword dicts :meth:`recompose` takes (e.g. ``{"depth": 6, "width": 64}``)."""
        from learngene_deploy.sizing.candidates import candidates_from_metadata

        return [dict(c.size) for c in candidates_from_metadata(self.metadata)]

    @property
    def preprocessing(self) -> Preprocessing:
        """The input contract it was trained with (size, resize/crop, interpolation, mean/std)."""
        from learngene_deploy.learngene.io import learngene_contract

        return learngene_contract(self.metadata)

    @property
    def classes(self) -> list[str]:
        """Class names of its head in output order (empty where neither the file nor its training data names them)."""
        from learngene_deploy.learngene.io import learngene_classes

        return learngene_classes(self.metadata)

    def accuracy(self, size: dict[str, Any] | None = None, **kw: Any) -> float | None:
        """Direct top-1 (0..1) of a size from the learngene's accuracy table; None where the table lacks it."""
        wanted = {**(size or {}), **kw}
        for row in self.metadata.get("accuracy") or []:
            if all(row.get(k) == v for k, v in wanted.items()) and wanted:
                return None if row.get("top1") is None else float(row["top1"])
        return None

    @property
    def generator(self) -> WeightGenerator:
        """The weight generator (loaded on first use; torch is imported then)."""
        if self._generator is None:
            from learngene_deploy.learngene.io import load_learngene as load_file

            self._generator = load_file(self.path)
        return self._generator

    def recompose(self, **size: Any) -> VisionTransformer:
        """A plain timm ``VisionTransformer`` of ``size`` (default: the training size), ready to fine-tune or export.

        Raises:
            LearngeneError: the size is not one this learngene supports (the message lists the valid ones).
        """
        return self.generator.recompose(**size)


def load_learngene(name_or_path: str | Path | None = None) -> Learngene:
    """A shipped learngene by name (``lets-fashion-mnist``, ``ldr-fashion-mnist``), a file, or None (the default).

    Raises:
        LearngeneError: no such file or name, or not a learngene (one sentence saying which).
    """
    from learngene_deploy.learngene.io import read_metadata
    from learngene_deploy.shipped import resolve_learngene

    path = resolve_learngene(None if name_or_path is None else str(name_or_path))
    return Learngene(path, read_metadata(path))


@dataclass(frozen=True)
class Selection:
    """Which size fits a profile: ``chosen`` and every ``candidate`` (dicts: size, arch, predicted latency ms,
    memory MB, accuracy, fits, misses, pareto), the ``pareto`` front, and ``notes``; ``budget_use`` is set when the
    chosen size uses under a quarter of the latency budget because the learngene offers nothing larger."""

    profile: str
    chosen: dict[str, Any]
    candidates: list[dict[str, Any]]
    notes: list[str]
    predictor: str = "roofline"  # "roofline", "table" or the auto profile's per-runtime tables
    learngene: str = ""  # the learngene file the sizes come from
    budget_use: dict[str, Any] | None = None
    pinned: bool = False  # ``size`` was given: ``chosen`` is that size, fitting or not

    @property
    def pareto(self) -> list[dict[str, Any]]:
        return [c for c in self.candidates if c["pareto"]]

    def to_dict(self) -> dict[str, Any]:
        """What ``lgdeploy select --json`` prints."""
        return {
            "learngene": self.learngene,
            "profile": self.profile,
            "predictor": self.predictor,
            "chosen": self.chosen,
            "candidates": self.candidates,
            "notes": self.notes,
            "budget_use": self.budget_use,
            "pinned": self.pinned,
        }


def _profile(profile: str | Path | DeviceProfile) -> DeviceProfile:
    from learngene_deploy.profile import DeviceProfile, load_profile

    return profile if isinstance(profile, DeviceProfile) else load_profile(str(profile))


def select(
    profile: str | Path | DeviceProfile,
    learngene: str | Path | Learngene | None = None,
    *,
    size: dict[str, Any] | str | None = None,
) -> Selection:
    """Predict every size of ``learngene`` on ``profile`` and choose the most accurate one that meets every budget.

    Args:
        profile: a shipped profile name, a YAML file or a loaded :class:`DeviceProfile`.
        learngene: a :class:`Learngene`, a shipped name or a file (default: the shipped learngene).
        size: evaluate this size instead of choosing (a dict such as ``{"depth": 6, "width": 64}`` or the CLI's
            ``"depth=6,width=64"``); ``chosen`` is then that size, with ``fits`` saying whether it meets the budgets.

    Raises:
        SelectionError: nothing fits (names the closest size and what it misses), or ``size`` is not offered (lists
            the valid sizes). ConfigError: ``size`` is a string that is not KEY=INT pairs.
    """
    from learngene_deploy.sizing.candidates import candidates_from_metadata
    from learngene_deploy.sizing.select import pin
    from learngene_deploy.sizing.select import select as choose

    lg = learngene if isinstance(learngene, Learngene) else load_learngene(learngene)
    p = _profile(profile)
    candidates = candidates_from_metadata(lg.metadata)
    if size is not None:
        from learngene_deploy.sizing.candidates import match_size

        wanted = parse_size_arg(size)
        selection = pin(candidates, match_size(candidates, wanted, lg.path.name), p).to_dict()
    else:
        selection = choose(candidates, p).to_dict()
    return Selection(
        p.name,
        selection["chosen"],
        selection["candidates"],
        selection["notes"],
        selection["predictor"],
        str(lg.path),
        selection["budget_use"],
        selection["pinned"],
    )


def parse_size_arg(size: dict[str, Any] | str | tuple[tuple[str, int], ...]) -> dict[str, int]:
    """A pinned size as a dict of integers, from a dict, ``(key, value)`` pairs or ``"depth=6,width=64"``.

    Raises:
        ConfigError: not KEY=INT pairs (one sentence with an example).
    """
    from learngene_deploy.sizing.candidates import SIZE_EXAMPLE, parse_size

    if isinstance(size, str):
        return parse_size(size)
    if not isinstance(size, (dict, tuple, list)):
        raise ConfigError(f"size {size!r} is not a size; pass e.g. {SIZE_EXAMPLE}.")
    pairs = list(size.items()) if isinstance(size, dict) else list(size)
    out: dict[str, int] = {}
    for pair in pairs:
        key, value = pair if isinstance(pair, (tuple, list)) and len(pair) == 2 else (pair, None)
        if not isinstance(key, str) or isinstance(value, bool) or not isinstance(value, int) or value < 0 or key in out:
            msg = f"size {size!r} is not a mapping of distinct size keys to integers; pass e.g. {SIZE_EXAMPLE}."
            raise ConfigError(msg)
        out[key] = value
    return out


class Artifact:
    """A per-device artifact directory written by :func:`build` (or ``lgdeploy build``)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._manifest: Manifest | None = None

    @property
    def manifest(self) -> Manifest:
        """The manifest (read on first use, re-read after :meth:`bench` records a measurement).

        Raises:
            ArtifactError: no manifest, or one that is not an lgdeploy manifest.
        """
        if self._manifest is None:
            from learngene_deploy.artifact.store import read_manifest

            self._manifest = read_manifest(self.path)
        return self._manifest

    def __repr__(self) -> str:
        return f"Artifact({str(self.path)!r}, profile={self.manifest.profile_name!r}, status={self.status!r})"

    @property
    def status(self) -> str:
        """``complete``, ``awaiting-compile`` (the profile's runtime was missing on the build machine, or
        ``--defer-compile``: finish it with ``lgdeploy compile``) or ``complete-with-skipped-steps``."""
        return str(self.manifest.get("status"))

    @property
    def classes(self) -> list[str]:
        return [str(c) for c in self.manifest.get("classes") or []]

    def verify(
        self, *, expect: str | None = None, max_abs: float | None = None, min_agreement: float | None = None
    ) -> dict[str, Any]:
        """Check every file's sha256 and re-run the shipped model on the golden images against PyTorch's logits.

        Args:
            expect: the manifest's sha256 as the build printed it (the trust anchor outside the manifest).
            max_abs, min_agreement: tolerance overrides (default: this lgdeploy's for the model's precision).

        Raises:
            ArtifactError: a file is missing, changed, extra or outside the artifact, or the manifest is not the
                expected one. VerificationError: the numbers no longer match.
        """
        from learngene_deploy.artifact.store import recheck_artifact

        return recheck_artifact(self.path, expect=expect, max_abs=max_abs, min_agreement=min_agreement)

    def predict(self, images: Sequence[Any], *, top: int = 5) -> list[Prediction]:
        """Top classes of each image (file paths, PIL images or uint8 arrays) with the artifact's own preprocessing."""
        from learngene_deploy.artifact.predict import predict

        return predict(self.path, images, top=top)

    def bench(self, *, runs: int = 50, rounds: int = 3, profile: str | Path | None = None) -> dict[str, Any]:
        """Benchmark here in fresh processes and record it in the manifest; the new record (``measured`` time,
        ``host`` facts, ``stats``: p50/p90/p99 ms ...)."""
        from learngene_deploy.artifact.store import bench_artifact

        manifest = bench_artifact(self.path, runs=runs, rounds=rounds, profile=profile)
        self._manifest = manifest
        return manifest.target_benchmarks[-1]


def build_options(
    profile: str | Path,
    *,
    learngene: str | Path | Learngene | None = None,
    data: str | Path | None = None,
    finetune_steps: int | None = None,
    finetune_epochs: float | None = None,
    backend: str | None = None,
    precision: str | None = None,
    out: str | Path | None = None,
    force: bool = False,
    progress: bool = True,
    **options: Any,
) -> BuildOptions:
    """The checked options of one :func:`build` (same arguments, minus ``log``): every mistake that needs no data
    or model is refused here, before any work.

    Raises:
        ConfigError: an unknown option, a value out of range, contradictory options (one sentence each).
    """
    import dataclasses

    from learngene_deploy.pipeline.options import BuildOptions
    from learngene_deploy.pipeline.run import validate

    valid = {f.name for f in dataclasses.fields(BuildOptions)}
    if unknown := sorted(set(options) - valid):
        msg = f"unknown build option(s) {', '.join(unknown)}; valid options are {', '.join(sorted(valid))}."
        raise ConfigError(msg)
    lg = learngene.path if isinstance(learngene, Learngene) else learngene
    if options.get("size") is not None:  # a dict, pairs or "depth=6,width=64"; kept as pairs (hashable)
        options["size"] = tuple(parse_size_arg(options["size"]).items())
    opts = BuildOptions(
        profile=str(profile),
        learngene=None if lg is None else str(lg),
        data=None if data is None else str(data),
        finetune_steps=finetune_steps,
        finetune_epochs=finetune_epochs,
        backend=backend,
        precision=precision,
        out=None if out is None else Path(out),
        force=force,
        progress=progress,
        **options,
    )
    validate(opts)
    return opts


def build(
    profile: str | Path,
    *,
    log: Callable[[str, str], None] | None = None,
    **options: Any,
) -> Artifact:
    """The same build as ``lgdeploy build --profile PROFILE``: select, recompose, fine-tune, export, verify, compile,
    benchmark and write the artifact.

    Args:
        profile: a shipped profile name or a YAML file.
        log: called with (stage, message) after each stage instead of printing.
        options: ``learngene`` (a :class:`Learngene`, shipped name or file), ``data``, ``finetune_steps``,
            ``finetune_epochs``, ``backend``, ``precision``, ``out``, ``force``, ``progress`` (print each stage and
            the fine-tune's progress bar to stderr; default True), ``size`` (pin a size instead of choosing one:
            ``{"depth": 6, "width": 64}`` or ``"depth=6,width=64"``; built even when it misses a budget, with a
            warning and ``"pinned": true`` in the manifest's selection) and any other
            :class:`~learngene_deploy.pipeline.options.BuildOptions` field (``recipe``, ``aug``, ``workers``,
            ``on_bad_image``, ``seed``, ``exporter`` ...), as :func:`build_options` takes them.

    Raises:
        ConfigError, DataError, SelectionError, VerificationError, ArtifactError: one sentence, nothing half-written.
    """
    from learngene_deploy.pipeline.run import build as run_build

    opts = build_options(profile, **options)
    result = run_build(opts, log=log or (_print_stage if opts.progress else _quiet))
    return Artifact(result.out_dir)


def _quiet(stage: str, message: str) -> None:
    del stage, message


def _print_stage(stage: str, message: str) -> None:
    import sys

    print(f"✓ {stage:<9} {message}", file=sys.stderr)


__all__ = ["Artifact", "Learngene", "Selection", "build", "load_learngene", "select"]
