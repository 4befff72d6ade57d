"""The human side of an artifact: ``report.md`` and ``selection.svg`` (accuracy against predicted latency).

The plot is written as plain SVG, so no plotting library is needed on a build machine.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

PLOT = "selection.svg"


def _fmt(value: Any, spec: str = ".3g", unit: str = "") -> str:
    return "—" if value is None else f"{value:{spec}}{unit}"


def _chosen_marks(
    c: Any, measured: tuple[float, str] | None, cx: float, cy: float, mx: float, what: str = "chosen"
) -> list[str]:
    """The built size ringed at (cx, cy) and labelled ``what`` (``chosen``, or ``pinned`` when given with --size),
    and its measured latency as a red cross at x ``mx`` on the same row."""
    parts = [
        f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="8" fill="none" stroke="black" stroke-width="2"/>',
        f'<text x="{cx + 10:.1f}" y="{cy - 8:.1f}">{what}: {html.escape(c.candidate.label)}</text>',
    ]
    if measured is not None:
        my, r = cy, 5
        parts.append(
            f'<path d="M{mx - r:.1f},{my - r:.1f} L{mx + r:.1f},{my + r:.1f} M{mx - r:.1f},{my + r:.1f} '
            f'L{mx + r:.1f},{my - r:.1f}" stroke="#c00" stroke-width="2"/>'
        )
        parts.append(
            f'<text x="{mx + 8:.1f}" y="{my + 14:.1f}" fill="#c00">measured {measured[0]:.3g} ms '
            f"({html.escape(measured[1])})</text>"
        )
    return parts


def selection_svg(
    selection: Any, budget_ms: float, measured: tuple[float, str] | None = None, width: int = 640, height: int = 400
) -> str:
    """Scatter of every candidate (predicted latency, accuracy); Pareto front joined, chosen ringed, budget dashed.

    ``measured`` is the chosen model's measured latency and where it was measured, drawn as a cross.
    """
    preds = [p for p in selection.predictions if p.candidate.accuracy is not None]
    if not preds:  # no accuracy table: plot parameters instead
        preds = list(selection.predictions)
    left, right, top, bottom = 64, 16, 28, 48
    xs = [p.latency_ms for p in preds] + [budget_ms] + ([measured[0]] if measured else [])
    ys = [p.candidate.accuracy if p.candidate.accuracy is not None else p.params / 1e6 for p in preds]
    x0, x1 = 0.0, max(xs) * 1.05
    y0, y1 = min(ys), max(ys)
    pad = (y1 - y0) * 0.1 or 0.05
    y0, y1 = y0 - pad, y1 + pad
    accuracy_axis = preds[0].candidate.accuracy is not None

    def px(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * (width - left - right)

    def py(y: float) -> float:
        return height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom)

    def value(p: Any) -> float:
        return p.candidate.accuracy if accuracy_axis else p.params / 1e6

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
        'font-size="11">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{left}" y="16" font-size="13">{html.escape(selection.profile)}: '
        f"{'direct accuracy' if accuracy_axis else 'parameters (M)'} vs predicted latency</text>",
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" stroke="black"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="black"/>',
    ]
    for i in range(5):  # axis ticks
        xv = x0 + (x1 - x0) * i / 4
        yv = y0 + (y1 - y0) * i / 4
        label = f"{100 * yv:.1f}%" if accuracy_axis else f"{yv:.2f}"
        parts.append(f'<text x="{px(xv):.1f}" y="{height - bottom + 16}" text-anchor="middle">{xv:.3g}</text>')
        parts.append(f'<text x="{left - 6}" y="{py(yv) + 4:.1f}" text-anchor="end">{label}</text>')
    parts.append(
        f'<text x="{(left + width - right) / 2}" y="{height - 10}" text-anchor="middle">predicted latency (ms)</text>'
    )
    bx = px(budget_ms)
    parts.append(
        f'<line x1="{bx:.1f}" y1="{top}" x2="{bx:.1f}" y2="{height - bottom}" stroke="#c00" stroke-dasharray="5,4"/>'
    )
    parts.append(f'<text x="{bx + 4:.1f}" y="{top + 12}" fill="#c00">budget {budget_ms:g} ms</text>')
    front = sorted((p for p in preds if p.pareto), key=lambda p: p.latency_ms)
    if len(front) > 1:
        points = " ".join(f"{px(p.latency_ms):.1f},{py(value(p)):.1f}" for p in front)
        parts.append(f'<polyline points="{points}" fill="none" stroke="#4a7" stroke-width="1.5"/>')
    for p in preds:
        colour = "#2a6" if p.fits else "#999"
        parts.append(
            f'<circle cx="{px(p.latency_ms):.1f}" cy="{py(value(p)):.1f}" r="4" fill="{colour}">'
            f"<title>{html.escape(p.candidate.label)}</title></circle>"
        )
    c = selection.chosen
    what = "pinned" if getattr(selection, "pinned", False) else "chosen"
    parts += _chosen_marks(c, measured, px(c.latency_ms), py(value(c)), px(measured[0]) if measured else 0.0, what)
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _runtime_label(manifest: dict[str, Any]) -> str:
    """``openvino fp32 (openvino 2026.4.1)``, or ``auto → openvino fp32 (...)`` when the build chose the runtime."""
    asked = manifest["profile"]["runtime"]
    compiled = manifest.get("compile")
    if not compiled:
        return f"{asked['backend']} {asked['precision']}"
    shipped = f"{compiled['backend']} {compiled['precision']} ({compiled['tool']})"
    if (asked["backend"], asked["precision"]) != (compiled["backend"], compiled["precision"]):
        return f"{asked['backend']} {asked['precision']} → {shipped}"
    return shipped


def report_markdown(manifest: dict[str, Any]) -> str:
    """A one-page summary of the manifest for humans."""
    prof = manifest["profile"]
    arch = manifest["architecture"]
    ft = manifest["finetune"]
    lat = manifest["latency"]
    stats = manifest.get("benchmark") or {}
    lines = [
        f"# lgdeploy artifact: {prof['name']}",
        "",
        f"- status: **{manifest['status']}**",
        f"- runtime: {_runtime_label(manifest)}",
        f"- learngene: `{Path(manifest['learngene']['path']).name}` ({manifest['learngene']['method']}), "
        f"size {manifest['selection']['size']}"
        f"{' (pinned with --size)' if manifest['selection'].get('pinned') else ''}",
        f"- architecture: depth {arch['depth']}, width {arch['embed_dim']}, {arch['num_heads']} heads, "
        f"patch {arch['patch_size']}, input {arch['img_size']}×{arch['img_size']}, {arch['num_classes']} classes",
        f"- fine-tune: {ft['steps']} steps on {ft['data'].get('name', '?')}; {_finetune_outcome(ft)}",
        *_deferred_lines(manifest.get("deferred")),
        "",
        "## Budgets",
        "",
        "| budget | limit | value | basis | result |",
        "|---|---|---|---|---|",
    ]
    for name, v in manifest["budgets"].items():
        limit = v.get("budget_ms", v.get("budget_mb"))
        value = v.get("value_ms", v.get("value_mb"))
        unit = " ms" if "budget_ms" in v else " MB"
        lines.append(
            f"| {name} | {limit:g}{unit} | {value:.3g}{unit} | {v['basis']} | {'pass' if v['passed'] else '**miss**'} |"
        )
    lines += [f"\n{name} budget missed: {v['note']}" for name, v in manifest["budgets"].items() if v.get("note")]
    lines += [
        "",
        "## Latency",
        "",
        f"- predicted p{lat['percentile']} on the target: {_fmt(lat['predicted_ms'])} ms ({lat['predicted_source']})",
        f"- measured on {manifest['benchmark']['measured_on']}: "
        + (
            f"p50 {stats['p50_ms']:.3g} ms, p90 {stats['p90_ms']:.3g} ms, p99 {stats['p99_ms']:.3g} ms, "
            f"{stats['throughput_ips']:.0f} images/s, {stats['runs']} runs × {stats['rounds']} processes, "
            f"{stats['threads'] or 'default'} threads"
            if stats.get("p50_ms") is not None
            else "not measured"
        ),
        "",
        "## Verification gates",
        "",
        "| reference → candidate | images | max abs diff | top-1 agreement | result |",
        "|---|---|---|---|---|",
    ]
    for c in manifest["checks"]:
        result = "pass" if c["passed"] else "FAIL"
        if "max_abs_diff" in c:
            lines.append(
                f"| {c['reference']} → {c['candidate']} | {c['num_images']} | {c['max_abs_diff']:.2e} | "
                f"{c['top1_agreement']:.1%} | {result} |"
            )
        else:
            lines.append(
                f"| {c['reference']} → {c['candidate']} (accuracy) | {c['num_images']} | — | "
                f"{c['candidate_accuracy']:.1%} vs {c['reference_accuracy']:.1%} | {result} |"
            )
    lines += _runtime_lines(manifest)
    if manifest["skipped"]:
        lines += ["", "## Skipped", ""]
        lines += [f"- {s['stage']}: {s['reason']}" for s in manifest["skipped"]]
    lines += ["", f"![selection]({PLOT})", ""]
    return "\n".join(lines)


def _runtime_lines(manifest: dict[str, Any]) -> list[str]:
    """The contenders side by side (runtime auto-choice, INT8's fp32 twins), INT8's speed gate and where it ran."""
    choice = manifest.get("runtime_choice")
    lines: list[str] = []
    if choice and len(choice["contenders"]) > 1:
        pct = choice["percentile"]
        lines += [
            "",
            "## Runtimes",
            "",
            f"Requested: `{choice['requested']}`. Rule: {choice['rule']}.",
            "",
            f"| contender | role | ran on | p50 | p{pct} | images/s | result |",
            "|---|---|---|---|---|---|---|",
        ]
        for c in choice["contenders"]:
            ran = ", ".join((c.get("execution") or {}).get("executed") or []) or "—"
            if c["name"] == choice["shipped"]:
                result = "**shipped**"
            elif c["rejected"]:
                result = f"rejected: {c['rejected']}"
            else:
                result = "verified, slower"
            lines.append(
                f"| {c['name']} | {c['role']} | {ran} | {_fmt(c.get('p50_ms'), '.3g', ' ms')} | "
                f"{_fmt(c.get('latency_ms'), '.3g', ' ms')} | {_fmt(c.get('throughput_ips'), '.0f')} | {result} |"
            )
        lines += ["", f"Why: {choice['why']}"]
    for c in (choice or {}).get("contenders", []):
        control = c.get("accuracy_control")
        if not control or "drop_points" not in control:
            continue
        layers = control.get("fp32_layers") or []
        lines += [
            "",
            f"## Accuracy-controlled INT8 ({c['name']})",
            "",
            f"- plain INT8 dropped {control['plain_int8']['drop_points']:.2f} points (limit "
            f"{control['max_drop_points']:g}); {control['method']} reached {control['search_drop_points']:.2f} on "
            f"{control['data']} and {control['drop_points']:.2f} on the validation images",
            f"- kept in fp32: {len(layers)} layers" + (f" ({', '.join(layers)})" if layers else ""),
            f"- p{choice['percentile']}: {_fmt(c.get('latency_ms'), '.3g', ' ms')}",
        ]
    speed = manifest.get("int8_speed_gate")
    if speed:
        lines += ["", "## INT8 speed gate", ""]
        for r in speed.get("runtimes", [speed]):
            if r.get("applied"):
                verdict = "pass" if r["passed"] else f"**rejected**: {r.get('reason', '')}"
                lines.append(
                    f"- {r.get('backend', manifest['profile']['runtime']['backend'])}: int8 p{r['percentile']} "
                    f"{r['int8_ms']:.3g} ms vs fp32 {r['fp32_ms']:.3g} ms, {r['speedup']:.2f}x ({r['basis']}): "
                    f"{verdict}"
                )
            else:
                lines.append(f"- not applied: {r['reason']}")
        if speed.get("decision"):
            lines.append(f"- decision: {speed['decision']}")
    execution = manifest.get("execution")
    if execution and execution.get("executed") is not None:
        lines += [
            "",
            f"Ran on: {', '.join(execution['executed'])} (asked for {execution['requested']}; "
            f"reported by `{execution['reported_by']}`).",
        ]
    return lines


def _finetune_outcome(ft: dict[str, Any]) -> str:
    """Top-1 before and after the fine-tune on the same images, and which weights the artifact ships."""
    kept = ft.get("kept")
    if not isinstance(kept, dict):  # a new head (nothing to compare), or an artifact from before the comparison
        return f"top-1 before {_fmt(ft.get('top1_before'), '.2%')}, after {_fmt(ft.get('top1_after'), '.2%')}"
    return (
        f"top-1 on {kept.get('images')} validation images {_fmt(kept.get('recomposed_top1'), '.2%')} recomposed, "
        f"{_fmt(kept.get('finetuned_top1'), '.2%')} fine-tuned; ships the {kept.get('shipped')} weights"
    )


def _deferred_lines(deferred: dict[str, Any] | None) -> list[str]:
    """Where the compile happened (or that it awaits the target)."""
    if not deferred:
        return []
    done = deferred.get("completed")
    if not done:
        return [f"- compile: awaits `lgdeploy compile` on the target ({deferred.get('reason', '?')})"]
    host = done.get("host", {}).get("hostname", "?")
    via = f" over ssh from {done['via']['host']}" if done.get("via") else ""
    return [f"- compile: on the target {host}{via}, {done.get('at', '?')}; device check: {done['device']['how']}"]


def write_report(directory: Path, manifest: dict[str, Any], selection: Any) -> None:
    measured_ms = manifest["latency"]["measured_ms"]
    where = "target" if manifest["profile"]["host"] else "build machine"
    measured = (measured_ms, where) if measured_ms is not None else None
    (directory / PLOT).write_text(selection_svg(selection, manifest["profile"]["budgets"]["latency_ms"], measured))
    (directory / "report.md").write_text(report_markdown(manifest))
