"""How much does a latency measurement move when it is repeated, and which statistic moves least?

Budgets are checked against a measured percentile (cpu-host: p90), so the statistic's own noise is the floor
under any latency prediction: a model predicted perfectly still misses a budget set at its latency half the
time. This script times a few sizes in many fresh processes (one round each, as `lgdeploy` benchmarks) and
compares statistics of groups of `--rounds` processes (what one measurement costs), drawn many times:

- p90 of the round with the lowest p50 (lgdeploy before 2026-11: the best round's own p90),
- lowest p90 over the rounds (lgdeploy now: every percentile is the best process's),
- median p90 over the rounds,
- lowest p50 / median p50 over the rounds.

For each it prints the coefficient of variation across the drawn groups and the range relative to the median.
Latency does not depend on weight values, so the models are random-weight ViTs of the vit-small shape used by
`latency_prediction.py`.

    python -m benchmarks.latency_noise [--runtimes onnxruntime openvino] [--processes 15] [--rounds 3]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from pathlib import Path

import numpy as np

from benchmarks._common import RESULTS, loadavg, temp_workdir, write_json
from benchmarks.latency_prediction import learngene_metadata  # the same random LeTs learngene shape
from learngene_deploy import bench
from learngene_deploy.profile import resolve_profile
from learngene_deploy.sizing.calibrate import compile_size
from learngene_deploy.sizing.candidates import candidates_from_metadata


def vit_small(workdir: Path) -> dict:
    return learngene_metadata(workdir, "vit-small")


SIZES = [(2, 192), (4, 128), (8, 160)]  # (depth, width): about 1, 1.3 and 3.5 ms with ONNX Runtime on 2 cores

ESTIMATORS = {
    "p90 of best-p50 round": lambda g: g[int(np.argmin(g[:, 0])), 1],
    "lowest p90": lambda g: g[:, 1].min(),
    "median p90": lambda g: float(np.median(g[:, 1])),
    "lowest p50": lambda g: g[:, 0].min(),
    "median p50": lambda g: float(np.median(g[:, 0])),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runtimes", nargs="+", default=["onnxruntime", "openvino"])
    parser.add_argument("--processes", type=int, default=15, help="fresh processes (rounds) timed per size")
    parser.add_argument("--rounds", type=int, default=3, help="processes per measurement (group size)")
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--draws", type=int, default=500, help="random groups drawn per size")
    parser.add_argument("--out", type=Path, default=RESULTS / "latency_noise.json")
    args = parser.parse_args()
    if args.processes <= args.rounds:
        parser.error(f"--processes ({args.processes}) must exceed --rounds ({args.rounds}) to draw different groups")
    workdir = temp_workdir("lgdeploy-noise-")  # compiled models
    print(f"load: {loadavg()}")
    start, rng = time.time(), random.Random(0)
    results: dict = {"processes": args.processes, "rounds": args.rounds, "sizes": {}}
    archs = {(c.arch.depth, c.arch.embed_dim): c.arch for c in candidates_from_metadata(vit_small(workdir))}
    for runtime in args.runtimes:
        for depth, width in SIZES:
            arch, profile = archs[depth, width], resolve_profile("cpu-host", runtime, None)
            compiled = compile_size(arch, profile, workdir / runtime)
            spec = {"kind": "compiled", "compiled": compiled.to_dict(), "input_shape": list(compiled.input_shape),
                    "threads": profile.runtime.threads, "batch": 1, "warmup": 10, "min_runs": args.runs,
                    "min_time_s": 1.0}  # fmt: skip
            rounds = [bench._run_round(spec, 600.0) for _ in range(args.processes)]
            values = np.array([[r["p50_ms"], r["p90_ms"]] for r in rounds])
            summary = {}
            for name, estimator in ESTIMATORS.items():
                draws = [estimator(values[rng.sample(range(len(values)), args.rounds)]) for _ in range(args.draws)]
                mid = statistics.median(draws)
                summary[name] = {
                    "cv": float(np.std(draws) / np.mean(draws)),
                    "low": min(draws) / mid,
                    "high": max(draws) / mid,
                    "median_ms": mid,
                }
            results["sizes"][f"{runtime} {arch.name}"] = {"rounds": values.tolist(), "estimators": summary}
            p50, p90 = values[:, 0], values[:, 1]
            print(
                f"{runtime} {arch.name}: p50 {p50.min():.3f}-{p50.max():.3f} ms, "
                f"p90 {p90.min():.3f}-{p90.max():.3f} ms over {args.processes} processes",
                flush=True,
            )
    results["wall_time_s"] = time.time() - start
    results["loadavg_end"] = loadavg().split()[:3]
    write_json(args.out, results)

    print(f"\nCoefficient of variation of one {args.rounds}-process measurement ({args.draws} random groups)")
    print(f"{'size':<42}" + "".join(f"{name:>23}" for name in ESTIMATORS))
    for size, r in results["sizes"].items():
        cells = "".join(f"{100 * e['cv']:>8.1f}% ({e['low']:.2f}-{e['high']:.2f})" for e in r["estimators"].values())
        print(f"{size:<42}{cells}")
    print(f"\nwrote {args.out} ({results['wall_time_s']:.0f} s)")


if __name__ == "__main__":
    main()
