"""LeTs vs LDR vs TLEG initialisation at equal Des-Net size, and LeTs' row-selection strategies after fine-tuning.

Three learngenes of Fashion-MNIST (batch 128, lr 2e-3, AdamW, cosine, seed 0), by default the shipped two:

- LDR: Chebyshev, 4 learngenes, ICT stages 1,2,4, D=96, depth 6 (``train/recipes/ldr-fashion-mnist.sh``, the
  shipped ``ldr-fashion-mnist``: 2 epochs per stage, CE + KL against the recipe teacher);
- LeTs: learngene 4 x 48 grown to an Aux-Net 8 x 96 (``train/recipes/lets-fashion-mnist.sh``, the shipped
  ``lets-fashion-mnist``: DeiT soft KD from the same teacher);
- TLEG: LDR's linear basis {1, x} with 2 learngenes trained together, D=96, depth 6: ``--tleg FILE`` (e.g. from
  ``train/recipes/tleg-fashion-mnist.sh``, distilled like LDR with its budget), else trained here for 3 epochs
  with plain CE.

Each is recomposed into the same Des-Nets (depth 4, 6 and 8 at width 96: identical timm architectures) and evaluated
directly and after 1 epoch of fine-tuning with the recipe of ``learngene_vs_scratch.py`` (lr 1e-3, batch 128); the
same architecture trained from scratch for 1 epoch is the reference. Then every LeTs selection strategy at the
intermediate widths (64, 80) at depth 6: direct, and after 1 epoch of fine-tuning at width 64.

    python -m benchmarks.init_comparison           # shipped LDR and LeTs, TLEG trained here (about 6 min)
    python -m benchmarks.init_comparison --quick   # all three trained here for 200 steps on 5k images

Prints the tables and writes JSON (``--out``).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks._common import RESULTS, command_line, host_facts, write_json
from learngene_deploy.data import load_data
from learngene_deploy.learngene.io import load_learngene, read_metadata
from learngene_deploy.learngene.lets import STRATEGIES
from learngene_deploy.models.vit import build_vit
from learngene_deploy.shipped import resolve_learngene
from learngene_deploy.sizing.cost import count_params
from learngene_deploy.training.loop import TrainConfig, evaluate, train

COMMON = ["--data", "fashion-mnist", "--img-size", "28", "--patch-size", "7", "--batch-size", "128", "--lr", "2e-3"]
LDR_ARCH = ["--embed-dim", "96", "--depth", "6", "--num-heads", "6", "--layout", "avg"]
RECIPES = {
    "ldr": ["ldr", *LDR_ARCH, "--genes", "4", "--stages", "1,2,4", "--basis", "chebyshev", "--epochs", "1"],
    "tleg": ["ldr", *LDR_ARCH, "--genes", "2", "--sct", "--basis", "linear", "--epochs", "3"],
    "lets": [
        *("lets", "--head-dim", "16", "--learngene-depth", "4", "--learngene-dim", "48"),
        *("--aux-depth", "8", "--aux-dim", "96", "--epochs", "3"),
    ],
}


def train_learngene_cli(name: str, work: Path, quick: bool, seed: int) -> tuple[Path, float]:
    """Train one learngene with ``lgdeploy train`` (the user-facing command) and return its file and wall time."""
    out = work / name
    cmd = [sys.executable, "-m", "learngene_deploy", "train", *RECIPES[name], *COMMON, "--seed", str(seed)]
    cmd += ["--out", str(out), "--no-progress"]
    if quick:  # 200 steps per stage budget split so every method gets 200 steps in total
        stages = 3 if name == "ldr" else 1
        cmd += ["--train-limit", "5000", "--val-limit", "2000", "--max-steps", str(200 // stages)]
    print(f"training {name}: {' '.join(cmd[2:])}", flush=True)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return out / "learngene.safetensors", time.perf_counter() - start


def size_for(method: str, meta: dict[str, Any], depth: int, width: int, strategy: str | None = None) -> dict[str, Any]:
    if method == "lets":
        size: dict[str, Any] = {"depth": depth, "width": width}
        if strategy:
            size["strategy"] = strategy
        return size
    return {"depth": depth, "genes": meta["generator"]["genes"]}


def finetuned(model: torch.nn.Module, data, cfg: TrainConfig) -> float:  # type: ignore[no-untyped-def]
    train(model, data, cfg)
    return evaluate(model, data.val)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="train all three for 200 steps on 5k/2k images")
    parser.add_argument("--ldr", default=None, help="LDR learngene (default: shipped; --quick: trained here)")
    parser.add_argument("--lets", default=None, help="LeTs learngene (default: shipped; --quick: trained here)")
    parser.add_argument("--tleg", default=None, help="TLEG learngene (default: trained here)")
    parser.add_argument("--depths", default="4,6,8")
    parser.add_argument("--width", type=int, default=96)
    parser.add_argument("--lr", type=float, default=1e-3, help="fine-tune and scratch learning rate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=Path("runs/bench-init-comparison"))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    files: dict[str, Path] = {}
    train_s: dict[str, float] = {}
    for name in ("ldr", "tleg", "lets"):
        given = getattr(args, name)
        if given:
            files[name] = resolve_learngene(given)
        elif not args.quick and name != "tleg":
            files[name] = resolve_learngene(f"{name}-fashion-mnist")
        else:
            files[name], train_s[name] = train_learngene_cli(name, args.work, args.quick, args.seed)
    metas = {name: read_metadata(path) for name, path in files.items()}
    gens = {name: load_learngene(path) for name, path in files.items()}
    limits = {"train_limit": 5000, "val_limit": 2000} if args.quick else {}
    data = load_data("fashion-mnist", img_size=28, seed=args.seed, **limits)
    cfg = TrainConfig(epochs=1.0, batch_size=128, lr=args.lr, seed=args.seed, progress=False)
    depths = [int(d) for d in args.depths.split(",")]

    rows = []
    for depth in depths:
        row: dict[str, Any] = {"depth": depth, "width": args.width}
        arch = None
        for name, gen in gens.items():
            size = size_for(metas[name]["method"], metas[name], depth, args.width)
            arch_n, _ = gen.generate(**size)
            if arch is not None and arch_n != arch:
                sys.exit(f"{name} recomposes {arch_n} at depth {depth}, not the common architecture {arch}.")
            arch = arch_n
            torch.manual_seed(args.seed)
            model = gen.recompose(**size)
            row[f"{name}_0ep"] = evaluate(model, data.val)
            row[f"{name}_1ep"] = finetuned(model, data, cfg)
        assert arch is not None
        row["params"] = count_params(arch).total
        torch.manual_seed(args.seed)
        row["scratch_1ep"] = finetuned(build_vit(arch), data, cfg)
        rows.append(row)
        print(
            f"depth {depth}: "
            + ", ".join(f"{n} {100 * row[f'{n}_0ep']:.2f}/{100 * row[f'{n}_1ep']:.2f}" for n in gens)
            + f", scratch 1ep {100 * row['scratch_1ep']:.2f}",
            flush=True,
        )

    lets, lets_meta = gens["lets"], metas["lets"]
    widths = lets_meta["sizes"]["width"][1:-1]
    strat_depth = 6
    strategies = []
    for width in widths:
        for strategy in STRATEGIES:
            size = size_for("lets", lets_meta, strat_depth, width, strategy)
            model = lets.recompose(**size)
            entry = {"depth": strat_depth, "width": width, "strategy": strategy, "top1_0ep": evaluate(model, data.val)}
            if width == widths[0]:
                torch.manual_seed(args.seed)
                entry["top1_1ep"] = finetuned(model, data, cfg)
            strategies.append(entry)
            print(f"LeTs {strat_depth}x{width} {strategy}: {entry}", flush=True)

    names = list(gens)
    print(f"\ntop-1 % on {len(data.val)} Fashion-MNIST test images: direct / after 1 epoch of fine-tuning")
    print(f"{'Des-Net':>9} {'params':>8} " + " ".join(f"{n:>15}" for n in names) + f" {'scratch 1ep':>12}")
    for r in rows:
        cells = " ".join(f"{100 * r[f'{n}_0ep']:6.2f} / {100 * r[f'{n}_1ep']:6.2f}" for n in names)
        print(f"{r['depth']:>4} x {r['width']:<3} {r['params']:>8,} {cells} {100 * r['scratch_1ep']:12.2f}")
    print(f"\nLeTs selection strategies at depth {strat_depth}: direct top-1 % (after 1 epoch at width {widths[0]})")
    print(f"{'strategy':>10} " + " ".join(f"{'w=' + str(w):>16}" for w in widths))
    for strategy in STRATEGIES:
        cells = []
        for w in widths:
            e = next(s for s in strategies if s["width"] == w and s["strategy"] == strategy)
            tuned = f" ({100 * e['top1_1ep']:.2f})" if "top1_1ep" in e else ""
            cells.append(f"{100 * e['top1_0ep']:.2f}{tuned}".rjust(16))
        print(f"{strategy:>10} " + " ".join(cells))

    report = {
        "benchmark": "init_comparison",
        "command": command_line(),
        "quick": args.quick,
        "learngenes": {
            n: {
                "file": files[n].name,
                "method": metas[n]["method"],
                "generator": metas[n]["generator"],
                "steps": metas[n]["training"]["steps"],
                "train_images": metas[n]["training"]["data"]["train_size"],
                "stored_params": sum(p.numel() for p in gens[n].parameters()),
                "trained_here_s": round(train_s[n], 1) if n in train_s else None,
                "wall_time_s": metas[n]["training"].get("wall_time_s"),
                "teacher": {
                    k: (metas[n]["training"].get("teacher_info") or {}).get(k) for k in ("model", "top1", "params")
                },
            }
            for n in names
        },
        "finetune": {"epochs": 1, "batch_size": cfg.batch_size, "lr": cfg.lr, "schedule": "cosine, 5% warm-up"},
        "data": data.info,
        "rows": rows,
        "strategies": strategies,
        "wall_time_s": round(time.perf_counter() - started, 1),
        "host": host_facts("machine", "threads", "torch"),
    }
    out = args.out or RESULTS / f"init_comparison{'_quick' if args.quick else ''}.json"
    write_json(out, report)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
