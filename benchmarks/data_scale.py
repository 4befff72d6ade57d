"""Does memory or start-up grow with the dataset? `lgdeploy train lets` and `lgdeploy build` on 2k, 20k, 50k JPEGs.

Generates ImageFolders in ImageNet's layout (``train/<class>/*.jpg`` with N images, ``val/<class>/*.jpg`` with a
fixed few hundred, photo-sized 400 x 300 JPEGs) and runs, for each N and as the real commands in fresh processes:

1. ``lgdeploy train lets`` at 224 px with a ViT-Ti-sized learngene (learngene 6 x 192, Aux-Net 12 x 384, patch 16),
   the deit recipe, ``--steps`` optimiser steps;
2. ``lgdeploy build --profile cpu-host`` with the learngene trained on the smallest folder, ``--steps`` fine-tune
   steps (light recipe, batch 64).

For each run: peak memory (the main process's VmHWM, and the peak of the summed PSS of the process tree, DataLoader
workers included, sampled every 0.25 s), start-up (process start to the end of the first optimiser step, as the
learngene metadata and the manifest record it), training images/s (steps x batch / the loop's wall time, the first
batch's latency included) and the dataset size the run recorded (every training image counts; nothing is
subsampled). Targets (issue 17): peak memory at 50k within 1.2x of 2k; start-up at 50k within 2x of 2k.

    python -m benchmarks.data_scale                          # 2k, 20k, 50k; about 20 minutes on 2 cores
    python -m benchmarks.data_scale --sizes 200,400 --steps 2 --img-size 64   # smoke test
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import RESULTS, command_line, host_facts, loadavg, temp_workdir, write_json

CLASSES = 100
VAL_PER_CLASS = 3


def _jpegs(count: int, seed: int) -> list[bytes]:
    """``count`` distinct photo-sized JPEGs (smooth colour fields plus grain, about 20 KB each)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        small = Image.fromarray(rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)).resize((400, 300), Image.BICUBIC)
        pixels = np.asarray(small).astype(np.int16) + rng.integers(-12, 12, (300, 400, 3), dtype=np.int16)
        buffer = io.BytesIO()
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=85)
        out.append(buffer.getvalue())
    return out


def make_folder(root: Path, n_train: int, pool: list[bytes]) -> Path:
    """ImageNet's layout under ``root``: ``n_train`` training and ``CLASSES x VAL_PER_CLASS`` validation JPEGs.

    Files cycle through ``pool`` (decoding cost is what matters, not distinct content); each is its own file.
    """
    classes = min(CLASSES, n_train)
    for split, n in (("train", n_train), ("val", classes * VAL_PER_CLASS)):
        for c in range(classes):
            (root / split / f"n{c:05d}").mkdir(parents=True, exist_ok=True)
        for i in range(n):
            (root / split / f"n{i % classes:05d}" / f"{split}_{i:07d}.jpg").write_bytes(pool[i % len(pool)])
    return root


