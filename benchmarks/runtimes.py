"""Runtimes side by side on this CPU: torch eager, ONNX Runtime and OpenVINO at fp32 and INT8, and what auto ships.

Issue 20's measurement. For three shapes, each exported (dynamo, opset 18, onnxsim, static batch 1) and compiled
as ``lgdeploy build`` compiles it:

- ``vit-ti``: ViT-Ti's shape (12 x 192, 3 heads, patch 16, 224 px), random weights (latency does not depend on them);
- ``5x384``: 5 x 384 (6 heads, patch 16, 224 px), random weights;
- ``learngene``: the shipped learngene's largest size, fine-tuned on Fashion-MNIST (Debian ``dataset-fashion-mnist``;
  scikit-learn digits where it is missing) so that INT8's top-1 drop is measured on a trained model, on the whole
  test split (10k images), plain and accuracy-controlled (``compile_accuracy_controlled``, ``--max-int8-drop``).

Variants: torch eager; ONNX Runtime fp32 and dynamic INT8; OpenVINO fp32 (f32 hint) and NNCF INT8; on the
trained shape also both runtimes' accuracy-controlled INT8. Every compiled variant of a shape is benchmarked in one
run (``learngene_deploy.bench.benchmark_many``: rounds interleaved over the variants, one fresh process each,
best round), eager in its own fresh processes right after. "auto" is what ``runtime.backend: auto`` ships with the
build's own rule (``learngene_deploy.backends.choice.choose``): at fp32 the fastest fp32 runtime; at int8 the
fastest INT8 that is faster than its fp32 twin, else (``--int8-fallback fp32``) the fastest fp32.

Fraction of peak: GFLOP per image (``sizing.cost.estimate``) / latency, against this CPU's fp32 peak measured in the
same run by a 4096 x 4096 numpy (OpenBLAS) matmul on 2 threads, run under
``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE`` (those variables force a slower kernel on these machines; about
440 GFLOP/s on the project's Zen 5 VM, where torch's own matmul reaches only ~200). The peak is sampled before,
between and after the shapes; the best sample is used. INT8 rows are integer GOP/s against the same fp32 peak.

Targets (issue 20): cpu-host's artifact (auto, fp32) >= 2.2x faster than eager on ViT-Ti at 224 px; INT8 >= 2.5x
faster than the best fp32 with <= 1 point top-1 drop; OpenVINO fp32 >= 85 % of the measured peak on the largest
shape. Latency on a shared 2-vCPU machine is noisy: the load average is recorded at the start and end.

    python -m benchmarks.runtimes                 # the real run (~10 min on an idle 2-vCPU machine)
    python -m benchmarks.runtimes --smoke         # tiny shapes and settings, seconds: checks the script runs

Writes benchmarks/results/runtimes.json (runtimes_smoke.json with --smoke).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks._common import RESULTS, arguments, command_line, host_facts, temp_workdir, write_json

THREADS = 2
TARGET_AUTO_VS_EAGER = 2.2
TARGET_INT8_VS_FP32 = 2.5
TARGET_INT8_DROP = 1.0
TARGET_OV_FRACTION = 0.85

PEAK_SNIPPET = """
import json, sys, time
import numpy as np
n, trials = int(sys.argv[1]), int(sys.argv[2])
a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
b = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)
a @ b
rates = []
for _ in range(trials):
    t = time.perf_counter(); a @ b; rates.append(2.0 * n**3 / (time.perf_counter() - t) / 1e9)
cfg = {k: v for k, v in (np.show_config(mode="dicts") or {}).get("Build Dependencies", {}).get("blas", {}).items()
       if k in ("name", "version")}
