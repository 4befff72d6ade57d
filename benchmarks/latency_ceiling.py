"""How often can *any* size selection land in 75-100 % of a latency budget on this machine?

Issue #5 asks that the chosen model's measured latency meet its budget and use at least 75 % of it. That
window is only ±14 % wide around its centre, so how often it is hit depends on how repeatable a measurement
is, before any prediction or selection comes in. This script reads the JSON that
`benchmarks/latency_prediction.py` writes and puts each run's result next to two ceilings:

- **band ceiling**: the chosen models' predictions as made (on the Pareto front, the size's own calibration
  measurement) and the best single guard band in hindsight, with every budget placed exactly at
  predicted x (1 + band), so no gap between sizes costs anything. The share of checks in the window then is
  the most a selection rule with one guard band could have reached from these calibrations.
- **repeatability ceiling**: the same, with one check of a chosen model predicting another check of the same
  model -- a perfect predictor of a measurement is another measurement of the same model.

Both are upper bounds for this run's machine and models, not for the method: on a device whose measurements
repeat within a few percent, both approach 100 %.

    python -m benchmarks.latency_ceiling benchmarks/results/latency_prediction_vit_small_*.json [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

from benchmarks._common import write_json

LOW = 0.75  # the share of the budget a chosen model must use
BANDS = tuple(i / 100 for i in range(0, 61))  # guard bands tried in hindsight: 0-60 %


def window_share(ratios: list[float], band: float, low: float = LOW) -> float:
    """Share of measured/predicted ``ratios`` inside [low, 1] x (1 + band): the budget met and >= ``low`` used."""
    if not ratios:
        return math.nan
    return sum(low <= r / (1 + band) <= 1 for r in ratios) / len(ratios)


def best_band(ratios: list[float], low: float = LOW) -> tuple[float, float]:
    """(highest :func:`window_share` over :data:`BANDS`, the smallest band reaching it)."""
    share, band = max((window_share(ratios, b, low), -b) for b in BANDS)
    return share, -band


def chosen_checks(runtime_result: dict) -> list[tuple[float, list[float]]]:
    """(predicted ms, measured ms of every check) per distinct model chosen as calibrated."""
    seen: dict[str, tuple[float, list[float]]] = {}
    for b in runtime_result["budgets"]:
        if b.get("chosen") and b["measured_ms"]:
            seen.setdefault(b["chosen"], (b["predicted_ms"], list(b["measured_ms"])))
    return list(seen.values())


def pairs(values: list[float]) -> list[float]:
    """Every ordered ratio of two different measurements of one model."""
    return [a / b for i, a in enumerate(values) for j, b in enumerate(values) if i != j]


def ratios(models: list[tuple[float, list[float]]]) -> tuple[list[float], list[float]]:
    """(measured / predicted over every check, check / other check of the same model over every ordered pair)."""
    predicted = [m / p for p, checks in models for m in checks]
    repeat = [r for _, checks in models for r in pairs(checks)]
    return predicted, repeat


def achieved(rows: list[dict], per_budget: int | None = None) -> tuple[int, int, int]:
    """(checks, budget met, met and >= 75 % used) over budget ``rows`` with their ``measured_ms`` checks.

    A budget where nothing fits fails all ``per_budget`` checks (default: the most any budget has).
    """
    if per_budget is None:
        per_budget = max((len(b["measured_ms"]) for b in rows), default=0)
    checks = [(m <= b["budget_ms"], m / b["budget_ms"]) for b in rows for m in b["measured_ms"]]
    return len(rows) * per_budget, sum(ok for ok, _ in checks), sum(ok and u >= LOW for ok, u in checks)


def log_spread(values: list[float]) -> float:
    """Robust standard deviation of log(values): 1.4826 x median |log v - median log v|."""
    logs = [math.log(v) for v in values]
    centre = statistics.median(logs)
    return 1.4826 * statistics.median(abs(x - centre) for x in logs)


def summarise(name: str, predicted: list[float], repeat: list[float], counts: tuple[int, int, int]) -> dict:
    total, met, used = counts
    band_share, band = best_band(predicted)
    repeat_share, repeat_band = best_band(repeat)
    return {
        "run": name,
        "checks": total,
        "met": met,
        "met_and_used_75": used,
        "median_measured_over_predicted": statistics.median(predicted) if predicted else None,
        "log_sd_measured_over_predicted": log_spread(predicted) if predicted else None,
        "log_sd_check_over_check": log_spread(repeat) if repeat else None,
        "band_ceiling": band_share,
        "band_ceiling_band": band,
        "repeatability_ceiling": repeat_share,
        "repeatability_ceiling_band": repeat_band,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="+", type=Path, help="JSON written by latency_prediction.py")
    parser.add_argument("--json", type=Path, help="also write the table here")
    args = parser.parse_args()
    rows, everything = [], {"predicted": [], "repeat": [], "counts": [0, 0, 0]}
    for path in args.results:
        data = json.loads(path.read_text())
        for runtime, result in data["runtimes"].items():
            models = chosen_checks(result)
            predicted, repeat = ratios(models)
            counts = achieved(result["budgets"])
            rows.append(summarise(f"{path.stem.removeprefix('latency_prediction_')} {runtime}", predicted, repeat,
                                  counts))  # fmt: skip
            everything["predicted"] += predicted
            everything["repeat"] += repeat
            everything["counts"] = [a + b for a, b in zip(everything["counts"], counts, strict=True)]
    pooled = summarise("all", everything["predicted"], everything["repeat"], tuple(everything["counts"]))

    def pct(x: float | None) -> str:
        return "-" if x is None or math.isnan(x) else f"{100 * x:.0f}%"

    print(
        f"{'run':<34} {'checks':>6} {'met':>5} {'met, >=75%':>10} {'meas/pred':>9} {'log sd':>6} "
        f"{'band ceiling':>14} {'repeat ceiling':>16}"
    )
    for r in [*rows, pooled]:
        share = r["met_and_used_75"] / max(r["checks"], 1)
        ratio, sd = r["median_measured_over_predicted"], r["log_sd_measured_over_predicted"]
        print(
            f"{r['run']:<34} {r['checks']:>6} {r['met']:>5} {r['met_and_used_75']:>5} {pct(share):>4} "
            f"{ratio if ratio is not None else math.nan:>9.2f} {sd if sd is not None else math.nan:>6.2f} "
            f"{pct(r['band_ceiling']):>5} at {pct(r['band_ceiling_band']):>4} "
            f"{pct(r['repeatability_ceiling']):>6} at {pct(r['repeatability_ceiling_band']):>4}"
        )
    print(
        "\nband ceiling: the most checks in 75-100 % of the budget with the predictions as made and the best single "
        "guard band in hindsight (no gaps between sizes); repeat ceiling: the same with one check of a model "
        "predicting another. log sd: robust standard deviation of log(measured / predicted); the 75-100 % window "
        f"is {math.log(1 / LOW) / 2:.3f} either side of its centre."
    )
    if args.json:
        write_json(args.json, {"runs": rows, "pooled": pooled})
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
