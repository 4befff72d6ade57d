"""torch2onnx and simplify: round trip through ONNX Runtime, dynamic batch, metadata, determinism."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from learngene_deploy.errors import ConfigError, ExportError
from learngene_deploy.export import simplify, torch2onnx
from learngene_deploy.models.vit import ArchSpec

ARCH = ArchSpec(img_size=32, patch_size=8, in_chans=3, num_classes=10, embed_dim=32, depth=2, num_heads=2)


@pytest.fixture(scope="module")
def model():
    import torch

    from learngene_deploy.models.vit import build_vit

    torch.manual_seed(0)
    return build_vit(ARCH).eval()


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    """Dynamo export with a dynamic batch axis (the slow export, done once)."""
    out = tmp_path_factory.mktemp("export") / "model.onnx"
    return torch2onnx(model, input_shape=(1, 3, 32, 32), out_path=out, dynamic_batch=True, metadata={"arch": ARCH.name})


def ort_logits(path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def torch_logits(model, x: np.ndarray) -> np.ndarray:
    from learngene_deploy.gates import torch_logits

    return torch_logits(model)(x)


def test_dynamo_round_trip_with_dynamic_batch(model, exported) -> None:
    assert exported.stage == "export" and "dynamo" in exported.tool
    assert exported.opset == 18
    assert exported.input_shape == ("batch", 3, 32, 32) and exported.dynamic_batch
    x = np.random.default_rng(0).standard_normal((3, 3, 32, 32), dtype=np.float32)
    np.testing.assert_allclose(ort_logits(exported.path, x), torch_logits(model, x), atol=1e-5, rtol=0)


def test_build_facts_are_in_metadata_props(exported) -> None:
    import onnx

    props = {p.key: p.value for p in onnx.load(exported.path).metadata_props}
    assert props == exported.metadata
    assert props["arch"] == ARCH.name
    assert props["lgdeploy.opset"] == "18"
    assert props["lgdeploy.input_shape"] == "batchx3x32x32"
    assert props["lgdeploy.exporter"].startswith("torch ")
    assert props["lgdeploy.toolkit"].startswith("learngene-deploy ")


def test_reexport_in_a_fresh_process_is_byte_identical(exported, tmp_path) -> None:
    code = f"""
import torch
from learngene_deploy.export import torch2onnx
from learngene_deploy.models.vit import ArchSpec, build_vit
arch = ArchSpec(**{ARCH.to_dict()!r})
torch.manual_seed(0)
art = torch2onnx(build_vit(arch), input_shape=(1, 3, 32, 32), out_path={str(tmp_path / "again.onnx")!r},
                 dynamic_batch=True, metadata={{"arch": arch.name}})
print(art.sha256)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == exported.sha256
    assert (tmp_path / "again.onnx").read_bytes() == exported.path.read_bytes()


def test_legacy_exporter_static_batch(model, tmp_path) -> None:
    art = torch2onnx(model, input_shape=(2, 3, 32, 32), out_path=tmp_path / "legacy.onnx", exporter="legacy")
    assert "legacy" in art.tool and art.input_shape == (2, 3, 32, 32) and not art.dynamic_batch
    x = np.random.default_rng(1).standard_normal((2, 3, 32, 32), dtype=np.float32)
    np.testing.assert_allclose(ort_logits(art.path, x), torch_logits(model, x), atol=1e-5, rtol=0)


def test_export_restores_training_mode(model, tmp_path) -> None:
    model.train()
    try:
        torch2onnx(model, input_shape=(1, 3, 32, 32), out_path=tmp_path / "m.onnx", exporter="legacy")
        assert model.training
    finally:
        model.eval()


@pytest.mark.parametrize("tool", ["onnxsim", "onnxslim"])
def test_simplify_keeps_outputs_batch_axis_and_metadata(model, exported, tmp_path, tool) -> None:
    pytest.importorskip(tool, reason=f"{tool} is an optional simplifier")
    simple = simplify(exported, tmp_path / f"{tool}.onnx", tool=tool)
    assert simple.stage == "simplify" and simple.tool.startswith(tool)
    assert simple.source == str(exported.path) and simple.source_sha256 == exported.sha256
    assert simple.num_nodes <= exported.num_nodes
    assert simple.input_shape == exported.input_shape
    assert simple.metadata["arch"] == ARCH.name and simple.metadata["lgdeploy.simplifier"].startswith(tool)
    x = np.random.default_rng(2).standard_normal((4, 3, 32, 32), dtype=np.float32)
    np.testing.assert_allclose(ort_logits(simple.path, x), ort_logits(exported.path, x), atol=1e-5, rtol=0)


def test_bad_options_name_the_valid_choices(model, tmp_path) -> None:
    with pytest.raises(ConfigError, match="dynamo, legacy"):
        torch2onnx(model, input_shape=(1, 3, 32, 32), out_path=tmp_path / "m.onnx", exporter="jit")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="four positive integers"):
        torch2onnx(model, input_shape=(3, 32, 32), out_path=tmp_path / "m.onnx")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="onnxsim, onnxslim"):
        simplify(tmp_path / "m.onnx", tmp_path / "s.onnx", tool="polygraphy")  # type: ignore[arg-type]
    with pytest.raises(ExportError, match="does not exist"):
        simplify(tmp_path / "missing.onnx", tmp_path / "s.onnx")


def test_export_failure_is_one_sentence_with_a_fix(model, tmp_path) -> None:
    with pytest.raises(ExportError, match="try exporter='dynamo' or opset 18"):
        torch2onnx(model, input_shape=(1, 3, 32, 32), out_path=tmp_path / "m.onnx", exporter="legacy", opset=5)


def test_dynamo_refuses_to_silently_change_the_opset(model, tmp_path) -> None:
    with pytest.raises(ExportError, match="could not produce opset 5"):
        torch2onnx(model, input_shape=(1, 3, 32, 32), out_path=tmp_path / "m.onnx", opset=5)
