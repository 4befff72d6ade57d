"""The README's main job, measured: wall time of `lgdeploy build --profile cpu-host`, and what the learngene buys.

1. Runs the main-job command in a fresh process and times it end to end (import, selection, fine-tune, export,
   simplify, three verification gates, compile, benchmark, artifact).
2. Reads the built model's top-1 on the validation split (Fashion-MNIST's official 10k test set) from the manifest.
3. Trains the *same architecture from scratch* (timm's default initialisation) with the same recipe, data,
   steps, batch, learning rate and seed, and evaluates it on the same split.

    python -m benchmarks.main_job [--profile cpu-host] [--out benchmarks/results/main_job.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from benchmarks._common import RESULTS, loadavg, temp_workdir, write_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="cpu-host")
    parser.add_argument("--learngene", default=None, help="default: the shipped learngene")
    parser.add_argument("--out", type=Path, default=RESULTS / "main_job.json")
    args = parser.parse_args()
    load_before = loadavg().split()[:3]
    workdir = temp_workdir("lgdeploy-mainjob-")
    artifact = workdir / "artifact"
    command = ["lgdeploy", "build", "--profile", args.profile, "--out", str(artifact)]
    if args.learngene:
        command += ["--learngene", args.learngene]
    lgdeploy = Path(sys.executable).parent / "lgdeploy"
    start = time.perf_counter()
    subprocess.run([str(lgdeploy), *command[1:]], check=True, cwd=workdir)
    wall = time.perf_counter() - start
    manifest = json.loads((artifact / "manifest.json").read_text())
    ft = manifest["finetune"]

    import torch

    from learngene_deploy.data import load_data
    from learngene_deploy.models.vit import ArchSpec, build_vit
    from learngene_deploy.training.loop import TrainConfig, evaluate, train

    arch = ArchSpec.from_dict(manifest["architecture"])
    data = load_data(
        ft["data"]["source"], img_size=arch.img_size, seed=ft["seed"], train_limit=ft["data"].get("train_size")
    )
    torch.manual_seed(ft["seed"])
    scratch = build_vit(arch)
    cfg = TrainConfig(
        out=workdir / "scratch", max_steps=ft["steps"], batch_size=ft["batch_size"], lr=ft["lr"], warmup=0.1,
        seed=ft["seed"], progress=False, recipe=ft["augmentation"]["name"],
    )  # fmt: skip
    start = time.perf_counter()
    train(scratch, data, cfg)
    scratch_s = time.perf_counter() - start
    scratch_top1 = evaluate(scratch.eval(), data.val)
    kept = ft.get("kept") or {}
    finetuned_all = kept.get("finetuned_top1", ft["top1_after"])
    result = {
        "command": " ".join(command),
        "wall_time_s": wall,
        "profile": args.profile,
        "learngene": Path(manifest["learngene"]["path"]).name,
        "size": manifest["selection"]["size"],
        "architecture": manifest["architecture"],
        "params": manifest["selection"]["chosen"]["params"],
        "finetune_steps": ft["steps"],
        "data": {k: ft["data"].get(k) for k in ("name", "train_size", "val_size", "fingerprint")},
        "learngene_direct_top1": ft["top1_before"],  # on the first top1_before_images validation images
        "learngene_finetuned_top1": finetuned_all,  # the fine-tuned model, whole validation split
        "kept": kept,  # fine-tuned vs recomposed on the same images, and which weights the artifact ships
        "artifact_top1": ft["top1_after"],  # the shipped weights, whole validation split
        "scratch_top1": scratch_top1,
        "scratch_train_s": scratch_s,
        "benchmark_p50_ms": manifest["benchmark"]["p50_ms"],
        "budgets": {k: v["passed"] for k, v in manifest["budgets"].items()},
        "loadavg_before": load_before,
        "host": manifest["host"],
    }
    write_json(args.out, result)
    print(f"\n`{result['command']}`: {wall:.0f} s wall (load average before: {' '.join(load_before)})")
    d = ft["data"]
    print(
        f"size {result['size']} ({result['params'] / 1e6:.2f}M params), {ft['steps']} fine-tune steps on "
        f"{d.get('name')} ({d.get('train_size')} train / {d.get('val_size')} val)"
    )
    n_all, n_sample = d.get("val_size"), ft.get("top1_before_images")
    rows = [
        (f"learngene, recomposed, no fine-tune ({n_sample} images)", ft["top1_before"]),
        (f"learngene, recomposed, no fine-tune ({n_all} images)", kept.get("recomposed_top1")),
        (f"learngene + fine-tune ({n_all} images)", finetuned_all),
        (f"the artifact: {kept.get('shipped', 'fine-tuned')} weights ({n_all} images)", ft["top1_after"]),
        (f"same architecture from scratch, same steps ({n_all} images)", scratch_top1),
    ]
    print(f"{'model':<62} {'top-1':>8}")
    for name, top1 in rows:
        print(f"{name:<62} {'—' if top1 is None else f'{100 * top1:.2f}%':>8}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
