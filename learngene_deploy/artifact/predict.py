"""Run an artifact's shipped model on images with the artifact's own preprocessing: ``lgdeploy predict``.

The contract (``manifest["preprocessing"]``) and the class names (``manifest["classes"]``) are those the model was
fine-tuned and verified with; the images go through exactly that transform
(:meth:`~learngene_deploy.data.contract.Preprocessing.preprocess`), then through the compiled model (or, on a
machine without the profile's runtime, the variant of it this machine can run, as ``lgdeploy verify`` does).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from learngene_deploy.errors import ArtifactError, DataError


@dataclass(frozen=True)
class Prediction:
    """The top classes of one image, most probable first."""

    image: str
    top: list[tuple[str, float]]  # (class name, probability)

    def to_dict(self) -> dict[str, Any]:
        return {"image": self.image, "top": [{"class": c, "probability": p} for c, p in self.top]}


def artifact_contract(manifest: dict[str, Any]) -> tuple[Any, list[str]]:
    """(Preprocessing, class names) recorded in a manifest (top-level, or under the fine-tune data of older ones)."""
    from learngene_deploy.data.contract import Preprocessing

    data = (manifest.get("finetune") or {}).get("data") or {}
    record = manifest.get("preprocessing") or data.get("preprocessing")
    if not record:
        msg = (
            "the artifact records no preprocessing contract (it predates contracts); rebuild it with this version "
            "of `lgdeploy build` to predict with it."
        )
        raise ArtifactError(msg)
    classes = manifest.get("classes") or data.get("classes") or []
    return Preprocessing.from_dict(record), [str(c) for c in classes]


def predict(
    artifact_dir: str | Path, images: Sequence[Any], *, top: int = 5, threads: int | None = None
) -> list[Prediction]:
    """The ``top`` classes with probabilities for each image (file paths, PIL images or uint8 arrays).

    Raises:
        ArtifactError: the artifact fails verification of its files or records no contract.
        DataError: an image cannot be read (named in the message).
    """
    import numpy as np

    from learngene_deploy.artifact.store import shipped_model, verify_artifact
    from learngene_deploy.bench import local_threads

    if top < 1:
        raise DataError(f"top must be at least 1, not {top}; pass e.g. --top 5.")
    root = Path(artifact_dir)
    manifest = verify_artifact(root)
    contract, classes = artifact_contract(manifest)
    backend, compiled, _ = shipped_model(root, manifest)
    on_host, _ = backend.host_variant(compiled)
    runner = backend.load_runner(on_host, threads=local_threads(threads or manifest.runtime.threads))
    x = contract.preprocess(images)
    batch = manifest.budgets.batch or 1
    chunks = []
    for i in range(0, len(x), batch):  # a static-batch model takes exactly `batch` images: pad the last chunk
        chunk = x[i : i + batch]
        padded = np.concatenate([chunk, np.zeros((batch - len(chunk), *chunk.shape[1:]), chunk.dtype)])
        chunks.append(runner.run(padded)[: len(chunk)])
    logits = np.concatenate(chunks) if chunks else np.zeros((0, len(classes)), np.float32)
    if classes and logits.shape[1] != len(classes):
        msg = f"the model has {logits.shape[1]} outputs but the manifest names {len(classes)} classes; rebuild it."
        raise ArtifactError(msg)
    names = classes or [str(i) for i in range(logits.shape[1])]
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs = shifted / shifted.sum(axis=1, keepdims=True)
    out = []
    for image, p in zip(images, probs, strict=True):
        order = np.argsort(-p, kind="stable")[:top]
        label = str(image) if isinstance(image, (str, Path)) else type(image).__name__
        out.append(Prediction(label, [(names[k], float(p[k])) for k in order]))
    return out
