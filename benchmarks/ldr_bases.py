"""LDR coefficient bases on Fashion-MNIST: Chebyshev vs Fourier vs Taylor vs Legendre (the paper's Table 1).

For each basis one LDR learngene is trained with all learngenes at once (SCT, as the paper's Table 1 does) under
identical settings: same seed (so the same initial learngene 1 and shared parameters), same data order, steps, lr,
batch and architecture (28 px, patch 7, a 6-layer 96-wide ViT with 6 heads, avg-pool layout, 6 learngenes), plain
cross-entropy, no teacher. Only the fixed coefficients a(l, n) differ. Each learngene is then recomposed at every
depth 1..6 x learngenes k in (1, 2, 3, 6) and evaluated directly (no fine-tuning) on the 10k test split. Reported
per basis: (a) top-1 of the full-size net (depth 6, all learngenes), the paper's comparison; (b) the mean top-1 over
all recomposed sizes; (c) depth-6 top-1 for each k; and the measured ranking against the paper's (ImageNet-1K,
DeiT-B-sized ViT, 12 learngenes, 100 epochs: Chebyshev 77.73 > Fourier 77.09 > Taylor 74.80 > Legendre 73.13).

    python -m benchmarks.ldr_bases            # full: 60k train / 10k test images, 2 epochs per basis
    python -m benchmarks.ldr_bases --quick    # smoke run: 5k train / 2k test images, 1 epoch (7 CPU-minutes)
    python -m benchmarks.ldr_bases --bases chebyshev,fourier --genes 4 --eval-genes 1,2,4

Needs the Debian package ``dataset-fashion-mnist`` (or ``--data DIR`` holding the four IDX files). Learngene files
and checkpoints go under ``--work`` (default ``runs/bench-ldr-bases``); the JSON report goes to
``benchmarks/results/ldr_bases.json`` (``ldr_bases_quick.json`` with ``--quick``; ``--out`` overrides).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from itertools import combinations
from pathlib import Path
from typing import Any

import torch

from benchmarks._common import arguments, command_line, host_facts, print_depth_grid, write_json
from learngene_deploy.data import load_data
from learngene_deploy.learngene.io import read_metadata
from learngene_deploy.learngene.ldr import BASES, POSITIONS, LDRGenerator, default_offset, ict_phases
from learngene_deploy.models.vit import ArchSpec
from learngene_deploy.training.loop import TrainConfig, current_dist
from learngene_deploy.training.recipes import train_learngene

# LDR paper, Table 1: ImageNet-1K top-1, DeiT-B-sized ViT, 12 learngenes trained simultaneously for 100 epochs.
PAPER_TOP1 = {"chebyshev": 77.73, "fourier": 77.09, "taylor": 74.80, "legendre": 73.13}
PAPER_SETTING = "ImageNet-1K, ViT-B (12 layers), 12 learngenes, SCT 100 epochs"


def run_basis(args: argparse.Namespace, data, basis: str, eval_genes: list[int]) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Train one basis with SCT, recompose every size and return its timings, loss and accuracy table."""
    torch.manual_seed(args.seed)  # identical initial learngene 1 and shared parameters for every basis
    arch = ArchSpec(
        img_size=28,
        patch_size=args.patch_size,
        in_chans=data.in_chans,
        num_classes=data.num_classes,
        embed_dim=args.embed_dim,
        depth=args.depth,
        num_heads=args.num_heads,
        layout=args.layout,
    )
    gen = LDRGenerator(arch, args.genes, basis=basis, offset=args.offset, position=args.position)
    phases = ict_phases(gen, [args.genes], label=f"{basis} sct")
    out = args.work / basis
    cfg = TrainConfig(
        out=out,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        progress=sys.stdout.isatty(),
    )
    sizes = [{"depth": d, "genes": k} for d in range(1, args.depth + 1) for k in eval_genes]
    load_before = os.getloadavg()[0]
    start, cpu_start = time.perf_counter(), time.process_time()
    result = train_learngene(
        gen,
        data,
        cfg,
        out_file=out / "learngene.safetensors",
        phases=phases,
        sizes=sizes,
        env=current_dist(args.device),
    )
    total_s, cpu_s = time.perf_counter() - start, time.process_time() - cpu_start
    meta = read_metadata(out / "learngene.safetensors")
    rows = meta["accuracy"]
    top1 = {(r["depth"], r["genes"]): r["top1"] for r in rows}
    every = max(1, len(result.history) // 20)
    windows = [result.history[i : i + every] for i in range(0, len(result.history), every)]
    curve = [[w[-1][0], round(sum(loss for _, loss in w) / len(w), 4)] for w in windows]  # [last step, mean loss]
    return {
        "basis": basis,
        "offset": gen.offset,
        "default_offset": default_offset(gen.basis),
        "position": gen.position,
        "coefficients": [[round(c, 5) for c in row] for row in gen.coefficients(args.depth, args.genes).tolist()],
        "steps": result.steps,
        "train_s": round(result.wall_time_s, 1),
        "eval_s": round(total_s - result.wall_time_s, 1),
        "cpu_s": round(cpu_s, 1),  # CPU time of this process (all threads), train + eval: less sensitive to load
        "final_loss": round(result.final_loss, 4),
        "loss_curve": curve,
        "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]},
        "full_top1": top1[args.depth, args.genes],
        "mean_top1": sum(r["top1"] for r in rows) / len(rows),
        "depth_full_top1": {str(k): top1[args.depth, k] for k in eval_genes},
        "accuracy": rows,
    }


def ranking(scores: dict[str, float]) -> list[str]:
    return sorted(scores, key=lambda b: -scores[b])


def kendall_tau(order_a: list[str], order_b: list[str]) -> float | None:
    """Kendall's tau between two orderings of the same items (1 = same order, -1 = reversed); None below 2 items."""
    pos_b = {b: i for i, b in enumerate(order_b)}
    pairs = list(combinations(order_a, 2))  # each pair (x, y) has x ranked above y in order_a
    if not pairs:
        return None
    concordant = sum(1 if pos_b[x] < pos_b[y] else -1 for x, y in pairs)
    return concordant / len(pairs)


def print_tables(results: dict[str, dict[str, Any]], eval_genes: list[int], depth: int, genes: int) -> None:
    print(f"\nDirect top-1 % on the test split (no fine-tuning); paper column: {PAPER_SETTING} (for reference only)")
    head = f"{'basis':>10} {'offset':>6} {'steps':>6} {'train s':>8} {'loss':>7} {'full':>7} {'mean':>7}"
    print(head + f" {'paper':>7}")
    print(f"{'':>10} {'':>6} {'':>6} {'':>8} {'':>7} {f'L{depth} k{genes}':>7} {'all':>7} {'(IN-1K)':>7}")
    for basis, r in results.items():
        paper = f"{PAPER_TOP1[basis]:7.2f}" if basis in PAPER_TOP1 else f"{'-':>7}"
        print(
            f"{basis:>10} {r['offset']:>6} {r['steps']:>6} {r['train_s']:>8.1f} {r['final_loss']:>7.4f}"
            f" {100 * r['full_top1']:7.2f} {100 * r['mean_top1']:7.2f} {paper}"
        )
    print(f"\nDepth-{depth} top-1 % by number of learngenes k")
    print(f"{'basis':>10} " + "".join(f"{'k=' + str(k):>8}" for k in eval_genes))
    for basis, r in results.items():
        print(f"{basis:>10} " + "".join(f"{100 * r['depth_full_top1'][str(k)]:8.2f}" for k in eval_genes))
    for basis, r in results.items():
        print_depth_grid(f"\n{basis}: top-1 %, rows depth, columns k", r["accuracy"], eval_genes, depth)


def compare_rankings(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    paper = ranking({b: PAPER_TOP1[b] for b in results if b in PAPER_TOP1})
    out: dict[str, Any] = {"paper": paper, "paper_setting": PAPER_SETTING}
    print(f"\nRanking (paper, {PAPER_SETTING}): {' > '.join(paper)}")
    for key, label in (("full_top1", "full-size net"), ("mean_top1", "mean over sizes")):
        measured = ranking({b: r[key] for b, r in results.items()})
        common = [b for b in measured if b in paper]
        tau = kendall_tau(common, paper)
        out[key] = {"measured": measured, "matches_paper": common == paper, "kendall_tau": tau}
        note = "same as the paper" if common == paper else f"Kendall tau vs paper {tau:+.2f}" if tau is not None else ""
        print(f"Ranking (measured, {label}): {' > '.join(measured)}  [{note}]")
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="fashion-mnist", help="fashion-mnist or a directory of the four IDX files")
    parser.add_argument("--quick", action="store_true", help="5k train / 2k test images, 1 epoch")
    parser.add_argument("--bases", default="chebyshev,fourier,taylor,legendre", help=f"comma list of {BASES}")
    parser.add_argument("--depth", type=int, default=6, help="training depth L; recomposed at depths 1..L")
    parser.add_argument("--genes", type=int, default=6, help="learngenes N, all trained simultaneously")
    parser.add_argument("--eval-genes", default="1,2,3,6", help="learngene counts k evaluated (those <= N, plus N)")
    parser.add_argument("--embed-dim", type=int, default=96)
    parser.add_argument("--num-heads", type=int, default=6)
    parser.add_argument("--patch-size", type=int, default=7)
    parser.add_argument("--layout", choices=("avg", "cls"), default="avg")
    parser.add_argument("--position", choices=POSITIONS, default="paper", help="layer position x_l (paper: (l-1)/L)")
    parser.add_argument("--offset", type=int, choices=(0, 1), default=None, help="learngene n uses φ_(n-1+offset)")
    parser.add_argument("--epochs", type=float, default=None, help="epochs per basis (default 2; 1 with --quick)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-limit", type=int, default=None, help="use a seeded subset of the 60k train images")
    parser.add_argument("--val-limit", type=int, default=None, help="use a seeded subset of the 10k test images")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    parser.add_argument("--work", type=Path, default=Path("runs/bench-ldr-bases"), help="learngene files, checkpoints")
    parser.add_argument("--out", type=Path, default=None, help="JSON report (default benchmarks/results/...)")
    args = parser.parse_args(argv)
    if args.quick:
        args.train_limit = args.train_limit or 5000
        args.val_limit = args.val_limit or 2000
    args.epochs = args.epochs or (1.0 if args.quick else 2.0)
    bases = [b.strip() for b in args.bases.split(",") if b.strip()]
    if unknown := [b for b in bases if b not in BASES]:
        parser.error(f"unknown basis {', '.join(unknown)}; valid choices are {', '.join(BASES)}")
    if "linear" in bases and args.genes > 2:
        parser.error("the linear (TLEG) basis has two functions; use --genes 2 or leave it out of --bases")
    requested = {int(c) for c in args.eval_genes.split(",") if c.strip()}
    eval_genes = sorted({k for k in requested if 1 <= k <= args.genes} | {args.genes})
    if args.threads:
        torch.set_num_threads(args.threads)
    name = "ldr_bases_quick.json" if args.quick else "ldr_bases.json"
    out = args.out or Path(__file__).resolve().parent / "results" / name

    started = time.perf_counter()
    data = load_data(args.data, img_size=28, seed=args.seed, train_limit=args.train_limit, val_limit=args.val_limit)
    print(
        f"{len(bases)} bases x SCT of {args.genes} learngenes, depth {args.depth}, {args.embed_dim} wide: "
        f"{len(data.train)} train / {len(data.val)} test images, {args.epochs:g} epoch(s), batch {args.batch_size}, "
        f"lr {args.lr}, seed {args.seed}, {torch.get_num_threads()} threads",
        flush=True,
    )
    results: dict[str, dict[str, Any]] = {}
    for basis in bases:
        results[basis] = run_basis(args, data, basis, eval_genes)
        r = results[basis]
        print(
            f"{basis}: offset {r['offset']}, {r['steps']} steps in {r['train_s']} s (+{r['eval_s']} s eval, "
            f"{r['cpu_s']} CPU s), "
            f"loss {r['final_loss']:.4f}, full {100 * r['full_top1']:.2f}%, mean {100 * r['mean_top1']:.2f}%",
            flush=True,
        )
    print_tables(results, eval_genes, args.depth, args.genes)
    rankings = compare_rankings(results)
    wall = time.perf_counter() - started
    report = {
        "benchmark": "ldr_bases",
        "mode": "quick" if args.quick else "full",
        "command": command_line(),
        "args": arguments(args),
        "eval_genes": eval_genes,
        "training": "SCT (all learngenes at once), plain cross-entropy, no teacher, AdamW, 5% warm-up + cosine",
        "data": data.info,
        "paper_top1": {"setting": PAPER_SETTING, **PAPER_TOP1},
        "results": results,
        "rankings": rankings,
        "wall_time_s": round(wall, 1),
        "cpu_time_s": round(time.process_time(), 1),
        "host": host_facts(
            "machine",
            "cpus",
            "threads",
            "torch",
            "python",
            device=current_dist(args.device).device.type,
            load_average_end=list(os.getloadavg()),
        ),
    }
    write_json(out, report)
    print(f"\nwrote {out} ({wall:.0f} s)")


if __name__ == "__main__":
    main()
