"""Device families (`--profile jetson-orin`) resolved from a fake device tree, and pinned sizes (`--size`)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

import learngene_deploy as lgd
from learngene_deploy import families
from learngene_deploy.cli import app
from learngene_deploy.cli.build import _targets, expand_profiles
from learngene_deploy.errors import ConfigError, ProfileError, SelectionError
from learngene_deploy.families import FAMILIES, expand, expand_all, resolve_family
from learngene_deploy.profile import list_profiles, load_profile, profile_from_dict
from learngene_deploy.sizing.candidates import parse_size

runner = CliRunner()
ORIN = ("jetson-orin-nano", "jetson-orin-nx-16gb", "jetson-agx-orin-64gb")
LETS_SIZES = "depth 1-8 x width 48/64/80/96"  # the shipped default learngene's, compactly


def fake_root(tmp_path: Path, model: str | None, *, jetson: bool = False, where: str = "proc/device-tree") -> Path:
    """A filesystem tree with the device tree's model string (NUL-terminated, as Linux has it) and the L4T file."""
    root = tmp_path / "root"
    root.mkdir(parents=True)
    if model is not None:
        (root / where).mkdir(parents=True)
        (root / where / "model").write_bytes(model.encode() + b"\0")
    if jetson:
        (root / "etc").mkdir()
        (root / "etc" / "nv_tegra_release").write_text("# R36 (release), REVISION: 4.3, GCID: 0, BOARD: generic\n")
    return root


