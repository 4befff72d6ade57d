"""Learngene initialisation vs training from scratch, per Des-Net size, and what a family of sizes costs.

For every size: the Des-Net recomposed from the learngene is evaluated directly (0 epochs) and after 1 epoch of
fine-tuning; the same architecture with timm's default initialisation is trained from scratch with a 1-epoch
schedule and with a 10-epoch schedule (evaluated after every epoch). All runs share one recipe (AdamW, cosine
with 5% warm-up, the same lr, batch, seed and data order), so the only difference is the initialisation.

Then the cost of producing models for all the sizes (issue #8, item 5): training compute in FLOPs
(3 x forward FLOPs per training image: forward + backward) for "learngene once + one short fine-tune per size"
against "one scratch training per size until it reaches the fine-tuned model's accuracy", and the parameters stored.

    python -m benchmarks.learngene_vs_scratch                     # Fashion-MNIST, 6 sizes, 60k/10k images
    python -m benchmarks.learngene_vs_scratch --data digits       # transfer: Fashion-MNIST learngene -> digits
    python -m benchmarks.learngene_vs_scratch --quick             # 5k/2k images, 3 sizes (minutes on 2 cores)

On a dataset other than the learngene's, the classifier head is re-initialised for both arms (transfer). Prints the
tables and writes JSON (``--out``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from benchmarks._common import RESULTS, command_line, host_facts, write_json
from learngene_deploy.data import load_data
from learngene_deploy.data.presets import get_preset
from learngene_deploy.learngene.io import load_learngene, read_metadata
from learngene_deploy.models.vit import ArchSpec, build_vit
from learngene_deploy.shipped import resolve_learngene
from learngene_deploy.sizing.cost import count_params, flops
from learngene_deploy.training.loop import TrainConfig, evaluate, train

FULL_SIZES = "2x48,4x48,4x64,6x64,6x80,8x96"
QUICK_SIZES = "2x48,4x64,8x96"


def parse_sizes(text: str, method: str) -> list[dict[str, int]]:
    second = "width" if method == "lets" else "genes"
    sizes = []
    for item in text.split(","):
        depth, other = item.lower().split("x")
        sizes.append({"depth": int(depth), second: int(other)})
    return sizes


def _is_top1(key: str) -> bool:
    return key.startswith(("learngene_", "scratch_")) and key.endswith("ep")


def label(size: dict[str, int]) -> str:
    return "x".join(str(v) for v in size.values())


def train_flops(arch: ArchSpec) -> float:
    """Training FLOPs per image: forward plus backward (about twice the forward)."""
    return 3 * flops(arch)[0]


def learngene_arm(gen, size, data, cfg: TrainConfig, transfer: bool) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """The Des-Net recomposed from the learngene: evaluated directly, then after 1 epoch of fine-tuning (``cfg``: the
    fine-tune's recipe, whose lr may differ from the scratch arm's)."""
    torch.manual_seed(cfg.seed)
    model = gen.recompose(**size)
    if transfer or model.num_classes != data.num_classes:
        model.reset_classifier(data.num_classes)  # a fresh head; the learngene's head belongs to its own dataset
    row: dict[str, Any] = {"learngene_0ep": evaluate(model, data.val)}
    start = time.perf_counter()
    res = train(model, data, replace(cfg, epochs=1.0, out=None))
    row["learngene_1ep"] = evaluate(model, data.val)
    row["learngene_1ep_s"] = round(time.perf_counter() - start, 1)
    row["steps_per_epoch"] = res.steps
    return row


def scratch_arm(arch: ArchSpec, data, cfg: TrainConfig, epochs: int, work: Path, name: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """The same architecture from timm's initialisation: a 1-epoch schedule, and an N-epoch one read every epoch."""
    row: dict[str, Any] = {}
    torch.manual_seed(cfg.seed)
    model = build_vit(arch)
    start = time.perf_counter()
    res = train(model, data, replace(cfg, epochs=1.0, out=None))
    row["scratch_1ep"] = evaluate(model, data.val)
    row["scratch_1ep_s"] = round(time.perf_counter() - start, 1)
    # the long schedule, evaluated after every epoch (stop, evaluate, resume from the checkpoint)
    torch.manual_seed(cfg.seed)
    model = build_vit(arch)
    out = work / f"scratch-{name}"
    curve = []
    start = time.perf_counter()
    for e in range(1, epochs + 1):
        long_cfg = replace(cfg, epochs=float(epochs), out=out, stop_after=e * res.steps, resume=e > 1)
        train(model, data, long_cfg)
        curve.append(evaluate(model, data.val))
        print(f"  {name} scratch epoch {e}/{epochs}: top-1 {100 * curve[-1]:.2f}%", flush=True)
    row["scratch_curve"] = curve
    row[f"scratch_{epochs}ep"] = curve[-1]
    row[f"scratch_{epochs}ep_s"] = round(time.perf_counter() - start, 1)
    return row


