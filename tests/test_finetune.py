"""Fine-tuning after recomposition: unconstrained (plain ViT) and constrained (learngenes recomputed every step)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from learngene_deploy.data import load_data
from learngene_deploy.errors import ConfigError
from learngene_deploy.learngene.ldr import LDRGenerator
from learngene_deploy.models.io import load_model, save_model
from learngene_deploy.models.vit import BLOCK_TENSORS, ArchSpec, block_key
from learngene_deploy.training.finetune import finetune, prepare
from learngene_deploy.training.loop import TrainConfig

ARCH = ArchSpec(img_size=16, patch_size=4, in_chans=3, num_classes=10, embed_dim=32, depth=4, num_heads=2)


@pytest.fixture(scope="module")
def digits():  # type: ignore[no-untyped-def]
    return load_data("digits", img_size=16, train_limit=128, val_limit=64)


@pytest.fixture
def gen() -> LDRGenerator:
    torch.manual_seed(0)
    g = LDRGenerator(ARCH, 4)
    with torch.no_grad():
        for p in g.parameters():
            p.normal_(std=0.02)
    return g


def block_params(arch: ArchSpec) -> int:
    d, h = arch.embed_dim, arch.mlp_hidden
    return 4 * d + (3 * d * d + 3 * d) + (d * d + d) + (h * d + h) + (d * h + d)


@pytest.mark.parametrize(("depth", "genes"), [(6, 2), (2, 3), (8, 1)])
def test_constrained_trainable_params_are_k_blocks_plus_shared(gen: LDRGenerator, depth: int, genes: int) -> None:
    module, arch = prepare(gen, "constrained", {"depth": depth, "genes": genes})
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    shared = sum(p.numel() for p in gen.shared.parameters())
    assert trainable == genes * block_params(ARCH) + shared
    assert arch.depth == depth
    plain, _ = prepare(gen, "unconstrained", {"depth": depth, "genes": genes})
    assert sum(p.numel() for p in plain.parameters() if p.requires_grad) == depth * block_params(ARCH) + shared


def test_constrained_finetune_keeps_the_linear_structure(gen: LDRGenerator, digits) -> None:  # type: ignore[no-untyped-def]
    cfg = TrainConfig(max_steps=3, batch_size=32, progress=False, lr=1e-2)
    original = {k: v.clone() for k, v in gen.state_dict().items()}
    done = finetune(gen, digits, cfg, mode="constrained", size={"depth": 6, "genes": 2})
    assert done.result.finished and 0.0 <= done.top1 <= 1.0
    assert done.trainable_params == 2 * block_params(ARCH) + sum(p.numel() for p in gen.shared.parameters())
    state = done.model.state_dict()
    before = gen.recompose(depth=6, genes=2).state_dict()
    assert not torch.equal(state[block_key(3, "mlp.fc1.weight")], before[block_key(3, "mlp.fc1.weight")])
    # every layer is still Σ_n a(l, n)·A_n: layers are a rank-2 (k=2) combination of two learngenes
    coef = gen.coefficients(6, 2).float()
    for t in BLOCK_TENSORS:
        layers = torch.stack([state[block_key(i, t)] for i in range(6)]).flatten(1)
        solved = torch.linalg.lstsq(coef, layers).solution
        assert torch.allclose(coef @ solved, layers, atol=1e-5), t
    assert all(torch.equal(v, original[k]) for k, v in gen.state_dict().items()), "source learngene was modified"


def test_unconstrained_finetune_trains_independent_layers(gen: LDRGenerator, digits, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    small = load_data("digits", img_size=16, train_limit=128, val_limit=32)
    twelve = type(small)(small.train, small.val, 12, small.info)  # pretend 12 classes: the head is re-initialised
    cfg = TrainConfig(max_steps=2, batch_size=32, progress=False)
    done = finetune(gen, twelve, cfg, mode="unconstrained", size={"depth": 3, "genes": 4})
    assert done.arch.depth == 3 and done.arch.num_classes == 12
    assert done.model.head.weight.shape == (12, 32)
    assert done.trainable_params == sum(p.numel() for p in done.model.parameters())
    path = save_model(tmp_path / "m.safetensors", done.model, done.arch, {"mode": "unconstrained"})
    again = load_model(path)
    images = torch.from_numpy(digits.arrays("val", 3)[0])
    assert torch.equal(again.eval()(images), done.model.eval()(images))


def test_unknown_mode(gen: LDRGenerator) -> None:
    with pytest.raises(ConfigError, match="valid modes"):
        prepare(gen, "partial", {})  # type: ignore[arg-type]
