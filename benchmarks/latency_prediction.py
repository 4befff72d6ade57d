"""How well does `lgdeploy` predict latency on this machine, and does selection use the budget?

1. Calibrate `cpu-host` with each runtime (ONNX Runtime, OpenVINO): time a spread of a learngene's sizes, then
   the Pareto front the first fit predicts (the sizes selection can choose; `--front 0` skips that pass).
2. On held-out sizes (not timed in calibration, so predicted by the fit), compare the table's prediction (and
   the uncalibrated roofline) with a fresh measurement: median and maximum relative error.
3. For three latency budgets (the quartiles of the held-out sizes' measured latencies, rounded to two
   significant digits, as a user would write them), select with the calibrated table, measure the chosen
   model `--checks` times (each an independent, interleaved measurement), and check it meets the budget and
   uses at least 75% of it. The "best measured" column is what selection would choose from the sizes
   measured so far (calibration and held-out) if it knew their latencies: how much of the budget the grid of
   sizes allows (a lower bound; sizes never measured are left out).

Latency does not depend on weight values, so the learngene's sizes are timed as random-weight models.
`--shape shipped` (default) times the shipped LeTs learngene's sizes (depths x widths give a fine grid;
sub-millisecond models); `--shape vit-small` times a random LeTs learngene with ViT-Ti/S-like widths (1-15 ms).
Prints tables and writes JSON.

    python -m benchmarks.latency_prediction [--quick] [--out benchmarks/results/latency_prediction.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
import time
from pathlib import Path

from benchmarks._common import RESULTS, loadavg, temp_workdir, write_json
from benchmarks.latency_ceiling import achieved, chosen_checks, ratios, summarise
from learngene_deploy.errors import SelectionError
from learngene_deploy.learngene.io import read_metadata, save_learngene
from learngene_deploy.models.vit import ArchSpec
from learngene_deploy.profile import resolve_profile
from learngene_deploy.shipped import list_shipped_learngenes
from learngene_deploy.sizing.calibrate import (
    DEFAULT_FRONT_SIZES,
    calibrate,
    guard_band,
    measure,
    spread,
    table_from_points,
)
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


@dataclasses.dataclass(frozen=True)
class BestMeasured:
    """Selection's predictor if it knew the measured latencies: a size that was not measured never fits."""

    measured: dict[str, float]  # ArchSpec name -> measured ms
    kind: str = "best-measured"
    margin: float = 0.0
    margin_confidence: float | None = None

    def predict(self, arch: ArchSpec) -> tuple[float, str]:
        return self.measured.get(arch.name, math.inf), "measured"


def two_digits(x: float) -> float:
    return float(f"{x:.2g}")


def learngene_metadata(workdir: Path, shape: str) -> dict:
    shipped = list_shipped_learngenes()
    if shape == "shipped" and "lets-fashion-mnist" in shipped:
        return read_metadata(shipped["lets-fashion-mnist"])
    from learngene_deploy.learngene.lets import LeTsGenerator

    generator = LeTsGenerator(num_classes=10, **SHAPES[shape])
    return read_metadata(save_learngene(workdir / "lets.safetensors", generator))


def choose(candidates: list, profile, predictor) -> dict:
    """Selection's choice under ``predictor`` (the arch is kept for measuring, then dropped)."""
    try:
        chosen = select(candidates, profile, predictor=predictor).chosen
    except SelectionError as e:  # the guard band rules out every size: a failed budget, not a crash
        return {"chosen": None, "error": str(e)}
    return {
        "chosen": chosen.candidate.label,
        "arch": chosen.candidate.arch,
        "predicted_ms": chosen.latency_ms,
        "predicted_from": chosen.latency_source,
    }


def score(row: dict, budget: float, checks: list[dict[str, float]]) -> None:
    """Add the chosen model's measurements in every check, whether each met ``budget``, and the share used."""
    arch = row.pop("arch", None)
    measured = [c[arch.name] for c in checks] if arch else []
    row["measured_ms"] = measured
    row["met"] = sum(m <= budget for m in measured)
    row["used"] = [m / budget for m in measured]


def tally(rows: list[dict], checks_per_budget: int) -> dict:
    total, met, used = achieved(rows, checks_per_budget)  # a budget where nothing fits fails every check
    return {"budgets": len(rows), "total": total, "met": met, "met_and_used_75": used}


