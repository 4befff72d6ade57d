"""The learngenes shipped inside the package: present, small, self-describing, and usable offline."""

from __future__ import annotations

import pytest

from learngene_deploy.learngene.io import load_learngene, read_metadata
from learngene_deploy.shipped import default_learngene, list_shipped_learngenes, resolve_learngene
from learngene_deploy.sizing.candidates import candidates_from_metadata
from learngene_deploy.sizing.cost import count_params

SHIPPED = list_shipped_learngenes()
EXPECTED = {"ldr-fashion-mnist": "ldr", "lets-fashion-mnist": "lets"}


def test_one_learngene_of_each_method_is_shipped() -> None:
    assert {name: read_metadata(path)["method"] for name, path in SHIPPED.items()} == EXPECTED


def test_shipped_learngenes_fit_in_ten_megabytes() -> None:
    assert sum(p.stat().st_size for p in SHIPPED.values()) <= 10 * 2**20


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_metadata_records_provenance_and_accuracy(name: str) -> None:
    meta = read_metadata(SHIPPED[name])
    training = meta["training"]
    assert training["data"]["name"] == "fashion-mnist" and training["data"]["fingerprint"]
    assert isinstance(training["seed"], int) and training["steps"] > 0 and training["wall_time_s"] > 0
    rows = meta["accuracy"]
    assert len(rows) >= 8 and all(0.0 <= r["top1"] <= 1.0 for r in rows)
    best = max(r["top1"] for r in rows)
    assert best > 0.7, f"the best size of {name} reaches only {best:.1%} on Fashion-MNIST"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_candidate_recomposes_from_metadata_alone(name: str) -> None:
    import torch

    generator = load_learngene(SHIPPED[name])
    for candidate in candidates_from_metadata(read_metadata(SHIPPED[name])):
        model = generator.recompose(**candidate.size).eval()
        arch = candidate.arch
        with torch.no_grad():
            out = model(torch.zeros(1, arch.in_chans, arch.img_size, arch.img_size))
        assert out.shape == (1, arch.num_classes)
        assert sum(p.numel() for p in model.parameters()) == count_params(arch).total


def test_default_and_names_resolve() -> None:
    assert default_learngene() == SHIPPED["lets-fashion-mnist"]
    assert resolve_learngene("ldr-fashion-mnist") == SHIPPED["ldr-fashion-mnist"]