def _tree(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        kids = [int(k) for k in children.read_text().split()]
    except OSError:
        return [pid]
    return [pid, *(p for k in kids for p in _tree(k))]


def _kib(path: str, key: str) -> int:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_measured(argv: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run ``argv``; its wall time, exit code, the main process's peak RSS and the process tree's peak PSS (MiB)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = {"tree_pss": 0, "main_hwm": 0}

    def sample() -> None:
        while proc.poll() is None:
            pss = sum(_kib(f"/proc/{p}/smaps_rollup", "Pss:") for p in _tree(proc.pid))
            peak["tree_pss"] = max(peak["tree_pss"], pss)
            peak["main_hwm"] = max(peak["main_hwm"], _kib(f"/proc/{proc.pid}/status", "VmHWM:"))
            time.sleep(0.25)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = proc.communicate()
    sampler.join()
    if proc.returncode != 0:
        print(output[-3000:], file=sys.stderr)
        raise SystemExit(f"{' '.join(argv[:4])} ... exited {proc.returncode}")
    return {
        "wall_s": round(time.perf_counter() - start, 1),
        "peak_rss_main_mib": round(peak["main_hwm"] / 1024, 1),
        "peak_pss_tree_mib": round(peak["tree_pss"] / 1024, 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="2000,20000,50000", help="training images per folder")
    parser.add_argument("--steps", type=int, default=10, help="optimiser steps of each run")
    parser.add_argument("--batch-size", type=int, default=32, help="batch of `train lets` (build uses its 64)")
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: lgdeploy's)")
    parser.add_argument("--work", type=Path, default=None, help="where the folders go (default: a temp dir)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    work = args.work or temp_workdir("lgd-scale-")
    t0 = time.perf_counter()
    pool = _jpegs(500, seed=0)
    folders = {n: make_folder(work / f"data{n}", n, pool) for n in sizes}
    n_val = len(sizes) * CLASSES * VAL_PER_CLASS
    print(f"generated {sum(sizes):,} + {n_val:,} JPEGs in {time.perf_counter() - t0:.0f} s")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    lgdeploy = [str(Path(sys.executable).parent / "lgdeploy")]
    workers = ["--workers", str(args.workers)] if args.workers is not None else []
    rows = []
    learngene = None
    for n in sizes:
        run = work / f"run{n}"
        train = [
            *lgdeploy, "train", "lets", "--data", str(folders[n]), "--out", str(run),
            "--img-size", str(args.img_size), "--patch-size", "16", "--head-dim", "64",
            "--learngene-depth", "6", "--learngene-dim", "192", "--aux-depth", "12", "--aux-dim", "384",
            "--recipe", "deit", "--max-steps", str(args.steps), "--batch-size", str(args.batch_size),
            "--table-depths", "6,12", "--table-widths", "192,384", "--no-progress", *workers,
        ]  # fmt: skip
        measured = run_measured(train, env)
        meta = _learngene_training(run / "learngene.safetensors")
        rows.append(_row("train lets", n, measured, meta, args.batch_size))
        print(_line(rows[-1]), flush=True)
        learngene = learngene or run / "learngene.safetensors"
        build = [
            *lgdeploy, "build", "--profile", "cpu-host", "--learngene", str(learngene), "--data", str(folders[n]),
            "--finetune-steps", str(args.steps), "--out", str(work / f"art{n}"), *workers,
        ]  # fmt: skip
        measured = run_measured(build, env)
        manifest = json.loads((work / f"art{n}" / "manifest.json").read_text())
        rows.append(_row("build", n, measured, manifest["finetune"], manifest["finetune"]["batch_size"]))
        print(_line(rows[-1]), flush=True)
    report = {
        "benchmark": "data_scale",
        "command": command_line(),
        "arguments": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "rows": rows,
        "ratios": _ratios(rows, sizes),
        "loadavg_after": loadavg().split()[:3],
        "host": host_facts("cpu", "logical_cpus", "torch"),
    }
    print(json.dumps(report["ratios"], indent=2))
    out = args.out or RESULTS / "data_scale.json"
    write_json(out, report)
    print(f"wrote {out}")


def _learngene_training(path: Path) -> dict[str, Any]:
    from learngene_deploy.learngene.io import read_metadata

    return read_metadata(path)["training"]


def _row(command: str, n: int, measured: dict[str, Any], record: dict[str, Any], batch: int) -> dict[str, Any]:
    steps, wall = record["steps"], record["wall_time_s"]
    return {
        "command": command,
        "images": n,
        "recorded_train_size": record["data"]["train_size"],
        **measured,
        "startup_s": round(record["startup_s"], 2) if record.get("startup_s") is not None else None,
        "train_images_per_s": round(steps * batch / wall, 2),
        "steps": steps,
        "batch": batch,
    }


def _line(r: dict[str, Any]) -> str:
    return (
        f"{r['command']:<10} {r['images']:>6,} images (recorded {r['recorded_train_size']:,}): peak RSS "
        f"{r['peak_rss_main_mib']:.0f} MiB main, PSS {r['peak_pss_tree_mib']:.0f} MiB with workers; start-up "
        f"{r['startup_s']} s; {r['train_images_per_s']} images/s; whole command {r['wall_s']} s"
    )


def _ratios(rows: list[dict[str, Any]], sizes: list[int]) -> dict[str, Any]:
    """Largest over smallest folder, per command: peak memory and start-up (targets 1.2x and 2x)."""
    out = {}
    for command in ("train lets", "build"):
        first = next(r for r in rows if r["command"] == command and r["images"] == sizes[0])
        last = next(r for r in rows if r["command"] == command and r["images"] == sizes[-1])
        out[command] = {
            "peak_pss_tree": round(last["peak_pss_tree_mib"] / first["peak_pss_tree_mib"], 3),
            "peak_rss_main": round(last["peak_rss_main_mib"] / first["peak_rss_main_mib"], 3),
            "startup": round(last["startup_s"] / first["startup_s"], 3) if first["startup_s"] else None,
            "every_image_recorded": all(r["recorded_train_size"] == r["images"] for r in rows),
        }
    return out


if __name__ == "__main__":
    main()
