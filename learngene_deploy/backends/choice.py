"""Which compiled model a build ships: the runtime auto-choice and the INT8 speed gate, as pure rules.

A build compiles one or more *contenders* (a runtime at a precision), verifies each against PyTorch and
benchmarks the verified ones side by side in one run (:func:`learngene_deploy.bench.benchmark_many`). Then:

- **auto** (``runtime.backend: auto``, host profiles only): every installed runtime that supports the profile's
  precision is a contender; the fastest verified one at the budget's percentile is shipped.
- **INT8 gated on speed**: an INT8 contender that is not faster than its fp32 twin (the same runtime at fp32,
  measured in the same run) is rejected; when no INT8 contender is left the build fails with one sentence, or,
  with ``int8_fallback="fp32"``, ships the fastest verified fp32 twin and says so.

The rules here take measured numbers and return a decision; compiling, verifying and benchmarking happen in
:func:`learngene_deploy.pipeline.stages.compile_and_bench`. Nothing here imports a runtime.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from learngene_deploy.errors import ConfigError, VerificationError
from learngene_deploy.names import AUTO_BACKEND, BACKEND_CLASSES, INT8_FALLBACKS

NOT_INSTALLED = "not installed here"  # a contender's rejection when its runtime does not import (the reason in notes)
# ONNX Runtime's CPU provider has no fp16 kernels worth shipping (it would upcast); see profile._ORT_FP16_PROVIDERS.
_HOST_UNSUPPORTED = {("onnxruntime", "fp16")}


def auto_backends(precision: str, accelerator: str = "cpu") -> list[str]:
    """Runtimes ``auto`` considers for ``precision`` on the build machine's ``accelerator`` (the profile's
    ``device.accelerator``), installed or not, in registry order: TensorRT is never one on a CPU."""
    from learngene_deploy.backends import get_backend

    names = []
    for name in BACKEND_CLASSES:
        backend = get_backend(name)
        runs_here = accelerator in backend.accelerators
        if runs_here and precision in backend.precisions and (name, precision) not in _HOST_UNSUPPORTED:
            names.append(name)
    return names


def installed_auto_backends(profile: Any) -> list[str]:
    """:func:`auto_backends` for ``profile``'s precision and accelerator whose runtime imports on this machine."""
    from learngene_deploy._imports import is_available
    from learngene_deploy.backends import get_backend

    planned = auto_backends(profile.runtime.precision, profile.device.accelerator)
    return [b for b in planned if is_available(get_backend(b).module)]


@dataclass(frozen=True)
class Planned:
    """One model to compile: a runtime at a precision, and why it is built."""

    backend: str
    precision: str
    role: str  # "candidate" (may be shipped) or "fp32 twin" (INT8's speed reference; shipped only as a fallback)

    @property
    def name(self) -> str:
        return f"{self.backend}-{self.precision}"


def plan(backend: str, precision: str, *, host: bool, accelerator: str = "cpu") -> list[Planned]:
    """The contenders of a build: every ``auto`` runtime for ``accelerator`` (or the one named), plus fp32 twins for
    INT8 on the host.

    Off the host, INT8's speed cannot be measured here; the speed gate then uses the target's latency tables
    (:func:`table_speed_gate`).
    """
    backends = auto_backends(precision, accelerator) if backend == AUTO_BACKEND else [backend]
    planned = [Planned(b, precision, "candidate") for b in backends]
    if precision == "int8" and host:
        planned += [Planned(b, "fp32", "fp32 twin") for b in backends]
    return planned


def check_fallback(int8_fallback: str | None) -> None:
    if int8_fallback is not None and int8_fallback not in INT8_FALLBACKS:
        msg = f"--int8-fallback {int8_fallback!r} is not one of: {', '.join(INT8_FALLBACKS)}."
        raise ConfigError(msg)


