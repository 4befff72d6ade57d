"""Figures for docs/results.md from the JSON files in benchmarks/results/ (needs the ``plots`` extra: matplotlib).

    pip install -e ".[plots]" && python -m benchmarks.plots [--results benchmarks/results] [--out docs/img]

Each figure is skipped (with a line saying so) when its JSON file is missing.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import matplotlib

from benchmarks._common import RESULTS

matplotlib.use("Agg")
import matplotlib.pyplot as plt

plt.rcParams.update({"svg.hashsalt": "lgdeploy", "font.size": 9, "figure.dpi": 100})


def _save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, metadata={"Date": None})
    plt.close(fig)
    print(f"wrote {path}")


def learngene_vs_scratch(report: dict[str, Any], path: Path) -> None:
    rows, e = report["rows"], report["epochs"]
    fig, (ax, curves) = plt.subplots(1, 2, figsize=(10, 3.8))
    params = [r["params"] / 1e3 for r in rows]
    for key, style, name in (
        ("learngene_0ep", "o:", "learngene, no tuning"),
        ("learngene_1ep", "o-", "learngene + 1 epoch"),
        ("scratch_1ep", "s:", "scratch, 1 epoch"),
        (f"scratch_{e}ep", "s-", f"scratch, {e} epochs"),
    ):
        ax.plot(params, [100 * r[key] for r in rows], style, label=name)
    for r, x in zip(rows, params, strict=True):
        ax.annotate("x".join(str(v) for v in r["size"].values()), (x, 100 * r["learngene_1ep"]), fontsize=7)
    ax.set_xlabel("parameters (thousands)")
    ax.set_ylabel("top-1 %")
    ax.set_title(f"{report['data']['name']}: learngene init vs scratch")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    for r in rows:
        label = "x".join(str(v) for v in r["size"].values())
        (line,) = curves.plot(range(1, e + 1), [100 * v for v in r["scratch_curve"]], label=f"{label} scratch")
        curves.axhline(100 * r["learngene_1ep"], color=line.get_color(), ls="--", lw=0.8)
    curves.set_xlabel(f"epoch of the {e}-epoch scratch schedule")
    curves.set_ylabel("top-1 %")
    curves.set_title("scratch curves; dashed: learngene + 1 epoch")
    curves.grid(alpha=0.3)
    curves.legend(fontsize=7)
    _save(fig, path)


def ldr_ict_sct(report: dict[str, Any], path: Path) -> None:
    res = report["results"]
    counts = [int(c) for c in report["args"]["stages"].split(",")]
    depths = sorted({r["depth"] for r in res["ict"]["accuracy"]})
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for ax, mode in zip(axes, ("ict", "sct"), strict=True):
        cells = {(r["depth"], r["genes"]): 100 * r["top1"] for r in res[mode]["accuracy"]}
        for k in counts:
            ax.plot(depths, [cells[d, k] for d in depths], "o-", label=f"{k} learngene{'s' if k > 1 else ''}")
        ax.set_title(f"LDR {mode.upper()}: direct top-1 of recomposed nets")
        ax.set_xlabel("depth")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("top-1 %")
    _save(fig, path)


def ldr_bases(report: dict[str, Any], path: Path) -> None:
    bases = report["results"]
    names = list(bases)
    fig, ax = plt.subplots(figsize=(6, 3.4))
    x = range(len(names))
    full = [100 * bases[n]["full_top1"] for n in names]
    mean = [100 * bases[n]["mean_top1"] for n in names]
    ax.bar([i - 0.2 for i in x], full, 0.4, label="full size (paper's comparison)")
    ax.bar([i + 0.2 for i in x], mean, 0.4, label="mean over recomposed sizes")
    ax.set_xticks(list(x), names)
    ax.set_ylabel("top-1 %")
    ax.set_title("LDR coefficient bases (SCT)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, axis="y")
    _save(fig, path)


def init_comparison(report: dict[str, Any], path: Path) -> None:
    rows = report["rows"]
    names = list(report["learngenes"])
    fig, ax = plt.subplots(figsize=(7, 3.6))
    width = 0.8 / (len(names) + 1)
    for i, name in enumerate(names):
        xs = [j + i * width for j in range(len(rows))]
        ax.bar(xs, [100 * r[f"{name}_1ep"] for r in rows], width, label=f"{name} + 1 epoch")
        ax.scatter(xs, [100 * r[f"{name}_0ep"] for r in rows], marker="_", s=200, color="k", zorder=3)
    xs = [j + len(names) * width for j in range(len(rows))]
    ax.bar(xs, [100 * r["scratch_1ep"] for r in rows], width, label="scratch, 1 epoch", color="0.6")
    ax.set_xticks([j + width * len(names) / 2 for j in range(len(rows))], [f"{r['depth']}x{r['width']}" for r in rows])
    ax.set_ylabel("top-1 %")
    ax.set_ylim(bottom=min(100 * r["scratch_1ep"] for r in rows) - 10)
    ax.set_title("initialisation at equal Des-Net size (black ticks: no tuning)")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3, axis="y")
    _save(fig, path)


def cost(report: dict[str, Any], path: Path) -> None:
    c = report["cost"]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    lg = c["learngene_training"]["tflops"]
    ft = [s["finetune_tflops"] for s in c["per_size"]]
    scratch = [s["scratch_tflops"] for s in c["per_size"]]
    ax.bar(0, lg, label="learngene training (once)", color="C0")
    bottom = lg
    for i, v in enumerate(ft):
        ax.bar(0, v, bottom=bottom, color=f"C{1 + i % 8}", edgecolor="w")
        bottom += v
    bottom = 0.0
    for i, (s, v) in enumerate(zip(c["per_size"], scratch, strict=True)):
        ax.bar(1, v, bottom=bottom, color=f"C{1 + i % 8}", edgecolor="w", label=s["size"])
        bottom += v
    bound = " (lower bound)" if c["scratch_is_lower_bound"] else ""
    ax.set_xticks([0, 1], ["learngene + 1-epoch fine-tunes", f"scratch to the same accuracy{bound}"])
    ax.set_ylabel("training TFLOPs")
    ax.set_title(f"compute for {len(ft)} sizes")
    ax.legend(fontsize=7)
    _save(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--out", type=Path, default=Path("docs/img"))
    parser.add_argument("--format", choices=["svg", "png"], default="svg")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    jobs = [
        ("learngene_vs_scratch_fashion-mnist.json", learngene_vs_scratch, "learngene_vs_scratch_fmnist.svg"),
        ("learngene_vs_scratch_digits.json", learngene_vs_scratch, "learngene_vs_scratch_digits.svg"),
        ("learngene_vs_scratch_fashion-mnist.json", cost, "cost_of_sizes.svg"),
        ("ldr_fashion_mnist.json", ldr_ict_sct, "ldr_ict_sct.svg"),
        ("ldr_bases.json", ldr_bases, "ldr_bases.svg"),
        ("init_comparison.json", init_comparison, "init_comparison.svg"),
    ]
    for source, plot, name in jobs:
        file = args.results / source
        if not file.exists():
            print(f"skipped {name}: {file} does not exist (run its benchmark first)")
            continue
        plot(json.loads(file.read_text()), args.out / Path(name).with_suffix(f".{args.format}"))


if __name__ == "__main__":
    main()
