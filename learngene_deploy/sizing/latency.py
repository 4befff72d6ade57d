"""Latency prediction: a roofline estimate from the profile's device facts, or a table measured on the device.

Roofline (no table): ``t = max(FLOPs / (peak·efficiency), bytes_moved / (bandwidth·efficiency))``, scaled by a
tail factor for the budget's percentile (p90 ≈ 1.1 × typical, p99 ≈ 1.3 ×). The efficiency is the profile's
per-device factor; it is a guess until the device is calibrated.

Measured table (``lgdeploy profiles calibrate``): latencies of a spread of sizes timed on the device with the
profile's own runtime, plus a per-device model fitted to them,

    t = c0 + c_blk · blocks + c_lin · linear FLOPs + c_att · attention FLOPs + c_act · activation traffic,

with non-negative coefficients fitted by relative least squares, so every term has a physical reading
(fixed overhead per inference, dispatch overhead per block — it dominates sub-millisecond models —,
matmul time, attention time, memory-bound ops). A size that was measured uses its measurement;
any other size uses the fit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from learngene_deploy._fs import atomic_path
from learngene_deploy.errors import ConfigError, ProfileError
from learngene_deploy.models.vit import ArchSpec
from learngene_deploy.sizing import cost as costs

TABLE_FORMAT = "lgdeploy-latency-table"
BUNDLE_FORMAT = "lgdeploy-latency-tables"  # several tables of one device: runtimes (for auto), int8 and its fp32 twin
TABLE_VERSION = 1
TAIL_FACTOR = {50: 1.0, 90: 1.1, 95: 1.15, 99: 1.3}
FEATURES = ("const", "blocks", "linear_gflop", "attention_gflop", "activation_melem")


class LatencyPredictor(Protocol):
    kind: str
    margin: float  # relative guard band: a candidate fits when predicted x (1 + margin) <= the budget
    margin_confidence: float | None  # the chance of meeting the budget the margin was set for, when known

    def predict(self, arch: ArchSpec) -> tuple[float, str]:
        """(latency in ms at the profile's percentile, where the number comes from)."""
        ...


def features(arch: ArchSpec, batch: int) -> list[float]:
    """Regressors of the per-device latency model (see module docstring)."""
    linear, attention = costs.flops(arch, batch)
    return [1.0, float(arch.depth), linear / 1e9, attention / 1e9, costs.activation_traffic_elements(arch, batch) / 1e6]


@dataclass(frozen=True)
class RooflinePredictor:
    """Latency from peak compute, memory bandwidth and the device's efficiency factor."""

    peak_gflops: float
    bandwidth_gbs: float
    efficiency: float
    batch: int
    precision: str
    backend: str
    percentile: int
    kind: str = "roofline"
    margin: float = 0.0  # the roofline's error is not known per device; calibrate to get a measured margin
    margin_confidence: float | None = None

    @classmethod
    def for_profile(cls, profile: Any) -> RooflinePredictor:
        peak = profile.device.peak_gflops.at(profile.runtime.precision)
        return cls(
            peak_gflops=peak,
            bandwidth_gbs=profile.device.memory_bandwidth_gbs,
            efficiency=profile.device.efficiency,
            batch=profile.budgets.batch,
            precision=profile.runtime.precision,
            backend=profile.runtime.backend,
            percentile=profile.budgets.percentile,
        )

    def predict(self, arch: ArchSpec) -> tuple[float, str]:
        c = costs.estimate(arch, batch=self.batch, precision=self.precision, backend=self.backend)
        compute_s = c.flops / (self.peak_gflops * 1e9 * self.efficiency)
        memory_s = c.bytes_moved / (self.bandwidth_gbs * 1e9 * self.efficiency)
        return 1e3 * max(compute_s, memory_s) * TAIL_FACTOR[self.percentile], "roofline"


@dataclass(frozen=True)
class LatencyTable:
    """Latencies measured on a device, and the per-device model fitted to them."""

    profile: str
    backend: str
    precision: str
    threads: int | None
    batch: int
    percentile: int
    points: list[dict[str, Any]]  # {"arch": ArchSpec dict, "p50_ms", "p90_ms", "p95_ms", "p99_ms", "mean_ms"}
    coef: dict[str, float]  # fitted coefficients, keyed by FEATURES
    host: dict[str, Any] = field(default_factory=dict)  # machine the table was measured on
    created: str = ""
    fit_error: dict[str, float] = field(default_factory=dict)  # relative error of the fit on its own points
    margin: float = 0.0  # relative guard band kept below latency budgets (calibrate.guard_band)
    margin_confidence: float | None = None  # the chance of meeting a budget that the margin was set for
    drift: float | None = None  # speed change of the machine between calibration passes (calibrate.pass_drift)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": TABLE_FORMAT,
            "version": TABLE_VERSION,
            "profile": self.profile,
            "backend": self.backend,
            "precision": self.precision,
            "threads": self.threads,
            "batch": self.batch,
            "percentile": self.percentile,
            "created": self.created,
            "host": self.host,
            "coef": self.coef,
            "fit_error": self.fit_error,
            "margin": self.margin,
            "margin_confidence": self.margin_confidence,
            "drift": self.drift,
            "points": self.points,
        }

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> LatencyTable:
        """Read a table file (the first table of a bundle written by :func:`save_tables`)."""
        return load_tables(path)[0]

    @classmethod
    def from_dict(cls, data: Any, path: Path) -> LatencyTable:
        """Validate one table's parsed JSON: every coefficient and latency finite and non-negative, sizes bounded.

        Raises:
            ProfileError: one sentence naming the file (``path``) and the field.
        """
        if not isinstance(data, dict) or data.get("format") != TABLE_FORMAT:
            msg = (
                f"{path} is not an lgdeploy latency table; "
                "write one with `lgdeploy profiles calibrate NAME --out FILE`."
            )
            raise ProfileError(msg)
        if data.get("version") != TABLE_VERSION:
            msg = f"{path} has table version {data.get('version')}, this lgdeploy reads version {TABLE_VERSION}."
            raise ProfileError(msg)
        try:
            table = cls(
                profile=str(data["profile"]),
                backend=str(data["backend"]),
                precision=str(data["precision"]),
                threads=data["threads"],
                batch=_int(data["batch"], "batch", 1, 4096),
                percentile=_int(data["percentile"], "percentile", 50, 99),
                points=[_point(p, f"points[{i}]") for i, p in enumerate(_list(data["points"], "points"))],
                coef={k: _number(data["coef"][k], f"coef.{k}") for k in FEATURES},
                host=dict(data.get("host") or {}),
                created=str(data.get("created", "")),
                fit_error={k: _number(v, f"fit_error.{k}") for k, v in dict(data.get("fit_error") or {}).items()},
                margin=_number(data.get("margin", 0.0), "margin", high=0.99),
                margin_confidence=data.get("margin_confidence"),
                drift=data.get("drift"),
            )
            if table.percentile not in TAIL_FACTOR:
                raise ValueError(f"'percentile' is {table.percentile}, not one of {', '.join(map(str, TAIL_FACTOR))}")
            if table.threads is not None:
                _int(table.threads, "threads", 1, 1024)
        except (KeyError, TypeError, ValueError) as e:
            msg = (
                f"latency table {path} is missing or has a malformed field ({e}); re-run `lgdeploy profiles calibrate`."
            )
            raise ProfileError(msg) from e
        return table