@dataclass
class Contender:
    """A planned model and what happened to it: its checks, where it ran, its benchmark, or why it was rejected."""

    planned: Planned
    tool: str | None = None
    checks: list[dict[str, Any]] = field(default_factory=list)
    execution: dict[str, Any] | None = None
    stats: dict[str, Any] | None = None
    rejected: str | None = None  # one sentence: not installed, failed a gate, or slower than its fp32 twin
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # JSON-ready additions (accuracy-controlled INT8)
    extra_objects: dict[str, Any] = field(default_factory=dict)  # not recorded: compiled, on_host, accuracy result

    @property
    def compiled(self) -> Any:
        return self.extra_objects.get("compiled")

    @property
    def name(self) -> str:
        return self.planned.name

    @property
    def verified(self) -> bool:
        return self.rejected is None

    def latency(self, percentile: int) -> float | None:
        return None if self.stats is None else self.stats.get(f"p{percentile}_ms")

    def to_dict(self, percentile: int) -> dict[str, Any]:
        stats = self.stats or {}
        return {
            "name": self.name,
            "backend": self.planned.backend,
            "precision": self.planned.precision,
            "role": self.planned.role,
            "tool": self.tool,
            "verified": self.verified,
            "rejected": self.rejected,
            "execution": self.execution,
            "checks": self.checks,
            "latency_ms": self.latency(percentile),
            **{k: stats.get(k) for k in ("p50_ms", "p90_ms", "p99_ms", "throughput_ips", "model_rss_mb")},
            "round_p50_ms": stats.get("round_p50_ms"),
            "notes": self.notes,
            **self.extra,
        }


@dataclass(frozen=True)
class Choice:
    """The shipped contender and the reasons, as the manifest records them."""

    winner: Contender
    why: str
    fell_back: bool  # INT8 was rejected on speed and the fp32 twin is shipped (--int8-fallback fp32)
    speed_gate: tuple[dict[str, Any], ...] = ()


def _ms(value: float) -> str:
    return f"{value:.3g} ms"


def int8_speed_gate(contenders: list[Contender], percentile: int) -> list[dict[str, Any]]:
    """Reject every verified INT8 contender not faster than its verified fp32 twin; returns one record per INT8 one.

    Both were measured in the same run (interleaved rounds in fresh processes), so the comparison is side by side.
    """
    key = f"p{percentile}"
    twins = {c.planned.backend: c for c in contenders if c.planned.role == "fp32 twin"}
    records = []
    for c in contenders:
        if c.planned.precision != "int8" or not c.verified:
            continue
        twin = twins.get(c.planned.backend)
        int8_ms = c.latency(percentile)
        if twin is None or not twin.verified or twin.latency(percentile) is None or int8_ms is None:
            why = "its fp32 twin was not measured" if twin is None else f"its fp32 twin was rejected ({twin.rejected})"
            records.append({"backend": c.planned.backend, "applied": False, "passed": True, "reason": why})
            continue
        fp32_ms = twin.latency(percentile)
        passed = int8_ms < fp32_ms
        record = {
            "backend": c.planned.backend,
            "applied": True,
            "basis": "measured side by side on this machine (one run, interleaved fresh processes)",
            "percentile": percentile,
            "int8_ms": int8_ms,
            "fp32_ms": fp32_ms,
            "speedup": fp32_ms / int8_ms,
            "passed": passed,
        }
        if not passed:
            c.rejected = (
                f"{c.planned.backend} int8 is not faster than its fp32 twin: {key} {_ms(int8_ms)} against "
                f"{_ms(fp32_ms)}, measured side by side in one run"
            )
            record["reason"] = c.rejected
        records.append(record)
    return records


