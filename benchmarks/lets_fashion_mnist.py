"""LeTs on Fashion-MNIST: direct-evaluation accuracy of Des-Nets across depths, widths and selection strategies.

Trains a small LeTs learngene (learngene 4 x 32 grown to an Aux-Net 8 x 64, head dim 8, 28 px, patch 7) with the
shared training loop, stores it (with its depth x width accuracy table) as a learngene file, then evaluates Des-Nets
initialised from it without any fine-tuning:

- every depth 1..8 x every width 32..64 (continuous selection, the table stored in the learngene file);
- every selection strategy at the intermediate widths, for depths 4, 6 and 8 (at widths 32 and 64 all strategies
  select the same rows).

    python -m benchmarks.lets_fashion_mnist --quick   # 10k train / 1k test images, 300 steps (minutes on 2 cores)
    python -m benchmarks.lets_fashion_mnist           # 60k / 10k images, 3 epochs

Needs the Debian package ``dataset-fashion-mnist`` (or ``--data DIR`` holding the four IDX files). Prints the tables
and writes ``OUT/results.json`` and ``OUT/learngene.safetensors``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks._common import command_line, host_facts, write_json
from learngene_deploy.data import load_data
from learngene_deploy.learngene.lets import STRATEGIES, LeTsGenerator
from learngene_deploy.training.loop import TrainConfig
from learngene_deploy.training.recipes import accuracy_table, train_learngene
from learngene_deploy.training.teacher import load_teacher


def grid(rows: list[dict[str, Any]], row_key: str, col_key: str, title: str) -> str:
    """Plain-text table of top-1 (%) with one row per ``row_key`` value and one column per ``col_key`` value."""
    cols = sorted({r[col_key] for r in rows}, key=lambda c: STRATEGIES.index(c) if c in STRATEGIES else c)
    cells = {(r[row_key], r[col_key]): f"{100 * r['top1']:.2f}" for r in rows}
    lines = [title, f"{row_key:>10} " + " ".join(f"{c!s:>10}" for c in cols)]
    for value in sorted({r[row_key] for r in rows}):
        lines.append(f"{value!s:>10} " + " ".join(f"{cells.get((value, c), ''):>10}" for c in cols))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="10k train / 1k test images and 300 steps")
    parser.add_argument("--data", default="fashion-mnist", help="fashion-mnist or a directory of the four IDX files")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-lets-fashion-mnist"), help="output directory")
    parser.add_argument("--epochs", type=float, default=3.0, help="training epochs (full mode)")
    parser.add_argument("--max-steps", type=int, default=None, help="training steps (overrides --epochs)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--teacher", default=None, help="distillation teacher (lgdeploy file); CE when omitted")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    limits = dict(train_limit=10_000, val_limit=1_000) if args.quick else {}
    steps = 300 if args.quick and args.max_steps is None else args.max_steps

    torch.manual_seed(args.seed)
    data = load_data(args.data, img_size=28, seed=args.seed, **limits)
    arch = dict(img_size=28, patch_size=7, head_dim=8, learngene_depth=4, learngene_dim=32, aux_depth=8, aux_dim=64)
    gen = LeTsGenerator(**arch, in_chans=data.in_chans, num_classes=data.num_classes)
    widths, depths = gen.supported_sizes()["width"], list(range(1, arch["aux_depth"] + 1))
    cfg = TrainConfig(
        out=args.out, epochs=args.epochs, max_steps=steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
        distill="soft", alpha=1.0,
    )  # fmt: skip
    teacher = load_teacher(args.teacher, num_classes=data.num_classes) if args.teacher else None

    start = time.perf_counter()
    result = train_learngene(
        gen,
        data,
        cfg,
        out_file=args.out / "learngene.safetensors",
        sizes=[{"depth": d, "width": w} for d in depths for w in widths],
        teacher=teacher,
        teacher_name=args.teacher,
        recipe={"script": "benchmarks/lets_fashion_mnist.py", **{k: str(v) for k, v in vars(args).items()}},
    )
    table_time = time.perf_counter() - start - result.wall_time_s
    from learngene_deploy.learngene.io import read_metadata

    table = read_metadata(args.out / "learngene.safetensors")["accuracy"]
    start = time.perf_counter()
    mid = widths[1:-1]
    sizes = [{"depth": d, "width": w, "strategy": s} for d in (4, 6, 8) for w in mid for s in STRATEGIES]
    strategies = accuracy_table(gen, sizes, data.val)
    strategy_time = time.perf_counter() - start

    print(f"\nLeTs on {data.info['name']}: {data.info['train_size']} train / {data.info['val_size']} test images")
    print(f"trained {result.steps} steps in {result.wall_time_s:.1f} s, final loss {result.final_loss:.4f}")
    budget = gen.parameter_budget()
    print("stored parameters: " + ", ".join(f"{k} {v:,}" for k, v in budget.items()) + "\n")
    print(grid(table, "depth", "width", "direct top-1 % (depth x width, continuous)") + "\n")
    for d in (4, 6, 8):
        rows = [r for r in strategies if r["depth"] == d]
        print(grid(rows, "width", "strategy", f"direct top-1 % at depth {d} (width x strategy)") + "\n")

    report = {
        "benchmark": "lets_fashion_mnist",
        "command": command_line(),
        "quick": args.quick,
        "arch": arch,
        "data": data.info,
        "train": {
            "steps": result.steps,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "teacher": args.teacher,
            "wall_time_s": round(result.wall_time_s, 1),
            "final_loss": result.final_loss,
        },
        "parameter_budget": budget,
        "depth_x_width": table,
        "strategies": strategies,
        "eval_time_s": {"depth_x_width": round(table_time, 1), "strategies": round(strategy_time, 1)},
        "host": host_facts("cpus", "threads", "torch", "python"),
    }
    write_json(args.out / "results.json", report)
    print(f"wrote {args.out / 'results.json'}")


if __name__ == "__main__":
    main()
