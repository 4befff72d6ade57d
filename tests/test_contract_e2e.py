"""The preprocessing and label contract end to end: learngene metadata -> build -> manifest and ONNX -> predict."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from learngene_deploy.artifact.predict import predict
from learngene_deploy.cli import app
from learngene_deploy.data import load_data
from learngene_deploy.data.contract import Preprocessing
from learngene_deploy.errors import ConfigError, DataError
from learngene_deploy.learngene.io import learngene_contract, read_metadata
from learngene_deploy.learngene.lets import LeTsGenerator
from learngene_deploy.pipeline.run import BuildOptions, build
from learngene_deploy.training.loop import TrainConfig
from learngene_deploy.training.recipes import train_learngene

pytestmark = pytest.mark.slow

# Not DeiT's default (bilinear, no crop): the build must take it from the learngene, not re-derive a default.
CONTRACT = Preprocessing(16, 16, "bilinear")
CLASSES = ["apple", "kiwi", "plum"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("contract") / "fruit"
    rng = np.random.default_rng(0)
    for c, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for i in range(20):
            pixels = np.clip(rng.normal(60 + 70 * c, 20, (24, 20, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def learngene(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = load_data(folder, img_size=16, preprocessing=CONTRACT)
    torch.manual_seed(0)
    gen = LeTsGenerator(
        img_size=16, patch_size=8, in_chans=3, num_classes=3, head_dim=8, learngene_depth=2, learngene_dim=8,
        aux_depth=4, aux_dim=16,
    )  # fmt: skip
    out = tmp_path_factory.mktemp("lg")
    cfg = TrainConfig(out=out, max_steps=20, batch_size=16, lr=3e-3, progress=False, recipe="light")
    sizes = [{"depth": d, "width": w} for d in (2, 4) for w in (8, 16)]
    train_learngene(gen, data, cfg, out_file=out / "lg.safetensors", sizes=sizes)
    return out / "lg.safetensors"


@pytest.fixture(scope="module")
def artifact(learngene: Path, folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    opts = BuildOptions(
        profile="cpu-host",
        learngene=str(learngene),
        data=str(folder),
        finetune_steps=3,
        finetune_batch=16,
        out=tmp_path_factory.mktemp("art") / "art",
        verify_images=16,
        bench_runs=3,
        bench_rounds=1,
        bench_min_time_s=0.02,
    )
    return build(opts).out_dir


def test_learngene_records_contract_classes_and_recipe(learngene: Path) -> None:
    meta = read_metadata(learngene)
    assert learngene_contract(meta) == CONTRACT
    assert meta["classes"] == CLASSES
    assert meta["training"]["augmentation"]["name"] == "light"


def test_artifact_carries_the_learngenes_contract_and_class_names(artifact: Path) -> None:
    manifest = json.loads((artifact / "manifest.json").read_text())
    assert Preprocessing.from_dict(manifest["preprocessing"]) == CONTRACT
    assert manifest["classes"] == CLASSES
    assert manifest["finetune"]["augmentation"]["name"] == "light"
    assert manifest["finetune"]["bad_images"]["skipped"] == 0
    props = {p.key: p.value for p in onnx.load(artifact / "model.onnx").metadata_props}
    assert Preprocessing.from_dict(json.loads(props["lgdeploy.preprocessing"])) == CONTRACT
    assert json.loads(props["lgdeploy.classes"]) == CLASSES


def test_predict_classifies_with_the_artifacts_preprocessing(artifact: Path, folder: Path) -> None:
    files = [folder / name / "1.png" for name in CLASSES]
    predictions = predict(artifact, files, top=2)
    assert [len(p.top) for p in predictions] == [2, 2, 2]
    for p in predictions:
        assert {name for name, _ in p.top} <= set(CLASSES)
        assert p.top[0][1] >= p.top[1][1] and 0 < sum(prob for _, prob in p.top) <= 1 + 1e-6
    # the same images through the contract by hand and the shipped ONNX model on ONNX Runtime give the same top-1
    import onnxruntime as ort

    session = ort.InferenceSession(str(artifact / "model.onnx"), providers=["CPUExecutionProvider"])
    x = CONTRACT.preprocess([Image.open(f) for f in files])
    logits = np.concatenate([session.run(None, {session.get_inputs()[0].name: x[i : i + 1]})[0] for i in range(3)])
    assert [CLASSES[k] for k in logits.argmax(1)] == [p.top[0][0] for p in predictions]

    result = CliRunner().invoke(app, ["predict", str(artifact), str(files[0]), "--json", "--top", "3"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.output)
    assert record[0]["image"] == str(files[0]) and len(record[0]["top"]) == 3
    table = CliRunner().invoke(app, ["predict", str(artifact), str(files[1])])
    assert table.exit_code == 0 and predictions[1].top[0][0] in table.output


def test_predict_refuses_bad_input(artifact: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match=f"cannot read image {broken}"):
        predict(artifact, [broken])
    with pytest.raises(DataError, match="top must be at least 1"):
        predict(artifact, [broken], top=0)
    result = CliRunner().invoke(app, ["predict", str(artifact), str(broken)])
    assert result.exit_code != 0 and "cannot read image" in result.output and "Traceback" not in result.output


def test_build_refuses_a_bad_recipe_before_any_work(learngene: Path, tmp_path: Path) -> None:
    opts = BuildOptions(profile="cpu-host", learngene=str(learngene), data="digits", out=tmp_path / "a", aug=("x=1",))
    with pytest.raises(DataError, match="unknown recipe knob 'x'"):
        build(opts)
    with pytest.raises(ConfigError, match="on_bad_image"):
        build(BuildOptions(profile="cpu-host", out=tmp_path / "b", on_bad_image="ignore"))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
