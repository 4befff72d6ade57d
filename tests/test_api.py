"""The Python API as a user calls it: load, recompose, select, build, open an artifact, verify, predict, bench."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import learngene_deploy as lgd
from learngene_deploy.errors import ArtifactError, ConfigError, LearngeneError, ProfileError, SelectionError
from learngene_deploy.models.vit import ArchSpec

ROOT = Path(__file__).resolve().parents[1]
TINY = ArchSpec(img_size=16, patch_size=4, in_chans=3, num_classes=10, embed_dim=32, depth=3, num_heads=2)


def test_all_names_resolve_and_import_stays_cheap() -> None:
    assert sorted(lgd.__all__) == sorted(
        ["PRESETS", "Artifact", "DeviceProfile", "Learngene", "Preprocessing", "Preset", "Selection", "__version__",
         "build", "list_profiles", "load_learngene", "load_profile", "select"]
    )  # fmt: skip
    for name in lgd.__all__:
        assert getattr(lgd, name) is not None
        if name != "__version__":
            assert getattr(lgd, name).__doc__, f"{name} has no docstring"
    code = "import sys, learngene_deploy.api; print(sorted({'torch', 'onnx', 'timm'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_load_learngene_sizes_accuracy_recompose() -> None:
    lg = lgd.load_learngene("lets-fashion-mnist")
    assert lg.method == "lets" and {"depth": 8, "width": 96} in lg.sizes and len(lg.sizes) == 32
    assert 0.5 < lg.accuracy(depth=8, width=96) <= 1 and lg.accuracy(depth=99, width=1) is None
    assert lg.classes[0] == "T-shirt/top" and lg.preprocessing.img_size == 28
    model = lg.recompose(depth=2, width=48)
    from timm.models.vision_transformer import VisionTransformer

    assert isinstance(model, VisionTransformer) and len(model.blocks) == 2 and model.embed_dim == 48
    assert model(torch.zeros(1, 3, 28, 28)).shape == (1, 10)
    with pytest.raises(ConfigError, match="depth 99 is out of range"):
        lg.recompose(depth=99, width=48)
    with pytest.raises(LearngeneError, match="does not exist"):
        lgd.load_learngene("no/such/file.safetensors")


def test_select_chooses_or_evaluates_a_given_size() -> None:
    sel = lgd.select("raspberry-pi-5")
    assert sel.profile == "raspberry-pi-5" and sel.chosen["fits"] and sel.chosen in sel.candidates
    assert {"size", "arch", "latency_ms", "memory_mb", "accuracy", "pareto"} <= set(sel.chosen)
    assert sel.pareto and all(c["pareto"] for c in sel.pareto)
    given = lgd.select(lgd.load_profile("raspberry-pi-5"), "lets-fashion-mnist", size={"depth": 2, "width": 48})
    assert given.chosen["size"] == {"depth": 2, "width": 48} and given.notes
    with pytest.raises(SelectionError, match="is not offered"):
        lgd.select("raspberry-pi-5", size={"depth": 3, "width": 50})
    with pytest.raises(ProfileError):
        lgd.select("no-such-device")


@pytest.fixture(scope="module")
def tiny_learngene(make_tiny_learngene) -> Path:  # type: ignore[no-untyped-def]
    return make_tiny_learngene(TINY)


@pytest.mark.slow
def test_build_open_verify_predict_bench(tiny_learngene: Path, tmp_path: Path) -> None:
    stages: list[str] = []
    art = lgd.build(
        "cpu-host", learngene=lgd.load_learngene(tiny_learngene), data="digits", finetune_steps=2, out=tmp_path / "a",
        finetune_batch=16, verify_images=32, bench_runs=3, bench_rounds=1, bench_min_time_s=0.02,
        log=lambda stage, _: stages.append(stage),
    )  # fmt: skip
    assert stages[-1] == "artifact" and art.status == "complete" and art.path == tmp_path / "a"
    assert lgd.Artifact(tmp_path / "a").manifest == art.manifest
    assert art.verify()["top1_agreement"] == 1.0
    digits = np.asarray(Image.new("L", (8, 8), 255))
    predictions = art.predict([digits, Image.new("RGB", (20, 20))], top=3)
    assert [len(p.top) for p in predictions] == [3, 3] and predictions[0].top[0][0] in art.classes
    record = art.bench(runs=3, rounds=1)
    assert record["stats"]["p50_ms"] > 0 and art.manifest.target_benchmarks[-1] == record
    with pytest.raises(ArtifactError, match="already exists"):
        lgd.build("cpu-host", learngene=tiny_learngene, data="digits", out=tmp_path / "a", progress=False)
    with pytest.raises(ConfigError, match="unknown build option"):
        lgd.build("cpu-host", out=tmp_path / "b", finetune_stepz=3)


@pytest.mark.slow
def test_readme_python_example_runs_as_written(tmp_path: Path) -> None:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Python API", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]
    Image.fromarray(np.full((28, 28), 200, np.uint8)).save(tmp_path / "photo.png")
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600,
        env={**__import__("os").environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert (tmp_path / "artifacts" / "cpu-host" / "manifest.json").is_file()
