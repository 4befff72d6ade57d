"""Does one latency measurement repeat minutes later, with 2 threads (cpu-host) and with 1?

A budget check is one measurement: the lowest p90 of 3 interleaved fresh processes (`lgdeploy bench`, the
build, calibration). This script takes that measurement of a few sizes `--repeats` times in a row (each
repeat interleaves every size and thread count, about a minute apart), for each runtime with the profile's 2
threads and with 1, and reports how much it moved: range, robust log standard deviation, and the
repeatability ceiling of `latency_ceiling.py` -- the largest share of repeats that any prediction with one
guard band could put inside 75-100 % of a budget, using another repeat of the same size as the prediction.

Latency does not depend on weight values, so the models are random-weight ViTs of the vit-small shape used by
`latency_prediction.py`.

    python -m benchmarks.latency_repeat [--repeats 6] [--out benchmarks/results/latency_repeat.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from benchmarks._common import RESULTS, loadavg, temp_workdir, write_json
from benchmarks.latency_ceiling import best_band, log_spread, pairs
from learngene_deploy.bench import benchmark_many
from learngene_deploy.models.vit import ArchSpec
from learngene_deploy.profile import resolve_profile
from learngene_deploy.sizing.calibrate import compile_size

SIZES = [(2, 192), (4, 160), (6, 192)]  # (depth, width) of the vit-small shape: about 1.5, 2.5 and 5 ms on 1 core


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runtimes", nargs="+", default=["onnxruntime", "openvino"])
    parser.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    parser.add_argument("--repeats", type=int, default=6, help="measurements of every size, one after another")
    parser.add_argument("--rounds", type=int, default=3, help="fresh processes per measurement")
    parser.add_argument("--out", type=Path, default=RESULTS / "latency_repeat.json")
    args = parser.parse_args()
    workdir = temp_workdir("lgdeploy-repeat-")
    models, labels = [], []
    for runtime in args.runtimes:
        profile = resolve_profile("cpu-host", runtime, None)
        for depth, width in SIZES:
            arch = ArchSpec(
                img_size=32, patch_size=4, in_chans=1, num_classes=10, embed_dim=width, depth=depth,
                num_heads=width // 32,
            )  # fmt: skip
            compiled = compile_size(arch, profile, workdir / runtime)
            for threads in args.threads:
                models.append(dataclasses.replace(compiled, settings=compiled.settings | {"threads": threads}))
                labels.append((runtime, f"{depth}x{width}", threads))
    print(f"{len(models)} models; load: {loadavg()}")
    p90: dict[tuple, list[float]] = {label: [] for label in labels}
    start = time.time()
    for r in range(args.repeats):
        for label, stats in zip(labels, benchmark_many(models, threads=None, rounds=args.rounds), strict=True):
            p90[label].append(stats.p90_ms)
        print(f"repeat {r + 1}/{args.repeats} done after {time.time() - start:.0f} s", flush=True)

    rows = []
    for runtime in args.runtimes:
        for threads in args.threads:
            mine = [label for label in labels if label[0] == runtime and label[2] == threads]
            ratios = [x for label in mine for x in pairs(p90[label])]
            share, band = best_band(ratios)
            rows.append(
                {
                    "runtime": runtime,
                    "threads": threads,
                    "sizes": {label[1]: p90[label] for label in mine},
                    "log_sd": log_spread(ratios),
                    "max_range": max(max(p90[label]) / min(p90[label]) - 1 for label in mine),
                    "repeatability_ceiling": share,
                    "ceiling_band": band,
                }
            )
    write_json(args.out, {"rows": rows, "repeats": args.repeats, "rounds": args.rounds,
                          "wall_time_s": time.time() - start, "loadavg_end": loadavg().split()[:3]})  # fmt: skip

    print(f"\nLowest p90 of {args.rounds} interleaved processes, measured {args.repeats} times in a row (cpu-host)")
    print(f"{'runtime':<12} {'threads':>7} {'size':>6} {'p90 ms, each repeat':<50}")
    for row in rows:
        for size, values in row["sizes"].items():
            print(f"{row['runtime']:<12} {row['threads']:>7} {size:>6} {' '.join(f'{v:.3f}' for v in values):<50}")
    print(f"\n{'runtime':<12} {'threads':>7} {'largest range':>13} {'robust log sd':>13} {'repeatability ceiling':>22}")
    for row in rows:
        print(
            f"{row['runtime']:<12} {row['threads']:>7} {100 * row['max_range']:>12.0f}% {row['log_sd']:>13.3f} "
            f"{100 * row['repeatability_ceiling']:>9.0f}% (band {100 * row['ceiling_band']:.0f}%)"
        )
    print(f"\nwrote {args.out} ({time.time() - start:.0f} s)")


if __name__ == "__main__":
    main()
