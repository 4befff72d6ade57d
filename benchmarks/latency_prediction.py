"""How well does `lgdeploy` predict latency on this machine, and does selection use the budget?

1. Calibrate `cpu-host` with each runtime (ONNX Runtime, OpenVINO): time a spread of a learngene's sizes.
2. On held-out sizes (not used by the fit), compare the table's prediction (and the uncalibrated roofline)
   with a fresh measurement: median and maximum relative error.
3. For three latency budgets, select with the calibrated table, measure the chosen model, and check it meets
   the budget and uses at least 75% of it.

Latency does not depend on weight values, so the learngene's sizes are timed as random-weight models.
`--shape shipped` (default) times the shipped LeTs learngene's sizes (depths x widths give a fine grid;
sub-millisecond models); `--shape vit-small` times a random LeTs learngene with ViT-Ti/S-like widths (1-15 ms).
Prints tables and writes JSON.

    python benchmarks/latency_prediction.py [--quick] [--out benchmarks/results/latency_prediction.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
import time
from pathlib import Path

from learngene_deploy.errors import SelectionError
from learngene_deploy.learngene.io import read_metadata, save_learngene
from learngene_deploy.pipeline import resolve_profile
from learngene_deploy.shipped import list_shipped_learngenes
from learngene_deploy.sizing.calibrate import calibrate, measure, spread
from learngene_deploy.sizing.candidates import candidates_from_metadata
from learngene_deploy.sizing.latency import RooflinePredictor, TablePredictor
from learngene_deploy.sizing.select import select

# Random LeTs learngenes whose sizes span realistic latencies (weights do not change latency).
SHAPES = {
    # like the shipped learngene (28 px, patch 7: 16 tokens; sub-millisecond models)
    "shipped": dict(img_size=28, patch_size=7, head_dim=16, learngene_depth=4, learngene_dim=48, aux_depth=8,
                    aux_dim=96),
    # ViT-Ti/S-like widths at 32 px, patch 4 (64 tokens): 1-15 ms models on 2 cores
    "vit-small": dict(img_size=32, patch_size=4, head_dim=32, learngene_depth=6, learngene_dim=96, aux_depth=12,
                      aux_dim=192),
}  # fmt: skip


def learngene_metadata(workdir: Path, shape: str) -> dict:
    shipped = list_shipped_learngenes()
    if shape == "shipped" and "lets-fashion-mnist" in shipped:
        return read_metadata(shipped["lets-fashion-mnist"])
    from learngene_deploy.learngene.lets import LeTsGenerator

    generator = LeTsGenerator(num_classes=10, **SHAPES[shape])
    return read_metadata(save_learngene(workdir / "lets.safetensors", generator))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runtimes", nargs="+", default=["onnxruntime", "openvino"])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="shipped", help="which learngene's sizes to time")
    parser.add_argument("--calibration-sizes", type=int, default=8)
    parser.add_argument("--eval-sizes", type=int, default=12)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="fewer runs and rounds (a few minutes)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/latency_prediction.json"))
    args = parser.parse_args()
    if args.quick:
        args.runs, args.rounds, args.calibration_sizes, args.eval_sizes = 30, 1, 6, 10
    workdir = Path(tempfile.mkdtemp(prefix="lgdeploy-latbench-"))
    meta = learngene_metadata(workdir, args.shape)
    candidates = candidates_from_metadata(meta)
    print(f"learngene: {meta['method']}, {len(candidates)} candidate sizes; load: {Path('/proc/loadavg').read_text()}")
    results: dict = {"learngene_method": meta["method"], "shape": args.shape, "runtimes": {}}
    start = time.time()
    for runtime in args.runtimes:
        profile = resolve_profile("cpu-host", runtime, None)
        table = calibrate(profile, candidates, sizes=args.calibration_sizes, runs=args.runs, rounds=args.rounds)
        fitted = TablePredictor(table, profile.budgets.percentile)
        roofline = RooflinePredictor.for_profile(profile)
        calibrated = {json.dumps(p["arch"], sort_keys=True) for p in table.points}
        held_out = [
            a for a in spread(candidates, args.eval_sizes + len(calibrated)) if json.dumps(a.to_dict(), sort_keys=True)
            not in calibrated
        ][: args.eval_sizes]  # fmt: skip
        rows = []
        for arch in held_out:
            point = measure(arch, profile, workdir, runs=args.runs, rounds=args.rounds)
            measured = point[f"p{profile.budgets.percentile}_ms"]
            predicted, _ = fitted.predict(arch)
            rows.append(
                {
                    "arch": arch.name,
                    "measured_ms": measured,
                    "predicted_ms": predicted,
                    "rel_error": abs(predicted - measured) / measured,
                    "roofline_ms": roofline.predict(arch)[0],
                }
            )
            print(f"  {runtime:<11} {arch.name:<30} measured {measured:7.3f}  predicted {predicted:7.3f}")
        errors = [r["rel_error"] for r in rows]
        roof = [abs(r["roofline_ms"] - r["measured_ms"]) / r["measured_ms"] for r in rows]
        summary = {
            "median_rel_error": statistics.median(errors),
            "max_rel_error": max(errors),
            "roofline_median_rel_error": statistics.median(roof),
            "fit_error_on_calibration_points": table.fit_error,
            "guard_band": table.margin,
        }
        # Three budgets spread over the measured range: select with the table, then measure the choice.
        lat = sorted(r["measured_ms"] for r in rows)
        budgets = [lat[len(lat) // 4], lat[len(lat) // 2], lat[(3 * len(lat)) // 4]]
        budget_rows = []
        for budget in budgets:
            tight = dataclasses.replace(profile, budgets=dataclasses.replace(profile.budgets, latency_ms=budget))
            try:
                chosen = select(candidates, tight, predictor=fitted).chosen
            except SelectionError as e:  # the guard band rules out every size: a failed budget, not a crash
                budget_rows.append({"budget_ms": budget, "chosen": None, "error": str(e), "meets": False, "used": 0})
                continue
            point = measure(chosen.candidate.arch, profile, workdir, runs=args.runs, rounds=args.rounds)
            measured = point[f"p{profile.budgets.percentile}_ms"]
            budget_rows.append(
                {
                    "budget_ms": budget,
                    "chosen": chosen.candidate.label,
                    "predicted_ms": chosen.latency_ms,
                    "measured_ms": measured,
                    "meets": measured <= budget,
                    "used": measured / budget,
                }
            )
        results["runtimes"][runtime] = {"table": table.to_dict(), "held_out": rows, "summary": summary,
                                        "budgets": budget_rows}  # fmt: skip
    results["wall_time_s"] = time.time() - start
    results["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")

    print(f"\nPredicted vs measured p90 latency on held-out sizes (cpu-host, {args.rounds} processes, best round)")
    print(f"{'runtime':<12} {'sizes':>5} {'median err':>10} {'max err':>8} {'roofline median err':>20}")
    for runtime, r in results["runtimes"].items():
        s = r["summary"]
        print(
            f"{runtime:<12} {len(r['held_out']):>5} {100 * s['median_rel_error']:>9.1f}% "
            f"{100 * s['max_rel_error']:>7.1f}% {100 * s['roofline_median_rel_error']:>19.1f}%"
        )
    margins = ", ".join(f"{rt} {100 * r['summary']['guard_band']:.0f}%" for rt, r in results["runtimes"].items())
    print(f"\nBudgets (selection with the calibrated table and its guard band: {margins}; then measured)")
    print(f"{'runtime':<12} {'budget ms':>9} {'chosen':<28} {'pred ms':>8} {'meas ms':>8} {'meets':>6} {'used':>6}")
    for runtime, r in results["runtimes"].items():
        for b in r["budgets"]:
            if b["chosen"] is None:
                print(f"{runtime:<12} {b['budget_ms']:>9.3f} nothing fits with the guard band: {b['error']}")
                continue
            print(
                f"{runtime:<12} {b['budget_ms']:>9.3f} {b['chosen']:<28} {b['predicted_ms']:>8.3f} "
                f"{b['measured_ms']:>8.3f} {'yes' if b['meets'] else 'NO':>6} {100 * b['used']:>5.0f}%"
            )
    print(f"\nwrote {args.out} ({results['wall_time_s']:.0f} s)")


if __name__ == "__main__":
    main()