print(json.dumps({"n": n, "best_gflops": max(rates), "median_gflops": sorted(rates)[len(rates) // 2], "blas": cfg}))
"""


@dataclass(frozen=True)
class Shape:
    key: str
    label: str
    arch: Any  # ArchSpec
    trained: bool = False  # fine-tuned from the shipped learngene (accuracy is measured)
    size: dict[str, Any] | None = None  # the learngene size


def numpy_peak(n: int, trials: int) -> dict[str, Any]:
    """fp32 matmul GFLOP/s of numpy (OpenBLAS) on ``THREADS`` threads, in a fresh process without OPENBLAS overrides."""
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    env |= {"OPENBLAS_NUM_THREADS": str(THREADS), "OMP_NUM_THREADS": str(THREADS)}
    out = subprocess.run(
        [sys.executable, "-c", PEAK_SNIPPET, str(n), str(trials)], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def shapes(smoke: bool) -> list[Shape]:
    """ViT-Ti and 5 x 384 at 224 px, and the shipped learngene's largest size (tiny stand-ins with ``smoke``)."""
    from learngene_deploy.learngene.io import read_metadata
    from learngene_deploy.models.vit import ArchSpec
    from learngene_deploy.shipped import resolve_learngene
    from learngene_deploy.sizing.candidates import candidates_from_metadata
    from learngene_deploy.sizing.cost import estimate

    def vit(img: int, patch: int, dim: int, depth: int, heads: int) -> ArchSpec:
        return ArchSpec(
            img_size=img, patch_size=patch, in_chans=3, num_classes=10, embed_dim=dim, depth=depth, num_heads=heads
        )

    offered = candidates_from_metadata(read_metadata(resolve_learngene(None)))
    largest = max(offered, key=lambda c: estimate(c.arch).flops)
    if smoke:
        return [
            Shape("vit-ti", "ViT-Ti stand-in (2 x 32, 32 px)", vit(32, 8, 32, 2, 2)),
            Shape("5x384", "5x384 stand-in (1 x 64, 32 px)", vit(32, 8, 64, 1, 2)),
            Shape("learngene", f"learngene {largest.label}", largest.arch, trained=True, size=largest.size),
        ]
    return [
        Shape("vit-ti", "ViT-Ti (12 x 192, 224 px)", vit(224, 16, 192, 12, 3)),
        Shape("5x384", "5 x 384 (224 px)", vit(224, 16, 384, 5, 6)),
        Shape("learngene", f"learngene {largest.label} ({largest.arch.img_size} px)", largest.arch, True, largest.size),
    ]


def fraction(gflop: float, p50_ms: float, peak: float) -> tuple[float, float]:
    """(GFLOP/s, fraction of ``peak``) of a model of ``gflop`` per image run in ``p50_ms``."""
    rate = gflop / (p50_ms / 1000.0)
    return rate, rate / peak


def auto_choices(rows: list[dict[str, Any]], percentile: int = 90) -> dict[str, Any]:
    """What ``runtime.backend: auto`` ships from these measured rows, at fp32 and at int8 (build's own rule)."""
    from learngene_deploy.backends.choice import Contender, Planned, choose
    from learngene_deploy.errors import VerificationError

    def contender(row: dict[str, Any], role: str) -> Contender:
        return Contender(Planned(row["backend"], row["precision"], role), stats=row["latency"])

    plain = [r for r in rows if "latency" in r and r["backend"] != "pytorch" and not r.get("accuracy_controlled")]
    fp32 = [contender(r, "candidate") for r in plain if r["precision"] == "fp32"]
    int8 = [contender(r, "candidate") for r in plain if r["precision"] == "int8"]
    twins = [contender(r, "fp32 twin") for r in plain if r["precision"] == "fp32"]
    out: dict[str, Any] = {}
    if fp32:
        chosen = choose(fp32, percentile, "fp32")
        out["fp32"] = {"shipped": chosen.winner.name, "why": chosen.why}
    if int8:
        try:
            chosen = choose(int8 + twins, percentile, "int8", int8_fallback="fp32")
            out["int8"] = {"shipped": chosen.winner.name, "why": chosen.why, "fell_back": chosen.fell_back}
        except VerificationError as e:
            out["int8"] = {"shipped": None, "why": str(e)}
    return out


def judge(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Issue 20's targets from the measured shapes (``results``: :func:`measure_shape`'s records)."""

    def rows(shape: dict[str, Any], precision: str | None = None) -> list[dict[str, Any]]:
        return [r for r in shape["rows"] if "latency" in r and (precision is None or r["precision"] == precision)]

    def row(shape: dict[str, Any], name: str) -> dict[str, Any] | None:
        return next((r for r in rows(shape) if r["name"] == name), None)

    out: dict[str, Any] = {}
    vit_ti = next((s for s in results if s["key"] == "vit-ti"), None)
    if vit_ti is not None and vit_ti["auto"].get("fp32"):
        auto, eager = row(vit_ti, vit_ti["auto"]["fp32"]["shipped"]), row(vit_ti, "pytorch-fp32")
        if auto and eager:
            ratio = eager["latency"]["p50_ms"] / auto["latency"]["p50_ms"]
            out["auto_vs_eager_vit_ti"] = {
                "shipped": auto["name"],
                "speedup": ratio,
                "target": TARGET_AUTO_VS_EAGER,
                "met": ratio >= TARGET_AUTO_VS_EAGER,
            }
    int8 = []
    trained = next((s for s in results if s["key"] == "learngene"), None)
    for shape in results:
        fp32 = [r for r in rows(shape, "fp32") if r["backend"] != "pytorch"]
        quantized = rows(shape, "int8")
        if not fp32 or not quantized:
            continue
        best_fp32 = min(fp32, key=lambda r: r["latency"]["p50_ms"])
        best = min(quantized, key=lambda r: r["latency"]["p50_ms"])
        drop = None
        if trained is not None:  # the drop of the same variant on the trained model
            same = row(trained, best["name"])
            drop = same.get("drop_points") if same else None
        speedup = best_fp32["latency"]["p50_ms"] / best["latency"]["p50_ms"]
        int8.append(
            {
                "shape": shape["key"],
                "int8": best["name"],
                "best_fp32": best_fp32["name"],
                "speedup": speedup,
                "drop_points_on_trained_model": drop,
                "met": speedup >= TARGET_INT8_VS_FP32 and drop is not None and drop <= TARGET_INT8_DROP,
            }
        )
    out["int8_vs_best_fp32"] = {"per_shape": int8, "target_speedup": TARGET_INT8_VS_FP32, "max_drop": TARGET_INT8_DROP}
    largest = max(results, key=lambda s: s["gflop_per_image"])
    ov = row(largest, "openvino-fp32")
    if ov is not None:
        out["openvino_fp32_fraction_of_peak_largest"] = {
            "shape": largest["key"],
            "fraction": ov["fraction_of_peak"],
            "target": TARGET_OV_FRACTION,
            "met": ov["fraction_of_peak"] >= TARGET_OV_FRACTION,
        }
    return out


def trained_model(shape: Shape, data: Any, steps: int, seed: int, work: Path) -> tuple[Any, float]:
    """The shipped learngene's ``shape.size`` fine-tuned ``steps`` steps on ``data``; (model, seconds)."""
    import torch

    from learngene_deploy.learngene.io import load_learngene
    from learngene_deploy.shipped import resolve_learngene
    from learngene_deploy.training.finetune import finetune
    from learngene_deploy.training.loop import TrainConfig

    torch.manual_seed(seed)
    start = time.perf_counter()
    cfg = TrainConfig(out=work / "finetune", max_steps=steps, batch_size=64, lr=3e-4, warmup=0.1, seed=seed,
                      progress=False)  # fmt: skip
    tuned = finetune(load_learngene(resolve_learngene(None)), data, cfg, size=shape.size)
    return tuned.model.eval(), time.perf_counter() - start


def measure_shape(shape: Shape, args: argparse.Namespace, work: Path, peak: float) -> dict[str, Any]:
    """Export, compile, check and benchmark every variant of one shape side by side."""
    import numpy as np
    import torch

    from learngene_deploy.backends import get_backend
    from learngene_deploy.bench import benchmark_many, benchmark_torch
    from learngene_deploy.data import FASHION_MNIST_DIR, load_data
    from learngene_deploy.export import simplify, torch2onnx
    from learngene_deploy.gates import torch_logits
    from learngene_deploy.models.vit import build_vit
    from learngene_deploy.sizing.cost import estimate

    out = work / shape.key
    arch = shape.arch
    source = "fashion-mnist" if FASHION_MNIST_DIR.is_dir() else "digits"
    val_limit = args.val_images if shape.trained else args.agreement_images
    data = load_data(source, img_size=arch.img_size, seed=args.seed, train_limit=args.train_images, val_limit=val_limit)
    x_cal, y_cal = data.arrays("train", args.calibration)
    x_val, y_val = data.arrays("val")
    train_s = 0.0
    if shape.trained:
        model, train_s = trained_model(shape, data, args.steps, args.seed, out)
    else:
        torch.manual_seed(args.seed)
        model = build_vit(arch).eval()
    torch.set_num_threads(THREADS)
    reference = torch_logits(model)(x_val)
    eager_acc = float((reference.argmax(1) == y_val).mean())
    gflop = estimate(arch, batch=1).flops / 1e9
    print(f"\n== {shape.label}: {arch.name}, {gflop:.3f} GFLOP/img" + (f", fine-tuned in {train_s:.0f} s" if train_s
          else "") + f"; eager top-1 {eager_acc:.2%} on {len(y_val)} images", flush=True)  # fmt: skip

    shape4 = (1, arch.in_chans, arch.img_size, arch.img_size)
    raw = torch2onnx(model, input_shape=shape4, out_path=out / "export.onnx", opset=18, exporter="dynamo")
    onnx_path = simplify(raw, out / "model.onnx", tool="onnxsim").path
    plan = [("onnxruntime", "fp32", False), ("openvino", "fp32", False), ("onnxruntime", "int8", False),
            ("openvino", "int8", False)]  # fmt: skip
    if shape.trained:
        plan += [("onnxruntime", "int8", True), ("openvino", "int8", True)]
    rows: list[dict[str, Any]] = []
    compiled_models = []
    for backend_name, precision, controlled in plan:
        name = f"{backend_name}-{precision}" + ("-accuracy-controlled" if controlled else "")
        row: dict[str, Any] = {"name": name, "backend": backend_name, "precision": precision}
        row["accuracy_controlled"] = controlled
        backend = get_backend(backend_name)
        reason = backend.unavailable_reason()
        if reason is not None:
            rows.append(row | {"skipped": reason})
            continue
        start = time.perf_counter()
        try:
            if controlled:
                compiled = backend.compile_accuracy_controlled(
                    onnx_path, out / name, calibration_data=x_cal, calibration_labels=y_cal,
                    max_drop_points=args.max_int8_drop,
                )  # fmt: skip
                row["accuracy_control"] = compiled.settings["accuracy_control"]
            else:
                compiled = backend.compile(onnx_path, out / name, precision=precision, calibration_data=x_cal)
        except Exception as e:
            rows.append(row | {"skipped": f"{type(e).__name__}: {e}"})
            continue
        runner = backend.load_runner(compiled, threads=THREADS)
        logits = runner.run(x_val)
        execution = runner.execution()
        del runner
        accuracy = float((logits.argmax(1) == y_val).mean())
        row |= {
            "compile_s": time.perf_counter() - start,
            "file_mb": compiled.bytes / 2**20,
            "executed_on": list(execution.executed or []) if execution else None,
            "top1_agreement": float((logits.argmax(1) == reference.argmax(1)).mean()),
            "max_abs_diff": float(np.abs(logits - reference).max()),
        }
        if shape.trained:
            row |= {"accuracy": accuracy, "drop_points": 100.0 * (eager_acc - accuracy)}
        rows.append(row)
        compiled_models.append((row, compiled))
        print(f"   compiled {name} in {row['compile_s']:.1f} s", flush=True)

    timing = {"threads": THREADS, "min_runs": args.min_runs, "min_time_s": args.min_time, "rounds": args.rounds}
    stats = benchmark_many([c for _, c in compiled_models], **timing)
    for (row, _), st in zip(compiled_models, stats, strict=True):
        row["latency"] = st.to_dict()
    eager = benchmark_torch(model, arch, **timing).to_dict()
    eager_row = {"name": "pytorch-fp32", "backend": "pytorch", "precision": "fp32", "latency": eager}
    if shape.trained:
        eager_row |= {"accuracy": eager_acc, "drop_points": 0.0}
    rows.insert(0, eager_row)
    for row in rows:
        if "latency" in row:
            p50 = row["latency"]["p50_ms"]
            row["speedup_vs_eager"] = eager["p50_ms"] / p50
            row["gflops_per_s"], row["fraction_of_peak"] = fraction(gflop, p50, peak)
    return {
        "key": shape.key,
        "label": shape.label,
        "arch": arch.to_dict(),
        "size": shape.size,
        "gflop_per_image": gflop,
        "data": {"source": source, "eval_images": len(y_val), "calibration_images": len(y_cal), "split": "train"},
        "finetune_steps": args.steps if shape.trained else None,
        "finetune_s": train_s,
        "eager_accuracy": eager_acc if shape.trained else None,
        "rows": rows,
        "auto": auto_choices(rows),
        "load_average_1min": os.getloadavg()[0],
    }


def print_table(results: list[dict[str, Any]], peak: float) -> None:
    print(f"\nbatch 1, {THREADS} threads, best-of-rounds p50; fp32 peak {peak:.0f} GFLOP/s (numpy/OpenBLAS matmul)")
    header = (f"{'shape':10s} {'variant':36s} {'p50 ms':>7s} {'p90 ms':>7s} {'x eager':>7s} {'GFLOP/s':>8s} "
              f"{'% peak':>7s} {'top-1':>7s} {'drop':>6s}  note")  # fmt: skip
    print(header)
    print("-" * len(header))
    for shape in results:
        auto = {v["shipped"]: k for k, v in shape["auto"].items() if v.get("shipped")}
        for r in shape["rows"]:
            if "skipped" in r:
                print(f"{shape['key']:10s} {r['name']:36s} skipped: {r['skipped'][:80]}")
                continue
            lat = r["latency"]
            acc = f"{r['accuracy']:7.2%}" if "accuracy" in r else f"{'—':>7s}"
            drop = f"{r['drop_points']:+6.2f}" if "drop_points" in r else f"{'—':>6s}"
            note = f"auto {auto[r['name']]}" if r["name"] in auto else ""
            if r.get("accuracy_control"):
                note += f" {len(r['accuracy_control'].get('fp32_layers', []))} layers fp32"
            print(
                f"{shape['key']:10s} {r['name']:36s} {lat['p50_ms']:7.2f} {lat['p90_ms']:7.2f} "
                f"{r['speedup_vs_eager']:7.2f} {r['gflops_per_s']:8.1f} {r['fraction_of_peak']:7.1%} {acc} {drop}  "
                f"{note.strip()}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny shapes and settings: checks the script runs")
    parser.add_argument("--rounds", type=int, default=None, help="fresh benchmark processes per variant (best kept)")
    parser.add_argument("--min-runs", type=int, default=None)
    parser.add_argument("--min-time", type=float, default=None)
    parser.add_argument("--steps", type=int, default=None, help="fine-tune steps of the learngene shape")
    parser.add_argument("--val-images", type=int, default=None, help="test images for top-1 (default: all 10k)")
    parser.add_argument("--agreement-images", type=int, default=None, help="images for the untrained shapes' checks")
    parser.add_argument("--train-images", type=int, default=20000)
    parser.add_argument("--calibration", type=int, default=None, help="INT8 calibration images (training split)")
    parser.add_argument("--max-int8-drop", type=float, default=1.0, help="accuracy-controlled INT8's limit, points")
    parser.add_argument("--peak-n", type=int, default=None, help="matmul size of the peak measurement")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    smoke = args.smoke
    args.rounds = args.rounds or (1 if smoke else 3)
    args.min_runs = args.min_runs or (5 if smoke else 50)
    args.min_time = args.min_time if args.min_time is not None else (0.05 if smoke else 1.0)
    args.steps = args.steps or (5 if smoke else 50)
    args.val_images = args.val_images or (200 if smoke else None)
    args.agreement_images = args.agreement_images or (32 if smoke else 64)
    args.calibration = args.calibration or (32 if smoke else 300)
    args.peak_n = args.peak_n or (512 if smoke else 4096)
    if smoke:
        args.train_images = min(args.train_images, 2000)
    args.out = args.out or RESULTS / ("runtimes_smoke.json" if smoke else "runtimes.json")

    t0 = time.perf_counter()
    load_start = os.getloadavg()
    print(f"load average at start: {load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f}", flush=True)
    trials = 3 if smoke else 5
    peaks = [numpy_peak(args.peak_n, trials)]
    print(f"numpy fp32 matmul {args.peak_n}^2, {THREADS} threads: {peaks[0]['best_gflops']:.0f} GFLOP/s", flush=True)
    work = temp_workdir("lgdeploy-runtimes-")
    results = []
    for shape in shapes(smoke):
        results.append(measure_shape(shape, args, work, peaks[0]["best_gflops"]))
        peaks.append(numpy_peak(args.peak_n, trials))  # between shapes too: the best sample is the least disturbed
    peak = max(p["best_gflops"] for p in peaks)
    for shape in results:
        for r in shape["rows"]:
            if "latency" in r:
                r["gflops_per_s"], r["fraction_of_peak"] = fraction(shape["gflop_per_image"], r["latency"]["p50_ms"],
                                                                    peak)  # fmt: skip
    targets = judge(results)
    load_end = os.getloadavg()
    print_table(results, peak)
    print("\nauto's choice:")
    for shape in results:
        for precision, choice in shape["auto"].items():
            print(f"  {shape['key']:10s} {precision}: {choice['why']}")
    print("\ntargets:")
    for name, t in targets.items():
        print(f"  {name}: {json.dumps(t)}")
    print(f"load average at end: {load_end[0]:.2f} {load_end[1]:.2f} {load_end[2]:.2f}; "
          f"{time.perf_counter() - t0:.0f} s")  # fmt: skip
    write_json(
        args.out,
        {
            "mode": "smoke" if smoke else "full",
            "command": command_line(),
            "host": host_facts("machine", "cpu", "cpu_family", "logical_cpus", "torch"),
            "load_average": {"start": list(load_start), "end": list(load_end)},
            "peak": {"samples": peaks, "used_gflops": peak, "how": "numpy matmul, OPENBLAS_CORETYPE/L2_SIZE unset"},
            "settings": arguments(args),
            "shapes": results,
            "targets": targets,
            "wall_time_s": time.perf_counter() - t0,
        },
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