def choose(contenders: list[Contender], percentile: int, precision: str, int8_fallback: str | None = None) -> Choice:
    """Ship the fastest verified contender of the profile's precision at the budget's percentile.

    Raises:
        VerificationError: no contender of the precision was verified (the first one's reason), or INT8 was not
            faster than fp32 on any runtime and no fallback was allowed.
    """
    check_fallback(int8_fallback)
    gate = int8_speed_gate(contenders, percentile) if precision == "int8" else []
    fell_back = False
    pool = [c for c in contenders if c.planned.precision == precision and c.verified and c.stats]
    if not pool and precision == "int8" and any(r.get("applied") and not r["passed"] for r in gate):
        slower = "; ".join(r["reason"] for r in gate if r.get("applied") and not r["passed"])
        twins = [c for c in contenders if c.planned.role == "fp32 twin" and c.verified and c.stats]
        if int8_fallback != "fp32" or not twins:
            msg = (
                f"INT8 is rejected: {slower}; pass --int8-fallback fp32 to ship the fp32 model instead, or try another "
                "runtime (--backend openvino or auto)."
            )
            raise VerificationError(msg)
        pool, fell_back = twins, True
    if not pool:
        first = next((c for c in contenders if c.planned.role == "candidate"), None)
        reasons = "; ".join(f"{c.name}: {c.rejected}" for c in contenders if c.rejected) or "nothing was measured"
        msg = (
            first.rejected
            if first is not None and first.rejected and len(contenders) == 1
            else f"no runtime produced a verified {precision} model ({reasons})."
        )
        raise VerificationError(msg if msg.endswith(".") else msg + ".")
    winner = min(pool, key=lambda c: c.latency(percentile) or float("inf"))
    best = winner.latency(percentile) or 0.0
    others = [
        f"{c.name} {_ms(c.latency(percentile) or 0.0)} ({(c.latency(percentile) or 0.0) / best:.2f}x slower)"
        for c in sorted(pool, key=lambda c: c.latency(percentile) or 0.0)
        if c is not winner
    ]
    why = f"{winner.name}: p{percentile} {_ms(best)}"
    why += (
        f", the fastest of {len(pool)} verified contenders measured side by side ({'; '.join(others)})"
        if others
        else f", the only verified {winner.planned.precision} contender left"
    )
    rejected = [
        f"{c.name} ({c.rejected})"
        for c in contenders
        if c.rejected and c.rejected != NOT_INSTALLED and c.planned.role == "candidate"
    ]
    absent = [c.planned.backend for c in contenders if c.rejected == NOT_INSTALLED and c.planned.role == "candidate"]
    if rejected:
        why += f"; rejected: {'; '.join(rejected)}"
    if absent:
        why += f"; not installed here: {', '.join(absent)}"
    if fell_back:
        why = f"INT8 was not faster than fp32 on any runtime, so --int8-fallback fp32 ships {why}"
    return Choice(winner, why + ".", fell_back, tuple(gate))


def table_speed_gate(profile: Any, arch: Any) -> dict[str, Any]:
    """INT8's speed gate for a target that is not this machine: the target's calibrated tables, when it has both.

    Returns:
        ``{"applied": True, "int8_ms", "fp32_ms", "passed", ...}`` when the profile's latency tables hold the
        runtime at both int8 and fp32; otherwise ``{"applied": False, "reason": ...}`` saying why it was not applied.
    """
    from learngene_deploy.sizing.latency import TablePredictor, load_tables

    rt, b = profile.runtime, profile.budgets
    path = profile.latency_table_path
    if path is None:
        return {
            "applied": False,
            "passed": True,
            "reason": (
                f"profile '{profile.name}' has no calibrated latency table, so INT8's speed against fp32 on the target "
                f"is unknown; run `lgdeploy profiles calibrate {profile.name} --with-fp32 --out FILE` on the device"
            ),
        }
    tables = {(t.backend, t.precision): t for t in load_tables(path) if t.batch == b.batch and t.threads == rt.threads}
    int8, fp32 = tables.get((rt.backend, "int8")), tables.get((rt.backend, "fp32"))
    if int8 is None or fp32 is None:
        have = ", ".join(f"{k[0]} {k[1]}" for k in sorted(tables)) or "none at this batch and thread count"
        return {
            "applied": False,
            "passed": True,
            "reason": (
                f"the latency table {path.name} does not hold {rt.backend} at both int8 and fp32 (it has: {have}); "
                f"re-calibrate on the device with `lgdeploy profiles calibrate {profile.name} --with-fp32 --out FILE`"
            ),
        }
    int8_ms, int8_src = TablePredictor(int8, b.percentile).predict(arch)
    fp32_ms, fp32_src = TablePredictor(fp32, b.percentile).predict(arch)
    return {
        "applied": True,
        "basis": f"the target's calibrated latency table {path.name} ({int8_src} int8, {fp32_src} fp32)",
        "percentile": b.percentile,
        "int8_ms": int8_ms,
        "fp32_ms": fp32_ms,
        "speedup": fp32_ms / int8_ms,
        "passed": int8_ms < fp32_ms,
        **(
            {}
            if int8_ms < fp32_ms
            else {
                "reason": (
                    f"{rt.backend} int8 is predicted no faster than fp32 on {profile.name}: p{b.percentile} "
                    f"{_ms(int8_ms)} against {_ms(fp32_ms)} from the device's calibrated tables"
                )
            }
        ),
    }