def print_choice(runtime: str, budget: float, b: dict, tail: str) -> None:
    if b["chosen"] is None:
        print(f"{runtime:<20} {budget:>9.3f} nothing fits with the guard band: {b['error']}")
        return
    measured = " ".join(f"{m:.3f}" for m in b["measured_ms"])
    used = " ".join(f"{100 * u:.0f}%" for u in b["used"])
    print(
        f"{runtime:<20} {budget:>9.3f} {b['chosen'].replace(' strategy=continuous', ''):<28} "
        f"{b['predicted_ms']:>8.3f} {measured:>26} {b['met']:>3}/{len(b['measured_ms'])} {used:>18} {tail}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runtimes", nargs="+", default=["onnxruntime", "openvino"])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="shipped", help="which learngene's sizes to time")
    parser.add_argument("--calibration-sizes", type=int, default=12)
    parser.add_argument("--front", type=int, default=DEFAULT_FRONT_SIZES, help="calibration's Pareto-front sizes")
    parser.add_argument("--eval-sizes", type=int, default=12)
    parser.add_argument(
        "--alt-confidence",
        type=float,
        nargs="*",
        default=[0.95],
        help="also select with these confidences' guard bands and check their choices side by side",
    )
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--checks", type=int, default=3, help="independent measurements of each chosen model")
    parser.add_argument("--quick", action="store_true", help="fewer runs and rounds (a few minutes)")
    parser.add_argument("--out", type=Path, default=RESULTS / "latency_prediction.json")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.rounds, args.calibration_sizes, args.eval_sizes = 30, 1, 6, 10
    workdir = temp_workdir("lgdeploy-latbench-")  # compiled models: hundreds of MB per run
    meta = learngene_metadata(workdir, args.shape)
    candidates = candidates_from_metadata(meta)
    print(f"learngene: {meta['method']}, {len(candidates)} candidate sizes; load: {loadavg()}\n")
    results: dict = {"learngene_method": meta["method"], "shape": args.shape, "runtimes": {}}
    start = time.time()
    for runtime in args.runtimes:
        profile = resolve_profile("cpu-host", runtime, None)
        table = calibrate(
            profile, candidates, sizes=args.calibration_sizes, front=args.front, runs=args.runs, rounds=args.rounds
        )
        fitted = TablePredictor(table, profile.budgets.percentile)
        roofline = RooflinePredictor.for_profile(profile)
        calibrated = {ArchSpec.from_dict(p["arch"]) for p in table.points}
        held_out = spread([c for c in candidates if c.arch not in calibrated], args.eval_sizes)
        rows = []
        key = f"p{profile.budgets.percentile}_ms"
        points = measure(held_out, profile, workdir, runs=args.runs, rounds=args.rounds)
        for arch, point in zip(held_out, points, strict=True):
            measured = point[key]
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
            "calibration_drift": table.drift,
            "calibration_sizes": {
                kind: sum(p.get("pass") == kind for p in table.points) for kind in ("spread", "front")
            },
        }
        # Three budgets spread over the measured range: select with the table, then measure the choice.
        lat = sorted(r["measured_ms"] for r in rows)
        budgets = [two_digits(lat[len(lat) // 4]), two_digits(lat[len(lat) // 2]), two_digits(lat[(3 * len(lat)) // 4])]
        known = {ArchSpec.from_dict(p["arch"]).name: p[key] for p in table.points}
        spread_points = [p for p in table.points if p.get("pass") == "spread"]
        # Alternatives checked side by side in the same measurements: the spread pass alone (no front pass),
        # and the same table with each --alt-confidence's guard band.
        alternatives = {}
        if len(spread_points) < len(table.points):
            spread_table = table_from_points(profile, spread_points, confidence=table.margin_confidence)
            alternatives["spread only"] = TablePredictor(spread_table, profile.budgets.percentile)
        for conf in args.alt_confidence:
            band = guard_band(table.fit_error, conf)
            alt = dataclasses.replace(table, margin=band, margin_confidence=conf)
            alternatives[f"confidence {conf:g}"] = TablePredictor(alt, profile.budgets.percentile)
        summary["alternative_guard_bands"] = {name: alt.margin for name, alt in alternatives.items()}
        hindsight = BestMeasured(known | {r["arch"]: r["measured_ms"] for r in rows})
        budget_rows = []
        for budget in budgets:
            tight = dataclasses.replace(profile, budgets=dataclasses.replace(profile.budgets, latency_ms=budget))
            try:
                best = select(candidates, tight, predictor=hindsight).chosen
                row = {
                    "best_measured": best.candidate.label,
                    "best_measured_ms": best.latency_ms,
                    "best_measured_used": best.latency_ms / budget,
                }
            except SelectionError:
                row = {"best_measured": None, "best_measured_ms": None, "best_measured_used": 0.0}
            row |= choose(candidates, tight, fitted)
            row["alternatives"] = {name: choose(candidates, tight, alt) for name, alt in alternatives.items()}
            budget_rows.append({"budget_ms": budget} | row)
        # Measure the chosen models: `--checks` independent measurements, each interleaving the chosen models.
        variants = list(budget_rows) + [alt for r in budget_rows for alt in r["alternatives"].values()]
        chosen_archs = list({r["arch"].name: r["arch"] for r in variants if r["chosen"]}.values())
        checks = []
        for _ in range(args.checks if chosen_archs else 0):
            points = measure(chosen_archs, profile, workdir, runs=args.runs, rounds=args.rounds)
            checks.append({a.name: pt[key] for a, pt in zip(chosen_archs, points, strict=True)})
        for r in budget_rows:
            score(r, r["budget_ms"], checks)
            for alt in r["alternatives"].values():
                score(alt, r["budget_ms"], checks)
        results["runtimes"][runtime] = {"table": table.to_dict(), "held_out": rows, "summary": summary,
                                        "budgets": budget_rows}  # fmt: skip
    rows = [b for r in results["runtimes"].values() for b in r["budgets"]]
    results["checks"] = tally(rows, args.checks)
    results["checks_alternatives"] = {
        name: tally([b["alternatives"][name] | {"budget_ms": b["budget_ms"]} for b in rows], args.checks)
        for name in (rows[0]["alternatives"] if rows else {})
    }
    # How often could any selection have landed in 75-100 % of the budget, given how these measurements repeat?
    results["noise_ceiling"] = {
        runtime: summarise(runtime, *ratios(chosen_checks(r)), achieved(r["budgets"], args.checks))
        for runtime, r in results["runtimes"].items()
    }
    results["wall_time_s"] = time.time() - start
    results["loadavg_end"] = loadavg().split()[:3]
    write_json(args.out, results)

    print(
        f"\nPredicted vs measured p90 latency on held-out sizes "
        f"(cpu-host; each the lowest of {args.rounds} interleaved processes)"
    )
    print(f"{'runtime':<12} {'sizes':>5} {'median err':>10} {'max err':>8} {'roofline median err':>20}")
    for runtime, r in results["runtimes"].items():
        s = r["summary"]
        print(
            f"{runtime:<12} {len(r['held_out']):>5} {100 * s['median_rel_error']:>9.1f}% "
            f"{100 * s['max_rel_error']:>7.1f}% {100 * s['roofline_median_rel_error']:>19.1f}%"
        )
    margins = ", ".join(
        f"{rt} {100 * r['summary']['guard_band']:.0f}% ({r['summary']['calibration_sizes']['spread']} spread + "
        f"{r['summary']['calibration_sizes']['front']} front sizes calibrated; drift between calibration passes "
        f"{100 * (r['summary']['calibration_drift'] or 0):.0f}%)"
        for rt, r in results["runtimes"].items()
    )
    print(
        f"\nBudgets (selection with the calibrated table and its guard band: {margins}; then measured; "
        "rows in brackets: alternatives chosen from the same calibration, checked in the same measurements)"
    )
    print(
        f"{'runtime':<20} {'budget ms':>9} {'chosen':<28} {'pred ms':>8} {'measured ms (each check)':>26} "
        f"{'met':>5} {'used (each check)':>18} {'best measured':>13}"
    )
    for runtime, r in results["runtimes"].items():
        for b in r["budgets"]:
            print_choice(runtime, b["budget_ms"], b, f"{100 * b['best_measured_used']:>12.0f}%")
            for name, alt in b["alternatives"].items():
                print_choice(f"  ({name})", b["budget_ms"], alt, "")
    print()
    tallies = {"as calibrated": results["checks"]} | results["checks_alternatives"]
    for label, c in tallies.items():
        print(
            f"{label}: {c['budgets']} budgets x {args.checks} checks: budget met in {c['met']}/{c['total']}, "
            f"met and >= 75% used in {c['met_and_used_75']}/{c['total']}"
        )
    for runtime, c in results["noise_ceiling"].items():
        print(
            f"{runtime}: the best single guard band in hindsight would have put {100 * c['band_ceiling']:.0f}% of the "
            f"checks in 75-100 % of the budget ({100 * c['repeatability_ceiling']:.0f}% with one check predicting "
            "another; benchmarks/latency_ceiling.py)"
        )
    print(f"\nwrote {args.out} ({results['wall_time_s']:.0f} s)")


if __name__ == "__main__":
    main()
