"""Candidate sizes of a learngene, from its metadata alone (no tensors, no torch).

Every row of the learngene's accuracy table is a candidate with a known direct accuracy. A learngene without
a table offers its supported-size grid instead (accuracy unknown): LDR every depth up to its training depth
times every learngene count; LeTs every depth up to the Aux depth times every width (``continuous`` selection).
"""

from __future__ import annotations

import re
from typing import Any

from learngene_deploy.errors import ConfigError, LearngeneError, SelectionError
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


SIZE_EXAMPLE = "depth=6,width=64 (LeTs) or depth=6,genes=4 (LDR)"
_PAIR = re.compile(r"([a-z_]+)=([0-9]{1,6})")


def parse_size(text: str) -> dict[str, int]:
    """``"depth=6,width=64"`` as ``{"depth": 6, "width": 64}``: comma-separated KEY=INT pairs, each key once.

    Raises:
        ConfigError: anything else (one sentence with an example).
    """
    pairs = [part.strip() for part in str(text).split(",")]
    size: dict[str, int] = {}
    for part in pairs:
        match = _PAIR.fullmatch(part)
        if match is None:
            msg = f"--size {text!r}: {part!r} is not KEY=INT; give comma-separated KEY=INT pairs, e.g. {SIZE_EXAMPLE}."
            raise ConfigError(msg)
        key, value = match.group(1), int(match.group(2))
        if key in size:
            raise ConfigError(f"--size {text!r} gives '{key}' twice; give each key once, e.g. {SIZE_EXAMPLE}.")
        size[key] = value
    return size


def size_keys(candidates: list[Candidate]) -> list[str]:
    """The integer keys that tell the candidates apart (``depth``, ``width`` or ``genes``), in table order."""
    keys: dict[str, None] = {}
    for c in candidates:
        keys.update((k, None) for k, v in c.size.items() if isinstance(v, int) and not isinstance(v, bool))
    return list(keys)


def _ranges(values: list[int]) -> str:
    """``[1, 2, 3, 5]`` as ``1-3/5``."""
    out: list[str] = []
    values = sorted(set(values))
    start = prev = values[0]
    for v in [*values[1:], None]:
        if v is not None and v == prev + 1:
            prev = v
            continue
        out.append(str(start) if start == prev else f"{start}-{prev}")
        if v is not None:
            start = prev = v
    return "/".join(out)


def describe_sizes(candidates: list[Candidate]) -> str:
    """The sizes compactly, e.g. ``depth 1-8 x width 48/64/80/96`` (groups joined by ``;`` where not a grid)."""
    keys = size_keys(candidates)
    if "depth" not in keys or len(keys) == 1:
        return ", ".join(dict.fromkeys(c.label for c in candidates))
    others = [k for k in keys if k != "depth"]
    depths: dict[tuple[int, ...], list[int]] = {}
    for c in candidates:
        depths.setdefault(tuple(c.size.get(k) for k in others), []).append(int(c.size["depth"]))
    by_depths: dict[str, list[tuple[int, ...]]] = {}
    for rest, ds in depths.items():
        by_depths.setdefault(_ranges(ds), []).append(rest)
    groups = []
    for depth_text, rests in by_depths.items():
        if len(others) == 1:
            rest_text = f"{others[0]} " + "/".join(str(v) for v in sorted({r[0] for r in rests if r[0] is not None}))
        else:
            rest_text = "/".join(",".join(f"{k}={v}" for k, v in zip(others, r, strict=True)) for r in rests)
        groups.append(f"depth {depth_text} x {rest_text}")
    return "; ".join(groups)


def match_size(candidates: list[Candidate], size: dict[str, int], learngene: str) -> Candidate:
    """The candidate a pinned ``size`` names (every integer key given, e.g. depth and width; where rows differ only in
    LeTs strategy, the table's first).

    Raises:
        SelectionError: a key the learngene's sizes do not have, a key missing, or a size it does not offer (the
            message lists the valid sizes compactly).
    """
    keys = size_keys(candidates)
    given = " ".join(f"{k}={v}" for k, v in size.items())
    valid = describe_sizes(candidates)
    if set(size) != set(keys):
        unknown = [k for k in size if k not in keys]
        what = f"has no size key {', '.join(unknown)}" if unknown else f"needs every size key ({', '.join(keys)})"
        msg = f"size {given}: {learngene} {what}; its sizes are {valid}; pin one as {'=N,'.join(keys)}=N."
        raise SelectionError(msg)
    for c in candidates:
        if all(c.size.get(k) == v for k, v in size.items()):
            return c
    raise SelectionError(f"size {given} is not offered by {learngene}; its sizes are {valid}; pin one of those.")