SCRATCH_KEYS = ("scratch_1ep", "scratch_1ep_s", "scratch_curve")


def earlier_scratch(path: Path | None, setting: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Scratch rows of an earlier run of this script, by architecture, when it measured exactly this setting.

    The scratch arm does not depend on the learngene (only on the architecture, data and recipe), so a run with a
    new learngene can reuse it; anything that differs (data, split sizes, recipe, epochs, lr, batch, seed) is refused.
    """
    if path is None:
        return {}
    import json

    earlier = json.loads(Path(path).read_text())
    theirs = scratch_setting(earlier["data"], earlier["recipe"], earlier["epochs"])
    if theirs != setting:
        diff = {k: (theirs.get(k), v) for k, v in setting.items() if theirs.get(k) != v}
        sys.exit(f"--scratch-from {path} measured another setting (earlier, now): {diff}; run the scratch arm again.")
    return {json.dumps(r["arch"], sort_keys=True): r for r in earlier["rows"] if "scratch_curve" in r}


def scratch_setting(data_info: dict[str, Any], recipe: dict[str, Any], epochs: int) -> dict[str, Any]:
    keys = ("name", "train_size", "val_size", "fingerprint", "img_size", "holdout")
    return {**{k: data_info.get(k) for k in keys}, **recipe, "epochs": epochs}


def run_size(gen, size, data, cfg, ft_lr, epochs, transfer, work, arms, reuse) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    arch, _ = gen.generate(**size)
    if transfer or arch.num_classes != data.num_classes:
        arch = arch.replace(num_classes=data.num_classes)
    row: dict[str, Any] = {"size": size, "arch": arch.to_dict(), "params": count_params(arch).total}
    row["train_gflops_per_image"] = train_flops(arch) / 1e9
    if "learngene" in arms:
        row.update(learngene_arm(gen, size, data, replace(cfg, lr=ft_lr), transfer))
    if "scratch" in arms:
        import json

        earlier = reuse.get(json.dumps(row["arch"], sort_keys=True))
        if earlier is not None:
            row.update({k: earlier[k] for k in (*SCRATCH_KEYS, f"scratch_{epochs}ep", f"scratch_{epochs}ep_s")})
            row["scratch_reused"] = True
        else:
            row.update(scratch_arm(arch, data, cfg, epochs, work, label(size)))
    return row


def hold_out(data, n: int, seed: int):  # type: ignore[no-untyped-def]
    """``data`` with its validation split replaced by ``n`` seeded training images, which leave the training split.

    For choosing settings without the test images. The learngene itself may have trained on these images (the
    shipped ones saw the whole Fashion-MNIST training split), which favours settings that change it least.
    """
    import numpy as np

    if not 0 < n < len(data.train):
        sys.exit(f"--holdout {n}: pass a number of images between 1 and {len(data.train) - 1}.")
    order = np.random.default_rng(seed).permutation(len(data.train))
    info = {**data.info, "val_size": n, "train_size": len(data.train) - n, "holdout": {"images": n, "seed": seed}}
    train, val = data.train.subset(np.sort(order[n:])), data.train.subset(np.sort(order[:n]))
    return replace(data, train=train, val=val, info=info)


def epochs_to_reach(row: dict[str, Any], target: float) -> int | None:
    """Scratch epochs to reach ``target``: the dedicated 1-epoch run, else the first epoch of the long run."""
    if row["scratch_1ep"] >= target:
        return 1
    for e, top1 in enumerate(row["scratch_curve"], 1):
        if top1 >= target:
            return e
    return None


def cost_table(rows: list[dict[str, Any]], meta: dict[str, Any], n_train: int, epochs: int) -> dict[str, Any]:
    train_info = meta["training"]
    lg_arch = ArchSpec.from_dict(meta["arch"])
    lg_images = train_info["steps"] * train_info["recipe"]["batch_size"]
    lg_flops = lg_images * train_flops(lg_arch)
    # a distilled learngene also costs its teacher: the teacher's own training and its forward pass on every image
    # the learngene saw (its file records both when lgdeploy trained it)
    teacher = train_info.get("teacher_info") or {}
    teacher_flops = 1e12 * teacher.get("train_tflops", 0.0) + lg_images * 1e9 * teacher.get("forward_gflops", 0.0)
    if train_info.get("teacher") and not teacher:
        print("  note: the learngene's teacher records no training compute; the cost table leaves it out")
    lg_flops += teacher_flops
    per_size = []
    ft_total = scratch_total = 0.0
    lower_bound = False
    for row in rows:
        f = row["train_gflops_per_image"] * 1e9
        ft = n_train * f
        need = epochs_to_reach(row, row["learngene_1ep"])
        if need is None:
            lower_bound = True
        scratch = (need or epochs) * n_train * f
        ft_total += ft
        scratch_total += scratch
        per_size.append(
            {
                "size": label(row["size"]),
                "target_top1": row["learngene_1ep"],
                "scratch_epochs_to_target": need if need is not None else f">{epochs}",
                "finetune_tflops": ft / 1e12,
                "scratch_tflops": scratch / 1e12,
            }
        )
    return {
        "learngene_training": {
            "images": lg_images,
            "arch": meta["arch"],
            "tflops": lg_flops / 1e12,
            "of_which_teacher_tflops": teacher_flops / 1e12,
        },
        "per_size": per_size,
        "learngene_total_tflops": (lg_flops + ft_total) / 1e12,
        "scratch_total_tflops": scratch_total / 1e12,
        "scratch_is_lower_bound": lower_bound,
        "stored_params": {
            "learngene_file": meta["stored_params"],
            "separate_models": sum(r["params"] for r in rows),
        },
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--learngene", default=None, help="learngene file or shipped name (default: shipped LeTs)")
    parser.add_argument("--data", default="fashion-mnist", help="fashion-mnist, digits or a dataset directory")
    parser.add_argument("--sizes", default=None, help=f"depthxwidth (LeTs) or depthxgenes (LDR); default {FULL_SIZES}")
    parser.add_argument("--epochs", type=int, default=10, help="epochs of the long scratch schedule")
    parser.add_argument("--batch-size", type=int, default=None, help="default 128 (32 below 2k images)")
    parser.add_argument("--lr", type=float, default=1e-3, help="peak lr of the scratch arm (default 1e-3)")
    parser.add_argument(
        "--finetune-lr",
        type=float,
        default=None,
        help="peak lr of the learngene arm's 1-epoch fine-tune (default: --lr); a recomposed net starts trained, and "
        "the seeds fine-tune Des-Nets at a far lower lr than they train (LeTs: 1e-5 vs 5e-4)",
    )
    parser.add_argument(
        "--holdout",
        type=int,
        default=None,
        help="evaluate on N seeded training images held out of training instead of the validation split (to choose "
        "settings such as --finetune-lr without looking at the test images)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-limit", type=int, default=None)
    parser.add_argument("--val-limit", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help=f"5k/2k images, sizes {QUICK_SIZES}")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--recipe", default="none", help="augmentation preset of every run, both arms: none (default), light or deit"
    )
    parser.add_argument(
        "--arms", default="learngene,scratch", help="which arms to run: learngene, scratch or both (default)"
    )
    parser.add_argument(
        "--scratch-from",
        type=Path,
        default=None,
        help="reuse the scratch rows of an earlier JSON of this script that measured the same setting",
    )
    parser.add_argument("--out", type=Path, default=None, help="JSON file (default benchmarks/results/...)")
    args = parser.parse_args(argv)
    arms = {a.strip() for a in args.arms.split(",") if a.strip()}
    if not arms or not arms <= {"learngene", "scratch"}:
        sys.exit(f"--arms {args.arms!r}: pass learngene, scratch or learngene,scratch.")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.train_limit, args.val_limit = args.train_limit or 5000, args.val_limit or 2000
        args.sizes = args.sizes or QUICK_SIZES
    path = resolve_learngene(args.learngene)
    meta = read_metadata(path)
    gen = load_learngene(path)
    sizes = parse_sizes(args.sizes or FULL_SIZES, meta["method"])
    arch = gen.train_arch
    data = load_data(
        args.data, img_size=arch.img_size, seed=args.seed, train_limit=args.train_limit, val_limit=args.val_limit
    )
    if args.holdout:
        data = hold_out(data, args.holdout, args.seed)
    if data.in_chans != arch.in_chans:
        sys.exit(f"{args.data} has {data.in_chans} channels but the learngene expects {arch.in_chans}.")
    transfer = data.info["name"] != meta["training"]["data"]["name"]
    batch = args.batch_size or (32 if len(data.train) < 2_000 else 128)  # digits: 1,437 images
    cfg = TrainConfig(batch_size=batch, lr=args.lr, seed=args.seed, progress=False, recipe=args.recipe)
    ft_lr = args.finetune_lr if args.finetune_lr is not None else args.lr
    meta["stored_params"] = sum(p.numel() for p in gen.parameters())
    print(
        f"{path.name} ({meta['method']}) -> {data.info['name']}: {len(data.train)} train / {len(data.val)} val images,"
        f" batch {batch}, lr {args.lr} (learngene fine-tune {ft_lr}), recipe {args.recipe},"
        f" {'transfer (fresh head)' if transfer else 'same dataset'}",
        flush=True,
    )
    recipe_record = {
        "batch_size": batch,
        "lr": args.lr,
        "schedule": "cosine, 5% warm-up",
        "seed": args.seed,
        "augmentation": get_preset(args.recipe).to_dict(),
    }
    learngene_recipe = {**recipe_record, "lr": ft_lr, "epochs": 1}
    reuse = earlier_scratch(args.scratch_from, scratch_setting(data.info, recipe_record, args.epochs))
    rows = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lgd-bench-") as work:
        for size in sizes:
            rows.append(run_size(gen, size, data, cfg, ft_lr, args.epochs, transfer, Path(work), arms, reuse))
            r = rows[-1]
            print(f"{label(size)}: " + ", ".join(f"{k} {100 * v:.2f}" for k, v in r.items() if _is_top1(k)), flush=True)
    e = args.epochs
    report = {
        "benchmark": "learngene_vs_scratch",
        "command": command_line(),
        "learngene": {
            "file": path.name,
            "method": meta["method"],
            "data": meta["training"]["data"]["name"],
            "training_wall_time_s": meta["training"].get("wall_time_s"),
            "teacher": meta["training"].get("teacher_info"),
        },
        "data": data.info,
        "transfer": transfer,
        "recipe": recipe_record,
        "learngene_recipe": learngene_recipe,
        "epochs": e,
        "rows": rows,
        "cost": None,
        "wall_time_s": round(time.perf_counter() - started, 1),
        "host": host_facts("machine", "threads", "torch"),
    }
    recipe = f"_{args.recipe}" if args.recipe != "none" else ""
    recipe += f"_holdout{args.holdout}" if args.holdout else ""
    recipe += f"_ftlr{ft_lr:g}" if ft_lr != args.lr else ""
    arm = "" if arms == {"learngene", "scratch"} else f"_{next(iter(arms))}_only"
    name = f"learngene_vs_scratch_{data.info['name']}{'_quick' if args.quick else ''}{recipe}{arm}.json"
    out = args.out or RESULTS / name
    if arms != {"learngene", "scratch"}:
        write_json(out, report)
        print(f"wrote {out} (one arm only: no comparison tables)")
        return
    evaluated_on = "held-out training" if args.holdout else "validation"
    print(f"\ntop-1 % on {len(data.val)} {data.info['name']} {evaluated_on} images")
    head = f"{'size':>6} {'params':>8} {'lg 0ep':>7} {'lg 1ep':>7} {'scr 1ep':>8} {f'scr {e}ep':>8}"
    head += f" {'lg1-scr' + str(e):>9}"
    print(head)
    for r in rows:
        gap = 100 * (r["learngene_1ep"] - r[f"scratch_{e}ep"])
        print(
            f"{label(r['size']):>6} {r['params']:>8,} {100 * r['learngene_0ep']:7.2f} {100 * r['learngene_1ep']:7.2f} "
            f"{100 * r['scratch_1ep']:8.2f} {100 * r[f'scratch_{e}ep']:8.2f} {gap:+9.2f}"
        )
    cost = cost_table(rows, meta, len(data.train), e)
    if not transfer:
        print(f"\ncost of {len(rows)} sizes (training TFLOPs = 3 x forward FLOPs x images)")
        lg, sp = cost["learngene_training"], cost["stored_params"]
        arch_txt = f"{meta['arch']['depth']} x {meta['arch']['embed_dim']}"
        print(
            f"  learngene training: {lg['tflops']:.2f} TFLOPs ({arch_txt} training net, {lg['images']:,} images;"
            f" teacher training and its forward passes {lg['of_which_teacher_tflops']:.2f} of it)"
        )
        for c in cost["per_size"]:
            print(
                f"  {c['size']:>5}: fine-tune 1 epoch {c['finetune_tflops']:.2f}"
                f" | scratch to {100 * c['target_top1']:.2f}%"
                f" needs {c['scratch_epochs_to_target']} epochs = {c['scratch_tflops']:.2f}"
            )
        bound = ">=" if cost["scratch_is_lower_bound"] else ""
        total_lg, total_scratch = cost["learngene_total_tflops"], cost["scratch_total_tflops"]
        print(f"  total: learngene + fine-tunes {total_lg:.2f} vs scratch {bound}{total_scratch:.2f} TFLOPs")
        print(f"  stored parameters: learngene file {sp['learngene_file']:,}", end="")
        print(f" vs {len(rows)} separate models {sp['separate_models']:,}")
    report["cost"] = cost if not transfer else None
    write_json(out, report)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