MAX_TABLE_BYTES = 16 << 20
_POINT_KEYS = ("p50_ms", "p90_ms", "p95_ms", "p99_ms", "mean_ms")


def _number(value: Any, key: str, *, high: float = float("inf")) -> float:
    """A finite number in [0, high]: NaN or a negative coefficient would make every size fit its budget."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"'{key}' is {value!r}, not a number")
    if not 0 <= value <= high or value != value or value == float("inf"):
        raise ValueError(f"'{key}' is {value!r}, not a finite number between 0 and {high:g}")
    return float(value)


def _int(value: Any, key: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"'{key}' is {value!r}, not an integer from {low} to {high}")
    return value


def _list(value: Any, key: str, limit: int = 10_000) -> list[Any]:
    if not isinstance(value, list) or len(value) > limit:
        raise ValueError(f"'{key}' must be a list of at most {limit} items")
    return value


def _point(point: Any, key: str) -> dict[str, Any]:
    """One measured size: its architecture (a valid ArchSpec) and non-negative finite latencies."""
    if not isinstance(point, dict) or not isinstance(point.get("arch"), dict):
        raise ValueError(f"'{key}' must be a mapping with an 'arch' mapping")
    try:
        ArchSpec.from_dict(point["arch"])
    except (TypeError, ValueError, ConfigError) as e:
        raise ValueError(f"'{key}.arch' is not an architecture ({e})") from e
    for k in _POINT_KEYS:
        if k in point:
            _number(point[k], f"{key}.{k}")
    return point


def load_tables(path: str | Path) -> list[LatencyTable]:
    """Every table in a file: one table, or a bundle of several runtimes/precisions (:func:`save_tables`)."""
    from learngene_deploy._fs import read_regular

    path = Path(path)
    try:
        data = json.loads(read_regular(path, limit=MAX_TABLE_BYTES).decode("utf-8"))
    except (OSError, ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        why = "nested too deeply" if isinstance(e, RecursionError) else getattr(e, "strerror", None) or e
        msg = f"latency table {path} cannot be read ({why}); re-run `lgdeploy profiles calibrate` to rewrite it."
        raise ProfileError(msg) from e
    if isinstance(data, dict) and data.get("format") == BUNDLE_FORMAT:
        tables = data.get("tables")
        if not isinstance(tables, list) or not tables or len(tables) > 64:
            msg = (
                f"{path} is a latency-table bundle without tables; re-run `lgdeploy profiles calibrate` to rewrite it."
            )
            raise ProfileError(msg)
        return [LatencyTable.from_dict(t, path) for t in tables]
    return [LatencyTable.from_dict(data, path)]


def save_tables(tables: list[LatencyTable], path: str | Path) -> Path:
    """Write one table as a plain table file, several (runtimes or precisions of one device) as a bundle."""
    if len(tables) == 1:
        return tables[0].save(path)
    path = Path(path)
    bundle = {"format": BUNDLE_FORMAT, "version": TABLE_VERSION, "tables": [t.to_dict() for t in tables]}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(bundle, indent=2) + "\n")
    return path


def fit(points: list[tuple[ArchSpec, float]], batch: int) -> tuple[dict[str, float], dict[str, float]]:
    """Fit the per-device model to measured (arch, ms) points.

    Minimises relative error (rows weighted by 1/t) with non-negative coefficients.

    Returns:
        (coefficients keyed by FEATURES, {"median_rel", "max_rel"} on the points themselves, plus
        {"loo_median_rel", "loo_max_rel"} leaving each point out in turn when there are more points than
        coefficients).
    """
    import numpy as np
    from scipy.optimize import nnls

    if len(points) < len(FEATURES):
        msg = f"a latency fit needs at least {len(FEATURES)} measured sizes, got {len(points)}; measure more sizes."
        raise ProfileError(msg)
    x = np.array([features(a, batch) for a, _ in points])
    y = np.array([ms for _, ms in points])

    def solve(rows: Any) -> Any:
        scale = x[rows].max(axis=0)  # condition the columns
        scale[scale == 0] = 1.0
        w = 1.0 / y[rows]
        sol, _ = nnls((x[rows] / scale) * w[:, None], y[rows] * w)
        return sol / scale

    everything = np.arange(len(y))
    coef = solve(everything)
    rel = np.abs(x @ coef - y) / y
    error = {"median_rel": float(np.median(rel)), "max_rel": float(rel.max())}
    if len(y) > len(FEATURES):  # leave-one-out: how far the fit misses a size it has not seen (noise included)
        loo = [abs(x[i] @ solve(everything[everything != i]) - y[i]) / y[i] for i in range(len(y))]
        error |= {"loo_median_rel": float(np.median(loo)), "loo_max_rel": float(np.max(loo))}
    return {k: float(c) for k, c in zip(FEATURES, coef, strict=True)}, error


@dataclass(frozen=True)
class TablePredictor:
    """Latency from a measured table: the measurement where the size was measured, else the fitted model."""

    table: LatencyTable
    percentile: int
    kind: str = "table"

    @property
    def margin(self) -> float:
        return self.table.margin

    @property
    def margin_confidence(self) -> float | None:
        return self.table.margin_confidence

    def predict(self, arch: ArchSpec) -> tuple[float, str]:
        key = f"p{self.percentile}_ms"
        for point in self.table.points:
            if point["arch"] == arch.to_dict() and key in point:
                return float(point[key]), "measured"
        value = sum(self.table.coef[k] * f for k, f in zip(FEATURES, features(arch, self.table.batch), strict=True))
        # The fit is at the table's percentile; rescale to the requested one with the same tail factors.
        value *= TAIL_FACTOR[self.percentile] / TAIL_FACTOR[self.table.percentile]
        return float(value), "fit"


@dataclass(frozen=True)
class FastestPredictor:
    """``runtime.backend: auto``: each size predicted by the fastest runtime's calibrated table.

    The guard band is the widest of the tables' (a size may be predicted by any of them).
    """

    predictors: tuple[TablePredictor, ...]
    kind: str = "table"

    @property
    def margin(self) -> float:
        return max(p.margin for p in self.predictors)

    @property
    def margin_confidence(self) -> float | None:
        known = [p.margin_confidence for p in self.predictors if p.margin_confidence is not None]
        return min(known) if known else None

    @property
    def runtimes(self) -> tuple[str, ...]:
        return tuple(p.table.backend for p in self.predictors)

    @property
    def table(self) -> LatencyTable:
        return self.predictors[0].table

    def _best(self, arch: ArchSpec) -> tuple[float, str, str]:
        return min((*p.predict(arch), p.table.backend) for p in self.predictors)

    def predict(self, arch: ArchSpec) -> tuple[float, str]:
        ms, source, _ = self._best(arch)
        return ms, source

    def runtime_for(self, arch: ArchSpec) -> str:
        """The runtime whose table predicts ``arch`` fastest."""
        return self._best(arch)[2]


def predictor_for(profile: Any) -> LatencyPredictor:
    """The measured table when the profile references one (and it matches), else the roofline.

    With ``runtime.backend: auto`` every table in the file at the profile's precision, batch and threads counts
    (one per runtime, as ``lgdeploy profiles calibrate`` writes for an auto profile) and each size is predicted by
    the fastest of them.
    """
    from learngene_deploy.names import AUTO_BACKEND

    path = profile.latency_table_path
    if path is None:
        return RooflinePredictor.for_profile(profile)
    tables = load_tables(path)
    rt = profile.runtime
    auto = rt.backend == AUTO_BACKEND

    def mismatch(table: LatencyTable) -> list[str]:
        return [
            f"{key} {mine!r} vs {theirs!r}"
            for key, mine, theirs in (
                ("backend", rt.backend, table.backend),
                ("precision", rt.precision, table.precision),
                ("batch", profile.budgets.batch, table.batch),
                ("threads", rt.threads, table.threads),
            )
            if mine != theirs and not (auto and key == "backend")
        ]

    matching = [t for t in tables if not mismatch(t)]
    if not matching:
        msg = (
            f"latency table {path} was measured for different settings ({'; '.join(mismatch(tables[0]))}); "
            f"re-run `lgdeploy profiles calibrate {profile.name}` with this profile."
        )
        raise ProfileError(msg)
    percentile = profile.budgets.percentile
    if not auto:
        return TablePredictor(table=matching[0], percentile=percentile)
    return FastestPredictor(tuple(TablePredictor(table=t, percentile=percentile) for t in matching))


MACHINE_KEYS = ("system", "machine", "cpu", "logical_cpus")  # host facts that change latency (not the hostname)


def other_machine(recorded: dict[str, Any]) -> str | None:
    """How the machine a table was measured on (its ``host`` facts) differs from this one; ``None`` if it does not.

    Facts the table did not record are not compared.
    """
    from learngene_deploy.facts import host_facts

    here = host_facts()
    diffs = [
        f"{k} {recorded[k]!r} there, {here.get(k)!r} here"
        for k in MACHINE_KEYS
        if k in recorded and recorded[k] != here.get(k)
    ]
    return "; ".join(diffs) or None
