"""Candidate sizes of a learngene, from its metadata alone (no tensors, no torch).

Every row of the learngene's accuracy table is a candidate with a known direct accuracy. A learngene without
a table offers its supported-size grid instead (accuracy unknown): LDR every depth up to its training depth
times every learngene count; LeTs every depth up to the Aux depth times every width (``continuous`` selection).
"""

from __future__ import annotations

from typing import Any

from learngene_deploy.errors import LearngeneError
from learngene_deploy.models.vit import ArchSpec
from learngene_deploy.sizing.select import Candidate

# Keys of an accuracy-table row (and of WeightGenerator.generate) that define a size, per method.
SIZE_KEYS = {"ldr": ("depth", "genes"), "lets": ("depth", "width", "strategy")}


def arch_for(meta: dict[str, Any], size: dict[str, Any]) -> ArchSpec:
    """Architecture of the model a learngene recomposes at ``size`` (mirrors each method's ``generate``)."""
    train = ArchSpec.from_dict(meta["arch"])
    if meta["method"] == "ldr":
        return train.replace(depth=int(size["depth"]))
    if meta["method"] == "lets":
        width = int(size.get("width", train.embed_dim))
        return train.replace(depth=int(size["depth"]), embed_dim=width, num_heads=width // train.head_dim)
    msg = f"unknown learngene method {meta['method']!r}; valid methods are {', '.join(SIZE_KEYS)}."
    raise LearngeneError(msg)


def _grid(meta: dict[str, Any]) -> list[dict[str, Any]]:
    sizes = meta.get("sizes") or {}
    train = ArchSpec.from_dict(meta["arch"])
    depth = sizes.get("depth") or {}
    max_depth = depth.get("max") or train.depth
    depths = range(int(depth.get("min", 1)), int(max_depth) + 1)
    if meta["method"] == "ldr":
        genes = sizes.get("genes") or [meta["generator"]["genes"]]
        return [{"depth": d, "genes": g} for d in depths for g in genes]
    widths = sizes.get("width") or [train.embed_dim]
    return [{"depth": d, "width": w, "strategy": "continuous"} for d in depths for w in widths]


def candidates_from_metadata(meta: dict[str, Any]) -> list[Candidate]:
    """Every size the learngene offers, with its direct accuracy where the accuracy table has it."""
    method = meta.get("method")
    if method not in SIZE_KEYS:
        msg = f"unknown learngene method {method!r}; valid methods are {', '.join(SIZE_KEYS)}."
        raise LearngeneError(msg)
    rows = meta.get("accuracy") or []
    candidates = []
    if rows:
        for row in rows:
            size = {k: row[k] for k in SIZE_KEYS[method] if k in row}
            top1 = row.get("top1")
            candidates.append(Candidate(size, arch_for(meta, size), None if top1 is None else float(top1)))
    else:
        candidates = [Candidate(size, arch_for(meta, size)) for size in _grid(meta)]
    return candidates
