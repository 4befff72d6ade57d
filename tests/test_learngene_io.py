"""Learngene files: one .safetensors with JSON metadata; round trip and clear errors on damage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from learngene_deploy.errors import LearngeneError
from learngene_deploy.learngene.io import FORMAT, generator_class, load_learngene, read_metadata, save_learngene
from learngene_deploy.learngene.ldr import LDRGenerator
from learngene_deploy.models.vit import ArchSpec

ARCH = ArchSpec(img_size=16, patch_size=4, in_chans=3, num_classes=5, embed_dim=32, depth=3, num_heads=2, layout="avg")
TABLE = [{"depth": 2, "genes": 1, "params": 1234, "top1": 0.5}]


@pytest.fixture
def saved(tmp_path: Path) -> tuple[LDRGenerator, Path]:
    torch.manual_seed(0)
    gen = LDRGenerator(ARCH, 3, basis="legendre", offset=0, position="unit")
    with torch.no_grad():
        for p in gen.parameters():
            p.normal_(std=0.1)
    path = save_learngene(tmp_path / "lg.safetensors", gen, training={"seed": 7, "teacher": None}, accuracy=TABLE)
    return gen, path


def test_round_trip_rebuilds_from_metadata_alone(saved: tuple[LDRGenerator, Path]) -> None:
    gen, path = saved
    loaded = load_learngene(path)
    assert isinstance(loaded, LDRGenerator)
    assert (loaded.basis, loaded.offset, loaded.position, loaded.num_genes) == ("legendre", 0, "unit", 3)
    assert loaded.train_arch == ARCH
    for (k, a), (k2, b) in zip(gen.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(a, b)
    images = torch.randn(2, 3, 16, 16)
    assert torch.equal(gen.recompose(depth=5, genes=2)(images), loaded.recompose(depth=5, genes=2)(images))
    meta = read_metadata(path)
    assert meta["method"] == "ldr" and meta["format_version"] == 1
    assert meta["accuracy"] == TABLE and meta["training"]["seed"] == 7
    assert meta["generator"]["basis"] == "legendre" and meta["arch"]["layout"] == "avg"
    assert meta["sizes"]["genes"] == [1, 2, 3]
    assert not list(path.parent.glob(".*tmp*")), "temporary file left behind"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(LearngeneError, match="does not exist"):
        load_learngene(tmp_path / "nope.safetensors")


@pytest.mark.parametrize("keep", [5, 200, -100])
def test_truncated_file(saved: tuple[LDRGenerator, Path], keep: int) -> None:
    _, path = saved
    data = path.read_bytes()
    path.write_bytes(data[:keep])
    with pytest.raises(LearngeneError, match="truncated or corrupt"):
        load_learngene(path)


def test_garbage_file(tmp_path: Path) -> None:
    path = tmp_path / "garbage.safetensors"
    path.write_bytes(b"\x00\x01 this is not a safetensors file" * 10)
    with pytest.raises(LearngeneError, match="truncated or corrupt"):
        load_learngene(path)


def test_flipped_byte_in_tensor_data_is_detected(saved: tuple[LDRGenerator, Path]) -> None:
    _, path = saved
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(LearngeneError, match="checksum"):
        load_learngene(path)


def test_plain_safetensors_is_not_a_learngene(tmp_path: Path) -> None:
    path = tmp_path / "plain.safetensors"
    save_file({"x": torch.zeros(2)}, str(path))
    with pytest.raises(LearngeneError, match="not a learngene"):
        load_learngene(path)


def _rewrite(path: Path, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    header = {"format": FORMAT, "format_version": "1", "learngene": json.dumps(meta)}
    save_file(tensors, str(path), metadata=header)


def test_metadata_not_matching_tensors(saved: tuple[LDRGenerator, Path]) -> None:
    gen, path = saved
    meta = read_metadata(path)
    meta["generator"]["genes"] = 4  # claims one learngene more than the file holds
    del meta["tensors_sha256"]
    _rewrite(path, {k: v.contiguous() for k, v in gen.state_dict().items()}, meta)
    with pytest.raises(LearngeneError, match="do not match its ldr metadata"):
        load_learngene(path)


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (lambda m: m.update(method="magic"), "unknown learngene method 'magic'"),
        (lambda m: m.update(format_version=99), "upgrade learngene-deploy"),
        (lambda m: m.pop("arch"), "lacks arch"),
        (lambda m: m["generator"].pop("basis"), "incomplete or malformed"),
    ],
)
def test_bad_metadata(saved: tuple[LDRGenerator, Path], edit: object, fragment: str) -> None:
    gen, path = saved
    meta = read_metadata(path)
    edit(meta)  # type: ignore[operator]
    _rewrite(path, {k: v.contiguous() for k, v in gen.state_dict().items()}, meta)
    with pytest.raises(LearngeneError, match=fragment):
        load_learngene(path)


def test_registry_finds_generator_by_method_name() -> None:
    assert generator_class("ldr") is LDRGenerator
    with pytest.raises(LearngeneError, match="valid methods are"):
        generator_class("nope")


@pytest.mark.parametrize("name", ["x.pt", "x.safetensors"])
@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "legacy-pickle"])
def test_pickle_file_is_refused_as_pickle(tmp_path: Path, name: str, zipped: bool) -> None:
    """torch.save output (zip container or bare pickle stream), even renamed to .safetensors, is never unpickled."""
    path = tmp_path / name
    torch.save({"a": torch.zeros(1)}, path, _use_new_zipfile_serialization=zipped)
    for call in (read_metadata, load_learngene):
        with pytest.raises(LearngeneError) as info:
            call(path)
        assert str(info.value) == (
            f"{path} is a PyTorch/pickle file, but only .safetensors learngene files written by lgdeploy are accepted "
            "(loading pickle can run arbitrary code); pass the .safetensors file lgdeploy wrote."
        )


def test_pickle_file_is_refused_by_the_cli(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from learngene_deploy.cli import app

    path = tmp_path / "x.safetensors"
    torch.save({"a": torch.zeros(1)}, path)
    for argv in (["learngene", "info", str(path)], ["select", "--profile", "cpu-host", "--learngene", str(path)]):
        result = CliRunner().invoke(app, argv)
        assert result.exit_code == 1
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith(f"error: {path} is a PyTorch/pickle file, but only .safetensors learngene files")


def _unsafe_loads(source: str) -> list[str]:
    """``"line: code"`` of every call in ``source`` that could unpickle: torch.load without weights_only=True,
    pickle/dill loads, np.load with allow_pickle other than False; and ``from torch import load`` (which hides it)."""
    import ast

    def is_constant(node: ast.expr | None, value: bool) -> bool:
        return isinstance(node, ast.Constant) and node.value is value

    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module == "torch" and any(a.name == "load" for a in node.names):
            found.append(f"{node.lineno}: {ast.unparse(node)}")
        if not isinstance(node, ast.Call):
            continue
        name = ast.unparse(node.func)
        keywords = {k.arg: k.value for k in node.keywords}
        unsafe = (
            (name == "torch.load" and not is_constant(keywords.get("weights_only"), True))
            or name in ("pickle.load", "pickle.loads", "dill.load", "dill.loads")
            or (name in ("np.load", "numpy.load") and "allow_pickle" in keywords
                and not is_constant(keywords["allow_pickle"], False))
        )  # fmt: skip
        if unsafe:
            found.append(f"{node.lineno}: {ast.unparse(node)}")
    return found


def test_unsafe_load_finder_finds_what_it_should() -> None:
    bad = "torch.load(p)\ntorch.load(p, weights_only=False)\npickle.loads(b)\nnp.load(p, allow_pickle=True)\n"
    bad += "from torch import load, save\n"
    assert sorted(line.split(":")[0] for line in _unsafe_loads(bad)) == ["1", "2", "3", "4", "5"]
    good = "torch.load(p, map_location='cpu', weights_only=True)\nnp.load(p)\nnp.load(p, allow_pickle=False)\n"
    assert _unsafe_loads(good) == []


def test_no_source_file_loads_pickle() -> None:
    """Every torch.load in the source tree passes weights_only=True, and nothing else unpickles."""
    repo = Path(__file__).resolve().parent.parent
    files = [p for p in repo.rglob("*.py") if not any(part.startswith(".") for part in p.relative_to(repo).parts)]
    assert len(files) > 40 and repo / "learngene_deploy" / "training" / "loop.py" in files
    offenders = {str(p.relative_to(repo)): found for p in files if (found := _unsafe_loads(p.read_text()))}
    assert offenders == {}


def test_a_saved_learngene_gets_the_umask_mode_not_a_private_one(tmp_path: Path) -> None:
    """safetensors writes through a private 0600 temporary file; the learngene a user shares must not stay 0600."""
    import os
    import stat

    arch = ArchSpec(img_size=8, patch_size=4, in_chans=3, num_classes=3, embed_dim=16, depth=2, num_heads=2)
    old = os.umask(0o022)
    try:
        path = save_learngene(tmp_path / "lg.safetensors", LDRGenerator(arch, 1))
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
