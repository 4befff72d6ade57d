"""lgdeploy's training loop against a minimal reference loop on ``timm.data.create_loader``: images/s, deit recipe.

Same model (a ViT-Ti: 12 x 192, patch 16, 224 px), same batch, DataLoader workers, torch threads, augmentation
(RandomResizedCrop 0.08-1, flip, RandAugment m9-mstd0.5-inc1, random erasing 0.25, Mixup 0.8 / CutMix 1.0 with label
smoothing 0.1), AdamW and gradient clipping; drop-path 0.1 in both. Each loop runs in a fresh process; the rounds
alternate which goes first and the best round of each counts. Throughput is measured between the forward passes of
step ``--warmup`` and the last step (the model's forward pre-hook stamps the time), so worker start-up is excluded
for both. Target (issue 17): lgdeploy >= 0.9x the reference.

    python -m benchmarks.loader_vs_timm                      # 2,000 JPEGs, 3 rounds, about 10 minutes on 2 cores
    python -m benchmarks.loader_vs_timm --images 64 --steps 4 --warmup 1 --img-size 64 --batch-size 8 --rounds 1
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks._common import RESULTS, command_line, host_facts, loadavg, temp_workdir, write_json
from benchmarks.data_scale import _jpegs, make_folder

DEIT = {
    "scale": (0.08, 1.0),
    "hflip": 0.5,
    "auto_augment": "rand-m9-mstd0.5-inc1",
    "re_prob": 0.25,
    "mixup": 0.8,
    "cutmix": 1.0,
    "label_smoothing": 0.1,
    "drop_path": 0.1,
}


def _model(img_size: int, num_classes: int) -> Any:
    from learngene_deploy.models.vit import ArchSpec, build_vit

    arch = ArchSpec(
        img_size=img_size, patch_size=16, in_chans=3, num_classes=num_classes, embed_dim=192, depth=12, num_heads=3
    )
    return build_vit(arch)


def _stamps(model: Any) -> list[float]:
    stamps: list[float] = []
    model.register_forward_pre_hook(lambda *_: stamps.append(time.perf_counter()))
    return stamps


def run_lgdeploy(args: argparse.Namespace) -> list[float]:
    import torch

    from learngene_deploy.data import load_data
    from learngene_deploy.training.loop import TrainConfig, train

    torch.manual_seed(0)
    data = load_data(args.root, img_size=args.img_size)
    model = _model(args.img_size, data.num_classes)
    stamps = _stamps(model)
    cfg = TrainConfig(
        max_steps=args.steps, batch_size=args.batch_size, workers=args.workers, recipe="deit", progress=False
    )
    train(model, data, cfg)
    return stamps


def run_reference(args: argparse.Namespace) -> list[float]:
    """The loop an engineer writes directly on timm.data: create_loader, Mixup, SoftTargetCrossEntropy, AdamW."""
    import torch
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, ImageDataset, Mixup, create_loader
    from timm.loss import SoftTargetCrossEntropy

    from learngene_deploy.data.presets import _posterize_keeps_zero_bits
    from learngene_deploy.training.regularize import set_drop_path

    torch.manual_seed(0)
    dataset = ImageDataset(str(Path(args.root) / "train"))
    num_classes = len({label for _, label in dataset.reader.samples})
    loader = create_loader(
        dataset,
        input_size=(3, args.img_size, args.img_size),
        batch_size=args.batch_size,
        is_training=True,
        use_prefetcher=False,
        scale=DEIT["scale"],
        hflip=DEIT["hflip"],
        auto_augment=DEIT["auto_augment"],
        re_prob=DEIT["re_prob"],
        re_mode="pixel",
        interpolation="bicubic",
        mean=IMAGENET_DEFAULT_MEAN,
        std=IMAGENET_DEFAULT_STD,
        num_workers=args.workers,
        persistent_workers=args.workers > 0,
        pin_memory=False,
    )
    # timm's RandAugment asks Pillow >= 13 for a 0-bit posterize about once per 1,000 images, which raises; the
    # reference gets the same one-op adapter lgdeploy uses, or it could not finish a run
    _posterize_keeps_zero_bits(dataset.transform)
    mixup = Mixup(
        mixup_alpha=DEIT["mixup"],
        cutmix_alpha=DEIT["cutmix"],
        label_smoothing=DEIT["label_smoothing"],
        num_classes=num_classes,
    )
    model = _model(args.img_size, num_classes)
    set_drop_path(model, DEIT["drop_path"])
    stamps = _stamps(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=8e-4, weight_decay=0.05)
    loss_fn = SoftTargetCrossEntropy()
    model.train()
    step = 0
    while step < args.steps:
        for images, labels in loader:
            images, targets = mixup(images, labels)
            loss = loss_fn(model(images), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            step += 1
            if step == args.steps:
                break
    return stamps


def _child(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    stamps = (run_lgdeploy if args.child == "lgdeploy" else run_reference)(args)
    span = stamps[-1] - stamps[args.warmup]
    steps = len(stamps) - 1 - args.warmup
    print(
        json.dumps(
            {"loop": args.child, "steps_timed": steps, "seconds": span, "images_per_s": steps * args.batch_size / span}
        )
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=14)
    parser.add_argument("--warmup", type=int, default=4, help="steps before the timed span")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the training process")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--root", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.child:
        _child(args)
        return
    if args.warmup >= args.steps - 1:
        parser.error("--warmup must leave at least two timed steps; raise --steps.")
    root = make_folder(temp_workdir("lgd-loader-") / "data", args.images, _jpegs(200, seed=0))
    keys = ("steps", "warmup", "batch_size", "img_size", "workers", "threads")
    passed = [item for k in keys for item in (f"--{k.replace('_', '-')}", str(getattr(args, k)))]
    runs: dict[str, list[dict[str, Any]]] = {"lgdeploy": [], "timm-reference": []}
    for r in range(args.rounds):
        order = ["lgdeploy", "timm-reference"] if r % 2 == 0 else ["timm-reference", "lgdeploy"]
        for loop in order:
            child = "lgdeploy" if loop == "lgdeploy" else "reference"
            argv_child = [sys.executable, "-m", "benchmarks.loader_vs_timm", *passed, "--root", str(root)]
            out = subprocess.run([*argv_child, "--child", child], capture_output=True, text=True, check=False)
            if out.returncode != 0:
                print(out.stderr[-3000:], file=sys.stderr)
                raise SystemExit(f"{loop} run exited {out.returncode}")
            runs[loop].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"round {r + 1} {loop:<15} {runs[loop][-1]['images_per_s']:.2f} images/s", flush=True)
    best = {loop: max(x["images_per_s"] for x in rs) for loop, rs in runs.items()}
    ratio = best["lgdeploy"] / best["timm-reference"]
    print(f"best: lgdeploy {best['lgdeploy']:.2f}, timm reference {best['timm-reference']:.2f} images/s: {ratio:.3f}x")
    report = {
        "benchmark": "loader_vs_timm",
        "command": command_line(),
        "arguments": {k: v for k, v in vars(args).items() if k not in ("root", "child", "out")},
        "runs": runs,
        "best_images_per_s": best,
        "ratio": round(ratio, 3),
        "loadavg_after": loadavg().split()[:3],
        "host": host_facts("cpu", "logical_cpus", "torch"),
    }
    out = args.out or RESULTS / "loader_vs_timm.json"
    write_json(out, report)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
