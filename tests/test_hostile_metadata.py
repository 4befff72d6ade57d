"""One validation boundary for metadata read from disk (issue 21): learngene metadata, profiles and latency tables
are checked (types, finite ranges, sizes, nesting) before use, with one sentence naming the field."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from safetensors.torch import save_file

from learngene_deploy.cli.select import finite
from learngene_deploy.errors import LearngeneError, ProfileError
from learngene_deploy.learngene.io import FORMAT, load_learngene, read_metadata, save_learngene
from learngene_deploy.learngene.ldr import LDRGenerator
from learngene_deploy.models.vit import ArchSpec
from learngene_deploy.profile import load_profile, shipped_profiles_dir
from learngene_deploy.sizing.latency import FEATURES, LatencyTable

ARCH = ArchSpec(img_size=8, patch_size=4, in_chans=1, num_classes=3, embed_dim=8, depth=2, num_heads=2)


@pytest.fixture
def learngene(tmp_path: Path) -> tuple[dict[str, torch.Tensor], Path]:
    gen = LDRGenerator(ARCH, 2, basis="chebyshev", offset=1)
    path = save_learngene(tmp_path / "lg.safetensors", gen, accuracy=[{"depth": 1, "genes": 1, "top1": 0.5}])
    return {k: v.contiguous() for k, v in gen.state_dict().items()}, path


def _rewrite(path: Path, tensors: dict[str, torch.Tensor], meta: Any, raw: str | None = None) -> None:
    save_file(
        tensors, str(path), metadata={"format": FORMAT, "format_version": "1", "learngene": raw or json.dumps(meta)}
    )


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("arch", "vit", "'arch' must be a mapping"),
        ("accuracy", {"depth": 1}, "'accuracy' must be a list"),
        ("accuracy", [{"depth": 1, "top1": "high"}], r"'accuracy\[0\]\.top1' must be a number"),
        ("accuracy", [{"depth": 1, "top1": 7.0}], r"'accuracy\[0\]\.top1' must be at most 1"),
        ("training", ["x"], "'training' must be a mapping"),
        ("generator", 5, "'generator' must be a mapping"),
        ("sizes", {"depth": {"min": 1, "max": 10**12}}, "'sizes.depth.max' must be at most 1024"),
        ("sizes", {"genes": list(range(1, 2000))}, "'sizes.genes' holds 1999 items"),
    ],
)
def test_wrong_types_and_absurd_sizes_are_one_sentence(
    learngene: tuple[dict[str, torch.Tensor], Path], key: str, value: Any, fragment: str
) -> None:
    tensors, path = learngene
    meta = read_metadata(path)
    meta[key] = value
    _rewrite(path, tensors, meta)
    with pytest.raises(LearngeneError, match=fragment):
        read_metadata(path)


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (lambda g: g["arch"].update(embed_dim=10**6), "'generator.arch.embed_dim' must be at most 16384"),
        (lambda g: g.update(genes=10**9), "'generator.genes' must be at most 1024"),
        (lambda g: g["arch"].update(embed_dim=4096, num_heads=2), "tensors do not match its ldr metadata"),
        (lambda g: g.update(genes=1000), "tensors do not match its ldr metadata"),
    ],
)
def test_claimed_sizes_are_checked_before_anything_is_allocated(
    learngene: tuple[dict[str, torch.Tensor], Path], edit: Any, fragment: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    tensors, path = learngene
    meta = read_metadata(path)
    edit(meta["generator"])
    del meta["tensors_sha256"]
    _rewrite(path, tensors, meta)
    built: list[int] = []
    real = LDRGenerator.__init__
    monkeypatch.setattr(
        LDRGenerator,
        "__init__",
        lambda self, *a, **k: built.append(torch.empty(0).device.type == "meta") or real(self, *a, **k),
    )
    with pytest.raises(LearngeneError, match=fragment):
        load_learngene(path)
    assert all(built), "the generator was only ever built on the meta device (no memory)"


def test_metadata_nested_thousands_deep_is_one_sentence(learngene: tuple[dict[str, torch.Tensor], Path]) -> None:
    tensors, path = learngene
    _rewrite(path, tensors, None, raw='{"format_version": 1, "x": ' + "[" * 50_000 + "]" * 50_000 + "}")
    with pytest.raises(LearngeneError, match="malformed learngene metadata"):
        read_metadata(path)


# --- profiles ----------------------------------------------------------------------------------------------------
def _profile(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    return path


CPU_HOST = (shipped_profiles_dir() / "cpu-host.yaml").read_text()


def test_a_duplicated_profile_key_is_refused(tmp_path: Path) -> None:
    path = _profile(tmp_path, CPU_HOST + "\nhost: false\nhost: true\n")
    with pytest.raises(ProfileError, match=r"duplicated key 'host'"):
        load_profile(path)


def test_numbers_with_an_unsigned_exponent_are_numbers(tmp_path: Path) -> None:
    data = yaml.safe_load(CPU_HOST)
    text = yaml.safe_dump(data).replace(f"latency_ms: {data['budgets']['latency_ms']}", "latency_ms: 1.0e308")
    assert "1.0e308" in text
    assert load_profile(_profile(tmp_path, text)).budgets.latency_ms == 1e308
    text = text.replace("1.0e308", "1.0e309")
    with pytest.raises(ProfileError, match=r"'budgets\.latency_ms' must be a finite number"):
        load_profile(_profile(tmp_path, text))


def test_a_profile_nested_deep_or_absurd_threads_is_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="nested"):
        load_profile(_profile(tmp_path, "name: " + "[" * 5000 + "]" * 5000))
    data = yaml.safe_load(CPU_HOST)
    data["runtime"]["threads"] = 1_000_000_000
    with pytest.raises(ProfileError, match=r"'runtime.threads' must be at most 1024"):
        load_profile(_profile(tmp_path, yaml.safe_dump(data)))


def test_a_profile_path_that_is_a_directory_or_fifo_says_so(tmp_path: Path) -> None:
    (tmp_path / "dir.yaml").mkdir()
    with pytest.raises(ProfileError, match=r"cannot be read \(a directory\)"):
        load_profile(tmp_path / "dir.yaml")
    os.mkfifo(tmp_path / "fifo.yaml")
    with pytest.raises(ProfileError, match=r"cannot be read \(not a regular file\)"):
        load_profile(tmp_path / "fifo.yaml")


# --- latency tables ----------------------------------------------------------------------------------------------
def _table(tmp_path: Path, **changes: Any) -> Path:
    data = {
        "format": "lgdeploy-latency-table",
        "version": 1,
        "profile": "cpu-host",
        "backend": "onnxruntime",
        "precision": "fp32",
        "threads": None,
        "batch": 1,
        "percentile": 90,
        "coef": dict.fromkeys(FEATURES, 0.1),
        "points": [{"arch": ARCH.to_dict(), "p90_ms": 1.0}],
    }
    data.update(changes)
    path = tmp_path / "table.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"coef": {**dict.fromkeys(FEATURES, 0.1), "const": float("nan")}}, "'coef.const' is nan"),
        ({"coef": {**dict.fromkeys(FEATURES, 0.1), "blocks": -5.0}}, "'coef.blocks' is -5.0"),
        ({"points": [1, 2, 3]}, r"'points\[0\]' must be a mapping"),
        ({"points": [{"arch": ARCH.to_dict(), "p90_ms": -1}]}, r"'points\[0\].p90_ms' is -1"),
        ({"batch": 10**9}, "'batch' is 1000000000"),
    ],
)
def test_a_latency_table_with_nan_negative_or_malformed_values_is_refused(
    tmp_path: Path, changes: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(ProfileError, match=fragment):
        LatencyTable.load(_table(tmp_path, **changes))


def test_select_json_never_prints_nan() -> None:
    out = json.dumps(finite({"a": float("nan"), "b": [float("inf"), 1.5], "c": (2, -float("inf"))}), allow_nan=False)
    assert json.loads(out) == {"a": None, "b": [None, 1.5], "c": [2, None]}


def test_user_text_is_never_parsed_as_console_markup(tmp_path: Path) -> None:
    """A description, a profile path or a learngene path holding `[/]` prints as it is (rich would raise)."""
    from typer.testing import CliRunner

    from learngene_deploy.cli import app

    data = yaml.safe_load(CPU_HOST)
    data["description"] = "lab box [/] [bold]not bold"
    folder = tmp_path / "odd [" / "] dir"  # the path reads ".../odd [/] dir"
    folder.mkdir(parents=True)
    path = folder / "p.yaml"
    path.write_text(yaml.safe_dump(data))
    shown = CliRunner().invoke(app, ["profiles", "show", str(path)])
    assert shown.exit_code == 0, shown.output
    assert "lab box [/] [bold]not bold" in shown.stdout
    lg = save_learngene(folder / "lg [bold].safetensors", LDRGenerator(ARCH, 2, basis="chebyshev", offset=1))
    info = CliRunner().invoke(app, ["learngene", "info", str(lg)])
    assert info.exit_code == 0, info.output
    assert "odd [/] dir/lg [bold].safetensors" in info.stdout.replace("\n", "")


def test_the_stages_hint_keeps_its_own_rule() -> None:
    from learngene_deploy.errors import ConfigError
    from learngene_deploy.learngene.ldr import parse_stages

    for genes, example in ((4, "1,2,4"), (3, "1,2,3"), (12, "1,2,4,8,12")):
        with pytest.raises(ConfigError, match=rf"e\.g\. {example}\.$"):
            parse_stages("1,2,4,4", genes, sct=False)
        assert parse_stages(example, genes, sct=False)  # the hint itself is valid


def test_a_learngene_path_that_is_a_directory_or_fifo_says_so(tmp_path: Path) -> None:
    (tmp_path / "dir.safetensors").mkdir()
    with pytest.raises(LearngeneError, match="is a directory"):
        read_metadata(tmp_path / "dir.safetensors")
    os.mkfifo(tmp_path / "fifo.safetensors")
    with pytest.raises(LearngeneError, match="is not a regular file"):
        read_metadata(tmp_path / "fifo.safetensors")


def test_learngene_info_json_is_valid_json_even_with_nan_provenance(
    learngene: tuple[dict[str, torch.Tensor], Path],
) -> None:
    from typer.testing import CliRunner

    from learngene_deploy.cli import app

    tensors, path = learngene
    meta = read_metadata(path)
    meta["training"] = {"final_loss": float("nan"), "wall_time_s": float("inf")}
    _rewrite(path, tensors, meta)
    result = CliRunner().invoke(app, ["learngene", "info", str(path), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["training"] == {"final_loss": None, "wall_time_s": None}


@pytest.mark.parametrize("where", ["sizes", "accuracy", "no-sizes"])
def test_sizes_beyond_the_learngenes_in_the_file_are_refused(
    learngene: tuple[dict[str, torch.Tensor], Path], where: str
) -> None:
    tensors, path = learngene
    meta = read_metadata(path)
    meta.pop("sizes", None)
    if where == "sizes":
        meta["sizes"] = {"genes": [1, 2, 5]}
    elif where == "accuracy":
        meta["accuracy"] = [{"depth": 1, "genes": 7, "top1": 0.5}]
    _rewrite(path, tensors, meta)
    if where == "no-sizes":
        assert read_metadata(path)["method"] == "ldr"
        return
    with pytest.raises(LearngeneError, match=r"more than the 2 learngenes of 'generator\.genes'"):
        read_metadata(path)
