"""Export, simplify, compile and benchmark one small ViT on every backend x precision available here.

Prints a side-by-side table (export time, nodes before/after simplification, compile time, latency
p50/p90, file size, max abs diff and top-1 agreement vs PyTorch) and writes it as JSON.

    python -m benchmarks.backends                          # c32: img 32, patch 4, dim 192, depth 6, 3 heads
    python -m benchmarks.backends --img 224 --patch 16 --depth 12 --dim 192   # ViT-Ti/16 shape

Weights are random (seed 0); the comparison images are real (scikit-learn digits upsampled to the input
size). Latency is batch 1, best of ``--rounds`` fresh processes per variant (this 2-core VM's 2-thread
latency is bimodal, docs/platform-notes), PyTorch eager measured the same way as the baseline. No
numbers here are assertions: read them side by side.

The speed comparison on trained models (accuracy, speed-ups, share of the matmul peak, the issue's targets) is
``python -m benchmarks.deploy_speed``; this script keeps what that one does not measure: both exporters and both
simplifiers, three more variants (OpenVINO fp16 IR and bf16 execution, TensorRT fp16) and any model shape. Each
variant is compiled, run and benchmarked by ``benchmarks.deploy_speed.measure_variant``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from benchmarks._common import RESULTS, arguments, host_facts, write_json
from benchmarks.deploy_speed import Variant, measure_variant, round_p50s
from learngene_deploy.bench import benchmark_torch
from learngene_deploy.export import simplify, torch2onnx
from learngene_deploy.gates import Tolerance, compare, torch_logits
from learngene_deploy.models.vit import ArchSpec, build_vit

VARIANTS = [
    Variant("onnxruntime fp32", "onnxruntime", "fp32"),
    Variant("onnxruntime int8 (dynamic)", "onnxruntime", "int8"),
    Variant("openvino fp32", "openvino", "fp32"),
    Variant("openvino fp16 IR (f32 exec)", "openvino", "fp16"),
    Variant("openvino int8 (NNCF)", "openvino", "int8"),
    Variant("openvino fp32 IR, bf16 exec", "openvino", "fp32", {"inference_precision": "bf16"}),
    Variant("tensorrt fp16", "tensorrt", "fp16"),
]
MEASURE_ONLY = Tolerance(max_abs=None, top1_agreement=None)


def digit_images(n: int, size: int, offset: int = 0) -> np.ndarray:
    """Real 8x8 digit scans, nearest-upsampled to size x size, 3 channels, roughly zero-mean."""
    from sklearn.datasets import load_digits

    digits = load_digits().images[offset : offset + n].astype(np.float32) / 16.0
    big = torch.nn.functional.interpolate(torch.from_numpy(digits)[:, None], size=(size, size), mode="nearest")
    return np.repeat(((big.numpy() - 0.3) / 0.4), 3, axis=1).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--img", type=int, default=32)
    parser.add_argument("--patch", type=int, default=4)
    parser.add_argument("--dim", type=int, default=192)
    parser.add_argument("--depth", type=int, default=6)
    parser.add_argument("--heads", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--min-runs", type=int, default=50)
    parser.add_argument("--min-time", type=float, default=1.0)
    parser.add_argument("--images", type=int, default=128, help="comparison images (and as many calibration images)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/lgdeploy-bench-backends"))
    parser.add_argument("--out", type=Path, default=RESULTS / "backends.json")
    args = parser.parse_args()

    arch = ArchSpec(
        img_size=args.img,
        patch_size=args.patch,
        in_chans=3,
        num_classes=10,
        embed_dim=args.dim,
        depth=args.depth,
        num_heads=args.heads,
    )
    torch.manual_seed(0)
    model = build_vit(arch).eval()
    images = digit_images(args.images, args.img)
    calibration = digit_images(args.images, args.img, offset=1000)
    reference = torch_logits(model)(images)
    timing = {"threads": args.threads, "min_runs": args.min_runs, "min_time_s": args.min_time, "rounds": args.rounds}
    eager = benchmark_torch(model, arch, **timing).to_dict()
    shape = (1, 3, args.img, args.img)

    export = {}
    for exporter in ("dynamo", "legacy"):
        art = torch2onnx(model, input_shape=shape, out_path=args.work / f"{exporter}.onnx", exporter=exporter)
        export[exporter] = {"seconds": art.seconds, "nodes": art.num_nodes, "mb": art.bytes / 1e6, "simplified": {}}
        for tool in ("onnxsim", "onnxslim"):
            simple = simplify(art, args.work / f"{exporter}.{tool}.onnx", tool=tool)
            export[exporter]["simplified"][tool] = {"seconds": simple.seconds, "nodes": simple.num_nodes}
    onnx_path = args.work / "dynamo.onnxsim.onnx"

    rows = []
    for variant in VARIANTS:
        label = variant.label
        out = args.work / label.replace(" ", "_").replace(",", "").replace("(", "").replace(")", "")
        measured = measure_variant(variant, onnx_path, out, images, calibration, **timing)
        if isinstance(measured, str):
            rows.append({"variant": label, "skipped": measured})
            continue
        compiled, logits, stats = measured
        check = compare(reference, logits, reference="pytorch", candidate=label, tolerance=MEASURE_ONLY)
        rows.append(
            {
                "variant": label,
                "compile_s": compiled.seconds,
                "file_mb": compiled.bytes / 1e6,
                "max_abs_diff": check.max_abs_diff,
                "top1_agreement": check.top1_agreement,
                "latency": stats,
            }
        )

    print(
        f"model {arch.name}: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M params, batch 1, "
        f"{args.threads} threads, best of {args.rounds} processes, {args.images} digit images"
    )
    for exporter, e in export.items():
        sim = ", ".join(f"{t} {v['nodes']} nodes in {v['seconds']:.2f} s" for t, v in e["simplified"].items())
        print(f"export {exporter:6s} {e['seconds']:5.2f} s, {e['nodes']} nodes, {e['mb']:.2f} MB -> {sim}")
    print(f"pytorch eager: p50 {eager['p50_ms']:.2f} ms, p90 {eager['p90_ms']:.2f} ms, rounds p50 {round_p50s(eager)}")
    header = f"{'variant':30s} {'compile s':>9s} {'MB':>6s} {'p50 ms':>7s} {'p90 ms':>7s} {'rounds p50':>20s} "
    print(header + f"{'max|diff|':>9s} {'top-1':>6s}")
    for r in rows:
        if "skipped" in r:
            print(f"{r['variant']:30s} skipped: {r['skipped'].split(';')[0]}")
            continue
        lat = r["latency"]
        print(
            f"{r['variant']:30s} {r['compile_s']:9.2f} {r['file_mb']:6.2f} {lat['p50_ms']:7.2f} {lat['p90_ms']:7.2f} "
            f"{round_p50s(lat):>20s} {r['max_abs_diff']:9.2e} {r['top1_agreement']:6.1%}"
        )
    result = {
        "arch": arch.to_dict(),
        "host": host_facts("machine", "processor", "python"),
        "settings": arguments(args),
        "export": export,
        "pytorch_eager": eager,
        "variants": rows,
    }
    write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