@pytest.fixture
def not_a_device(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Detection on an empty tree: whatever machine runs the tests, it is no Jetson and no Raspberry Pi."""
    root = fake_root(tmp_path, None)
    monkeypatch.setattr(families, "DEFAULT_ROOT", root)
    return root


# --- resolution ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("model", "where", "profile"),
    [
        ("NVIDIA Jetson Orin Nano Developer Kit", "proc/device-tree", "jetson-orin-nano"),
        ("NVIDIA Jetson AGX Orin Developer Kit", "proc/device-tree", "jetson-agx-orin-64gb"),
        (
            "NVIDIA Jetson Orin NX Engineering Reference Developer Kit",
            "sys/firmware/devicetree/base",
            "jetson-orin-nx-16gb",
        ),
    ],
)
def test_a_jetson_orin_resolves_to_its_module(tmp_path: Path, model: str, where: str, profile: str) -> None:
    expansion = resolve_family("jetson-orin", fake_root(tmp_path, model, jetson=True, where=where))
    assert expansion.profiles == (profile,)
    assert expansion.line == f"profile family jetson-orin -> {profile} (this machine's device tree says '{model}')"


def test_a_jetson_of_another_module_is_one_sentence_naming_model_and_members(tmp_path: Path) -> None:
    root = fake_root(tmp_path, "NVIDIA Jetson Xavier NX Developer Kit", jetson=True)
    with pytest.raises(ProfileError) as e:
        resolve_family("jetson-orin", root)
    assert "'NVIDIA Jetson Xavier NX Developer Kit'" in str(e.value) and ", ".join(ORIN) in str(e.value)
    with pytest.raises(ProfileError, match="model string cannot be read"):  # L4T present, no device tree model
        resolve_family("jetson-orin", fake_root(tmp_path / "bare", None, jetson=True))


def test_raspberry_pi(tmp_path: Path) -> None:
    pi5 = fake_root(tmp_path / "5", "Raspberry Pi 5 Model B Rev 1.0")
    assert resolve_family("raspberry-pi", pi5).profiles == ("raspberry-pi-5",)
    assert resolve_family("jetson-orin", pi5).profiles == ORIN  # a Pi is no Jetson: every Orin module
    with pytest.raises(ProfileError, match=r"'Raspberry Pi 4 Model B Rev 1\.4'.*raspberry-pi-5"):
        resolve_family("raspberry-pi", fake_root(tmp_path / "4", "Raspberry Pi 4 Model B Rev 1.4"))


def test_elsewhere_a_family_is_every_member(tmp_path: Path) -> None:
    expansion = resolve_family("jetson-orin", fake_root(tmp_path, "QEMU Virtual Machine"))
    assert expansion.line == (
        "profile family jetson-orin -> jetson-orin-nano, jetson-orin-nx-16gb, jetson-agx-orin-64gb "
        "(this machine is not a Jetson: one artifact per module)"
    )
    names, expansions = expand(["cpu-host", "jetson-orin"], tmp_path / "nothing")
    assert names == ["cpu-host", *ORIN] and [e.family for e in expansions] == ["jetson-orin"]


def test_a_fifo_as_model_file_never_blocks(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "proc" / "device-tree").mkdir(parents=True)
    os.mkfifo(root / "proc" / "device-tree" / "model")
    assert families.read_model(root) is None
    assert resolve_family("jetson-orin", root).profiles == ORIN


def test_families_are_distinct_from_profiles_and_name_shipped_ones() -> None:
    shipped = set(list_profiles())
    assert not shipped & set(FAMILIES)
    members = [p for f in FAMILIES.values() for p in f.profiles]
    assert set(members) <= shipped and len(members) == len(set(members)), "a profile belongs to one family at most"
    assert expand_all(["jetson-orin", "cpu-host"]) == [*ORIN, "cpu-host"]


# --- a family where one profile is needed -----------------------------------------------------------------------
def test_a_family_where_one_profile_is_needed_is_one_sentence(tmp_path: Path) -> None:
    sentence = (
        "'jetson-orin' is a device family (jetson-orin-nano, jetson-orin-nx-16gb, jetson-agx-orin-64gb); pass one of "
        "its profiles, or `lgdeploy build --profile jetson-orin` to build each."
    )
    with pytest.raises(ProfileError) as e:
        load_profile("jetson-orin")
    assert str(e.value) == sentence
    with pytest.raises(ProfileError) as e:
        lgd.build("jetson-orin", data="digits", finetune_steps=2, out=tmp_path / "art", progress=False)
    assert str(e.value) == sentence and not (tmp_path / "art").exists()
    result = runner.invoke(app, ["profiles", "validate", "jetson-orin"])
    assert result.exit_code == 1 and result.stderr == f"error: {sentence}\n"


def test_profiles_show_a_family_lists_its_members(not_a_device: Path) -> None:
    result = runner.invoke(app, ["profiles", "show", "jetson-orin"])
    assert result.exit_code == 0, result.output
    assert all(p in result.stdout for p in ORIN) and "this machine is not a Jetson" in result.stdout
    shown = json.loads(runner.invoke(app, ["profiles", "show", "raspberry-pi", "--json"]).stdout)
    assert [p["name"] for p in shown["profiles"]] == ["raspberry-pi-5"]
    assert shown["on_this_machine"]["profiles"] == ["raspberry-pi-5"]


def test_profiles_list_shows_families() -> None:
    rows = json.loads(runner.invoke(app, ["profiles", "list", "--json"]).stdout)
    assert {r["name"]: r["family"] for r in rows if r["family"]} == {
        **dict.fromkeys(ORIN, "jetson-orin"),
        "raspberry-pi-5": "raspberry-pi",
    }
    table = runner.invoke(app, ["profiles", "list"]).stdout
    assert "Device families" in table and "jetson-orin " in table and "raspberry-pi " in table


# --- matrix, build and select with a family -----------------------------------------------------------------------
def test_matrix_profile_expands_families() -> None:
    def matrix(*args: str) -> list[dict]:
        result = runner.invoke(app, ["matrix", "--json", *args])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)["include"]

    orin = matrix("--profile", "jetson-orin")
    assert [e["profile"] for e in orin] == list(ORIN)
    full = {e["profile"]: e for e in matrix()}
    assert orin == [full[p] for p in ORIN], "entries are those of the full matrix"
    both = matrix("--profile", "jetson-orin-nano", "--profile", "jetson-orin", "--profile", "cpu-host")
    assert [e["profile"] for e in both] == [
        "jetson-orin-nano",
        "jetson-orin-nx-16gb",
        "jetson-agx-orin-64gb",
        "cpu-host",
    ]
    assert matrix("--profile", "jetson-orin", "--runtime", "onnxruntime") == []


def test_build_plans_one_target_per_member_before_any_work(not_a_device: Path, tmp_path: Path) -> None:
    said: list[str] = []
    names, origins = expand_profiles(["jetson-orin"], said.append)
    assert names == list(ORIN) and len(said) == 1 and "not a Jetson" in said[0]
    out = tmp_path / "arts"
    assert _targets(names, out, None, None, False, origins) == [out / p for p in ORIN]
    # a family and one of its members would write one directory twice: refused, naming both
    names, origins = expand_profiles(["jetson-orin", "jetson-orin-nano"], said.append)
    with pytest.raises(ConfigError, match=r"--profile jetson-orin-nano and --profile jetson-orin-nano \(of family"):
        _targets(names, out, None, None, False, origins)


def test_build_on_a_jetson_plans_its_module_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = fake_root(tmp_path, "NVIDIA Jetson Orin Nano Developer Kit", jetson=True)
    monkeypatch.setattr(families, "DEFAULT_ROOT", root)
    names, origins = expand_profiles(["jetson-orin"], lambda _line: None)
    assert names == ["jetson-orin-nano"]
    assert _targets(names, tmp_path / "art", None, None, False, origins) == [tmp_path / "art"]


def test_build_cli_says_the_expansion_then_refuses_a_bad_size_before_any_work(
    not_a_device: Path, tmp_path: Path
) -> None:
    out = tmp_path / "arts"
    result = runner.invoke(app, ["build", "--profile", "jetson-orin", "--out", str(out), "--size", "depth=99,width=64"])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("profile family jetson-orin -> jetson-orin-nano, ") and len(lines) == 2
    assert lines[1] == (
        f"error: size depth=99 width=64 is not offered by lets-fashion-mnist.safetensors; its sizes are {LETS_SIZES}; "
        "pin one of those."
    )
    assert not out.exists()


def test_select_a_family_selects_for_each_member(not_a_device: Path) -> None:
    result = runner.invoke(app, ["select", "--profile", "jetson-orin", "--json"])
    assert result.exit_code == 0, result.output
    keyed = json.loads(result.stdout)
    assert list(keyed) == list(ORIN) and all(s["profile"] == name for name, s in keyed.items())
    table = runner.invoke(app, ["select", "--profile", "jetson-orin"])
    assert table.exit_code == 0 and all(f"{p}: budgets" in table.stdout for p in ORIN)
    assert table.stdout.count("chosen: ") == 3


# --- pinned sizes -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text", ["depth=six", "depth", "depth=6,", "depth=6;width=64", "depth=6,depth=7", "DEPTH=6", ""]
)
def test_size_parse_errors_are_one_sentence(text: str) -> None:
    with pytest.raises(ConfigError, match=r"e\.g\. depth=6,width=64 \(LeTs\) or depth=6,genes=4 \(LDR\)\.$"):
        parse_size(text)
    result = runner.invoke(app, ["select", "--profile", "cpu-host", "--size", text])
    assert result.exit_code == 1 and result.stderr.count("\n") == 1 and result.stderr.startswith("error: --size")


def test_size_parses_pairs() -> None:
    assert parse_size("depth=6,width=64") == {"depth": 6, "width": 64}
    assert parse_size("depth=6, genes=4") == {"depth": 6, "genes": 4}


@pytest.mark.parametrize(
    ("size", "why"),
    [
        ("depth=9,width=64", "size depth=9 width=64 is not offered by lets-fashion-mnist.safetensors"),
        ("depth=6,genes=4", "lets-fashion-mnist.safetensors has no size key genes"),
        ("depth=6", "lets-fashion-mnist.safetensors needs every size key (depth, width)"),
    ],
)
def test_invalid_sizes_list_the_valid_ones(size: str, why: str) -> None:
    for run in (lambda: lgd.select("cpu-host", size=size), lambda: lgd.api.build_options("cpu-host", size=size)):
        with pytest.raises(SelectionError) as e:
            run()
        assert why in str(e.value) and f"its sizes are {LETS_SIZES};" in str(e.value)
    result = runner.invoke(app, ["select", "--profile", "cpu-host", "--size", size])
    assert result.exit_code == 1 and LETS_SIZES in result.stderr and result.stderr.count("\n") == 1


def test_select_size_predicts_the_pinned_size() -> None:
    result = runner.invoke(app, ["select", "--profile", "raspberry-pi-5", "--size", "depth=2,width=48", "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["pinned"] is True and shown["chosen"]["size"] == {"depth": 2, "width": 48}
    assert lgd.select("raspberry-pi-5").pinned is False
    ldr = lgd.select("raspberry-pi-5", "ldr-fashion-mnist", size="depth=6,genes=4")
    assert ldr.chosen["size"] == {"depth": 6, "genes": 4}
    table = runner.invoke(app, ["select", "--profile", "raspberry-pi-5", "--size", "depth=2,width=48"])
    assert "pinned: depth=2 width=48" in table.stdout and "fits every budget" in table.stdout


def test_build_options_keep_a_pinned_size_as_hashable_pairs() -> None:
    opts = lgd.api.build_options("cpu-host", size={"depth": 6, "width": 64})
    assert opts.size == (("depth", 6), ("width", 64)) and hash(opts)
    assert lgd.api.build_options("cpu-host", size="depth=6,width=64") == opts
    with pytest.raises(ConfigError, match="not a mapping of distinct size keys to integers"):
        lgd.api.build_options("cpu-host", size={"depth": "6"})


def test_a_pinned_size_that_misses_a_budget_is_picked_with_a_warning() -> None:
    from learngene_deploy.pipeline import stages

    base = load_profile("raspberry-pi-5")
    data = base.to_dict()
    data["budgets"].update(memory_mb=0.5, model_size_mb=0.1)  # too small for the larger sizes
    profile = profile_from_dict(data, source=base.source)
    lines: list[str] = []
    picked = stages.pick(None, profile, lambda _stage, msg: lines.append(msg), size={"depth": 8, "width": 96})
    assert picked.size == {"depth": 8, "width": 96} and not picked.selection.chosen.fits
    warning = [line for line in lines if line.startswith("warning: ")]
    assert len(warning) == 1 and "pinned size depth=8 width=96 is predicted to miss the budget" in warning[0]
    record = stages._selection_record(picked)
    assert record["pinned"] is True and any("predicted to miss" in n for n in record["notes"])
    assert record["chosen"]["fits"] is False and record["chosen"]["misses"]
    from learngene_deploy.artifact.report import selection_svg

    svg = selection_svg(picked.selection, profile.budgets.latency_ms)
    assert "pinned: depth=8 width=96" in svg and "chosen:" not in svg
    chosen = stages.pick(None, base, lambda _stage, _msg: None)  # the shipped budgets: a size fits and is chosen
    assert "chosen: " in selection_svg(chosen.selection, base.budgets.latency_ms)
