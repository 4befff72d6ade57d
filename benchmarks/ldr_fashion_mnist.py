"""LDR on Fashion-MNIST: accuracy of recomposed nets over depth × learngenes, and ICT vs SCT at equal compute.

Both runs train the same small ViT (plain CE, no teacher) for the same number of optimiser steps: ICT spends
``--epochs`` per stage over the cumulative stages, SCT trains all learngenes at once for the same total. Then every
(depth 1..D, k in stages) net is recomposed and evaluated directly (no fine-tuning) on the 10k test split.

    python -m benchmarks.ldr_fashion_mnist            # full: 60k train images
    python -m benchmarks.ldr_fashion_mnist --quick    # smoke run: 5k train / 2k val images, depth 4
    python -m benchmarks.ldr_fashion_mnist --train-limit 20000 --val-limit 5000   # medium run

Needs the Debian package ``dataset-fashion-mnist`` (or ``--data DIR`` holding the four IDX files).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from benchmarks._common import arguments, host_facts, print_depth_grid, write_json
from learngene_deploy.data import load_data
from learngene_deploy.learngene.io import read_metadata
from learngene_deploy.learngene.ldr import LDRGenerator, ict_phases
from learngene_deploy.models.vit import ArchSpec
from learngene_deploy.training.loop import TrainConfig
from learngene_deploy.training.recipes import train_learngene


def run(args: argparse.Namespace, data, mode: str, counts: list[int]) -> dict:  # type: ignore[no-untyped-def]
    torch.manual_seed(args.seed)
    arch = ArchSpec(
        img_size=28,
        patch_size=args.patch_size,
        in_chans=3,
        num_classes=data.num_classes,
        embed_dim=args.embed_dim,
        depth=args.depth,
        num_heads=args.embed_dim // 32,
        layout="cls",
    )
    gen = LDRGenerator(arch, counts[-1], basis=args.basis)
    if mode == "ict":
        phases = ict_phases(gen, counts, label="ict")
        epochs = args.epochs
    else:
        phases = ict_phases(gen, counts[-1:], label="sct")
        epochs = args.epochs * len(counts)  # equal compute: same number of steps as all ICT stages together
    out = args.out / mode
    cfg = TrainConfig(out=out, epochs=epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed, progress=True)
    sizes = [{"depth": d, "genes": k} for d in range(1, args.depth + 1) for k in counts]
    start = time.perf_counter()
    result = train_learngene(gen, data, cfg, out_file=out / "learngene.safetensors", phases=phases, sizes=sizes)
    meta = read_metadata(out / "learngene.safetensors")
    return {
        "mode": mode,
        "steps": result.steps,
        "train_s": round(result.wall_time_s, 1),
        "total_s": round(time.perf_counter() - start, 1),
        "final_loss": round(result.final_loss, 4),
        "accuracy": meta["accuracy"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-ldr-fmnist"))
    parser.add_argument("--quick", action="store_true", help="5k train / 2k val images, depth 4, stages 1,2,4")
    parser.add_argument("--depth", type=int, default=6)
    parser.add_argument("--stages", default="1,2,4,6")
    parser.add_argument("--embed-dim", type=int, default=64)
    parser.add_argument("--patch-size", type=int, default=7)
    parser.add_argument("--basis", default="chebyshev")
    parser.add_argument("--epochs", type=float, default=1.0, help="epochs per ICT stage")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-limit", type=int, default=None, help="use a seeded subset of the 60k train images")
    parser.add_argument("--val-limit", type=int, default=None, help="use a seeded subset of the 10k test images")
    args = parser.parse_args()
    if args.quick:
        args.depth, args.stages, args.train_limit, args.val_limit = 4, "1,2,4", 5000, 2000
    counts = [int(c) for c in args.stages.split(",")]
    data = load_data(args.data, img_size=28, seed=args.seed, train_limit=args.train_limit, val_limit=args.val_limit)
    results = {mode: run(args, data, mode, counts) for mode in ("ict", "sct")}
    for mode, res in results.items():
        head = f"{mode.upper()} ({res['steps']} steps, {res['train_s']} s)"
        title = f"\n{head}: direct top-1 %, rows depth, columns learngenes k"
        print_depth_grid(title, res["accuracy"], counts, args.depth)
    ict = {(r["depth"], r["genes"]): r["top1"] for r in results["ict"]["accuracy"]}
    sct = {(r["depth"], r["genes"]): r["top1"] for r in results["sct"]["accuracy"]}
    print("\nICT - SCT (points), rows depth, columns k")
    for d in range(1, args.depth + 1):
        print(f"{d:>5} " + "".join(f"{100 * (ict[d, k] - sct[d, k]):+8.2f}" for k in counts))
    report = {
        "benchmark": "ldr_fashion_mnist",
        "args": arguments(args),
        "data": data.info,
        "host": host_facts("machine", "threads", "torch"),
        "results": results,
    }
    write_json(args.out / "results.json", report)
    print(f"\nwrote {args.out / 'results.json'}")


if __name__ == "__main__":
    main()
