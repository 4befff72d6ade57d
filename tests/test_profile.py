"""Device profile schema: every shipped profile is valid, every kind of broken profile is refused clearly."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from learngene_deploy.errors import ProfileError
from learngene_deploy.names import PRECISIONS, RUNTIME_CHOICES
from learngene_deploy.profile import (
    DeviceProfile,
    list_profiles,
    load_profile,
    profile_from_dict,
    shipped_profiles_dir,
)

REQUIRED_PROFILES = {
    "jetson-orin-nano",
    "jetson-orin-nx-16gb",
    "jetson-agx-orin-64gb",
    "raspberry-pi-5",
    "intel-core-ultra-nuc",
    "snapdragon-8-gen-3",
    "x86-server",
    "cpu-host",
}


def _base() -> dict[str, Any]:
    return yaml.safe_load((shipped_profiles_dir() / "raspberry-pi-5.yaml").read_text())


def _write(tmp_path: Path, data: Any, name: str = "p.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_required_profiles_are_shipped() -> None:
    assert set(list_profiles()) >= REQUIRED_PROFILES


@pytest.mark.parametrize("name", sorted(REQUIRED_PROFILES))
def test_shipped_profile_is_valid(name: str) -> None:
    p = load_profile(name)
    assert isinstance(p, DeviceProfile)
    assert p.name == name, "a shipped profile's name must equal its file name"
    assert p.runtime.backend in RUNTIME_CHOICES and p.runtime.precision in PRECISIONS
    assert p.device.peak_gflops.at(p.runtime.precision) is not None
    assert 0 < p.budgets.memory_mb <= p.device.memory_mb
    assert len(p.sha256) == 64 and Path(p.source).is_file()


def test_issue_runtime_choices() -> None:
    nano = load_profile("jetson-orin-nano")
    assert (nano.runtime.backend, nano.runtime.precision) == ("tensorrt", "fp16")
    pi = load_profile("raspberry-pi-5")
    assert (pi.runtime.backend, pi.runtime.threads) == ("onnxruntime", 4)
    assert load_profile("intel-core-ultra-nuc").runtime.backend == "openvino"
    phone = load_profile("snapdragon-8-gen-3")
    assert (phone.runtime.backend, phone.runtime.format) == ("onnxruntime", "ort")
    host = load_profile("cpu-host")
    assert host.host and host.runtime.threads == 2
    assert host.runtime.backend == "auto", "the machine lgdeploy runs on gets the fastest verified runtime"


def test_load_by_name_and_by_path_agree(tmp_path: Path) -> None:
    by_name = load_profile("cpu-host")
    copy_path = tmp_path / "mine.yaml"
    copy_path.write_bytes(Path(by_name.source).read_bytes())
    by_path = load_profile(copy_path)
    assert by_path.to_dict() == by_name.to_dict()
    assert by_path.sha256 == by_name.sha256
    assert load_profile(str(copy_path)).source == str(copy_path)


def test_round_trip_to_dict_reloads_identically() -> None:
    for name in list_profiles():
        p = load_profile(name)
        again = profile_from_dict(copy.deepcopy(p.to_dict()), source="again")
        assert again.to_dict() == p.to_dict()


def test_auto_is_valid_on_a_host_profile_and_an_override_is_revalidated(tmp_path: Path) -> None:
    from learngene_deploy.profile import resolve_profile

    data = _base()
    data["host"] = True
    data["runtime"]["backend"] = "auto"
    del data["runtime"]["execution_provider"]
    assert load_profile(_write(tmp_path, data)).runtime.backend == "auto"
    with pytest.raises(ProfileError, match="needs 'host: true'"):
        resolve_profile("raspberry-pi-5", backend="auto")
    assert resolve_profile("cpu-host", backend="onnxruntime").runtime.backend == "onnxruntime"


def test_defaults_fill_optional_keys() -> None:
    data = _base()
    del data["budgets"]["percentile"], data["budgets"]["batch"], data["budgets"]["input_size"]
    p = profile_from_dict(data)
    assert (p.budgets.percentile, p.budgets.batch, p.budgets.input_size) == (90, 1, "native")


def _set(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for key in parents:
        data = data[key]
    if value is _DELETE:
        del data[last]
    else:
        data[last] = value


_DELETE = object()

# (mutation: dotted key -> value, words the one-sentence message must contain)
BROKEN: dict[str, tuple[dict[str, Any], list[str]]] = {
    "unknown top-level key": ({"colour": "red"}, ["unknown key 'colour'", "valid keys"]),
    "unknown nested key, close match": (
        {"budgets.latncy_ms": 5},
        ["budgets.latncy_ms", "did you mean 'budgets.latency_ms'"],
    ),
    "negative latency budget": ({"budgets.latency_ms": -5}, ["budgets.latency_ms", "greater than 0"]),
    "zero memory budget": ({"budgets.memory_mb": 0}, ["budgets.memory_mb", "greater than 0"]),
    "unknown runtime": ({"runtime.backend": "tflite"}, ["runtime.backend", "onnxruntime, openvino, tensorrt, auto"]),
    "auto on a device that is not this machine": (
        {"runtime.backend": "auto", "runtime.execution_provider": _DELETE},
        ["runtime.backend", "auto", "host: true"],
    ),
    "unknown precision": ({"runtime.precision": "fp8"}, ["runtime.precision", "fp32, fp16, int8"]),
    "wrong type (string for int)": ({"runtime.threads": "four"}, ["runtime.threads", "integer"]),
    "wrong type (bool for number)": ({"budgets.latency_ms": True}, ["budgets.latency_ms", "number"]),
    "wrong type (mapping expected)": ({"budgets": [1, 2]}, ["budgets", "mapping"]),
    "missing required field": ({"budgets.model_size_mb": _DELETE}, ["missing required key 'budgets.model_size_mb'"]),
    "missing section": ({"device": _DELETE}, ["missing required key 'device'"]),
    "zero threads": ({"runtime.threads": 0}, ["runtime.threads", "at least 1"]),
    "bad percentile": ({"budgets.percentile": 80}, ["budgets.percentile", "50, 90, 95, 99"]),
    "bad input size": ({"budgets.input_size": "huge"}, ["budgets.input_size", "native"]),
    "efficiency above one": ({"device.efficiency": 1.5}, ["device.efficiency", "at most 1"]),
    "unknown execution provider": (
        {"runtime.execution_provider": "CpuProvider"},
        ["runtime.execution_provider", "CPUExecutionProvider"],
    ),
    "option of another backend": ({"runtime.device": "GPU"}, ["runtime.device", "only to backend 'openvino'"]),
    "fp16 on ORT CPU": ({"runtime.precision": "fp16"}, ["runtime.precision", "fp16", "CPUExecutionProvider"]),
    "precision without peak": (
        {"runtime.precision": "int8", "device.peak_gflops.int8": None},
        ["device.peak_gflops.int8", "null"],
    ),
    "budget above device memory": ({"budgets.memory_mb": 999999}, ["budgets.memory_mb", "exceeds"]),
    "model larger than memory budget": ({"budgets.model_size_mb": 10000}, ["budgets.model_size_mb", "exceeds"]),
    "bad version specifier": ({"runtime.version": "latest"}, ["runtime.version", "PEP 440"]),
    "bad name": ({"name": "My Profile"}, ["name", "does not match"]),
    "wrong schema version": ({"schema_version": 2}, ["schema_version", "not one of: 1"]),
    "ort format on openvino": (
        {"runtime.backend": "openvino", "runtime.execution_provider": _DELETE, "runtime.format": "ort"},
        ["runtime.format", "only to backend 'onnxruntime'"],
    ),
    "missing latency table": ({"latency_table": "nope.json"}, ["latency_table", "does not exist"]),
    "infinite budget": ({"budgets.latency_ms": float("inf")}, ["budgets.latency_ms", "finite"]),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_profile_is_refused_with_one_sentence(case: str, tmp_path: Path) -> None:
    mutation, words = BROKEN[case]
    data = _base()
    for dotted, value in mutation.items():
        _set(data, dotted, value)
    path = _write(tmp_path, data)
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    message = str(info.value)
    assert "\n" not in message and message.endswith("."), message
    assert message.startswith(str(path)), "the message names the file"
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("name: [unclosed\n", ["not valid YAML", "line 2"]),
        ("", ["is empty"]),
        ("- a\n- b\n", ["holds a list"]),
        ("a: 1\nkey: : value\n", ["not valid YAML", "line 2, column 6"]),
    ],
)
def test_unparseable_files(content: str, words: list[str], tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    for word in words:
        assert word in str(info.value)


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "bin.yaml"
    path.write_bytes(b"\xff\xfe\x00name")
    with pytest.raises(ProfileError, match="not UTF-8"):
        load_profile(path)


@pytest.mark.parametrize("ref", ["../x", "../../etc/passwd", "a/b", "Jetson Orin", "..", ""])
def test_names_that_are_not_names_are_refused(ref: str) -> None:
    with pytest.raises(ProfileError, match="neither a shipped profile name"):
        load_profile(ref)


def test_unknown_name_suggests_close_match() -> None:
    with pytest.raises(ProfileError, match="did you mean 'jetson-orin-nano'"):
        load_profile("jetson-orin-nan")


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="does not exist"):
        load_profile(tmp_path / "none.yaml")


def test_latency_table_resolves_relative_to_profile(tmp_path: Path) -> None:
    (tmp_path / "tables").mkdir()
    (tmp_path / "tables" / "t.json").write_text("{}")
    data = _base()
    data["latency_table"] = "tables/t.json"
    p = load_profile(_write(tmp_path, data))
    assert p.latency_table_path == (tmp_path / "tables" / "t.json").resolve()


def test_profile_is_frozen() -> None:
    p = load_profile("cpu-host")
    with pytest.raises(AttributeError):
        p.name = "other"  # type: ignore[misc]
