"""LDR coefficients, recomposition and the training-time model (seeds-spec §1, §3)."""

from __future__ import annotations

import math

import pytest
import torch

from learngene_deploy.errors import ConfigError
from learngene_deploy.learngene.base import GeneratedViT
from learngene_deploy.learngene.ldr import LDRGenerator, basis_functions, coefficients, layer_positions
from learngene_deploy.models.vit import BLOCK_TENSORS, ArchSpec, block_key

# seeds-spec §1.1: T_n(x_l), rows l, columns n = 1..6.
CHEBYSHEV_L4 = [
    [+0.0000, -1.0000, -0.0000, +1.0000, +0.0000, -1.0000],
    [+0.2500, -0.8750, -0.6875, +0.5312, +0.9531, -0.0547],
    [+0.5000, -0.5000, -1.0000, -0.5000, +0.5000, +1.0000],
    [+0.7500, +0.1250, -0.5625, -0.9688, -0.8906, -0.3672],
]
CHEBYSHEV_L12 = {
    2: [+0.0833, -0.9861, -0.2477, +0.9448, +0.4052, -0.8773],
    12: [+0.9167, +0.6806, +0.3310, -0.0737, -0.4661, -0.7809],
}


def tiny_arch(**changes: object) -> ArchSpec:
    base = ArchSpec(img_size=16, patch_size=4, in_chans=3, num_classes=5, embed_dim=32, depth=3, num_heads=2)
    return base.replace(**changes)


def random_generator(genes: int = 4, **kwargs: object) -> LDRGenerator:
    torch.manual_seed(0)
    gen = LDRGenerator(tiny_arch(**kwargs.pop("arch", {})), genes, **kwargs)  # type: ignore[arg-type]
    with torch.no_grad():
        for p in gen.parameters():
            p.normal_()
    return gen


def test_chebyshev_matches_spec_test_vectors() -> None:
    assert torch.allclose(coefficients("chebyshev", 4, 6), torch.tensor(CHEBYSHEV_L4, dtype=torch.float64), atol=1e-4)
    c12 = coefficients("chebyshev", 12, 6)
    for layer, row in CHEBYSHEV_L12.items():
        assert torch.allclose(c12[layer - 1], torch.tensor(row, dtype=torch.float64), atol=1e-4)
    # The paper's worked examples, exactly: a(2,3) = T_3(1/12), a(4,3) = T_3(3/12) = -0.6875.
    assert c12[1, 2].item() == pytest.approx(-0.24769, abs=1e-5)
    assert c12[3, 2].item() == pytest.approx(-0.6875, abs=1e-12)


def test_chebyshev_equals_closed_form_and_offset_shifts() -> None:
    x = layer_positions(7)
    closed = torch.stack([torch.cos(n * torch.arccos(x)) for n in range(1, 9)], dim=1)
    assert torch.allclose(coefficients("chebyshev", 7, 8), closed, atol=1e-12)
    shifted = coefficients("chebyshev", 7, 8, offset=0)
    assert torch.allclose(shifted[:, 0], torch.ones(7, dtype=torch.float64))
    assert torch.allclose(shifted[:, 1:], closed[:, :7], atol=1e-12)


def test_other_bases_follow_their_documented_forms() -> None:
    x = torch.tensor([0.0, 0.25, 0.5, 0.9], dtype=torch.float64)
    taylor = basis_functions("taylor", x, 4)
    assert torch.allclose(taylor, torch.stack([x**j for j in range(4)], 1))
    legendre = basis_functions("legendre", x, 4)
    assert torch.allclose(legendre[:, 2], (3 * x**2 - 1) / 2)
    assert torch.allclose(legendre[:, 3], (5 * x**3 - 3 * x) / 2)
    fourier = basis_functions("fourier", x, 5)
    expected = [torch.ones_like(x), torch.sin(math.pi * x), torch.cos(math.pi * x)]
    expected += [torch.sin(2 * math.pi * x), torch.cos(2 * math.pi * x)]
    assert torch.allclose(fourier, torch.stack(expected, 1))
    # TLEG: θ_A + (l-1)/L · θ_B, with the last layer at (L-1)/L, not 1.
    assert torch.allclose(coefficients("linear", 4, 2), torch.tensor([[1, 0], [1, 0.25], [1, 0.5], [1, 0.75]]).double())


def test_layer_positions_options() -> None:
    assert layer_positions(4).tolist() == [0.0, 0.25, 0.5, 0.75]
    assert layer_positions(5, "unit").tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert layer_positions(3, "centered").tolist() == [-1.0, 0.0, 1.0]
    assert layer_positions(1, "centered").tolist() == [0.0]


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda: coefficients("bessel", 4, 2), "valid choices are chebyshev"),  # type: ignore[arg-type]
        (lambda: coefficients("linear", 4, 3), "at most 2 learngenes"),
        (lambda: coefficients("linear", 4, 2, offset=1), "no index offset"),
        (lambda: coefficients("chebyshev", 4, 2, offset=2), "must be 0"),
        (lambda: layer_positions(4, "log"), "valid choices are paper"),  # type: ignore[arg-type]
        (lambda: layer_positions(0), "at least 1"),
    ],
)
def test_invalid_coefficient_options_raise(call: object, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        call()  # type: ignore[operator]


@pytest.mark.parametrize("basis", ["chebyshev", "legendre", "taylor", "fourier"])
@pytest.mark.parametrize(("depth", "genes"), [(1, 1), (3, 4), (5, 2), (8, 3)])
def test_recomposed_block_tensors_equal_formula(basis: str, depth: int, genes: int) -> None:
    gen = random_generator(4, basis=basis)
    model = gen.recompose(depth=depth, genes=genes)
    state = model.state_dict()
    coef = coefficients(basis, depth, genes)  # type: ignore[arg-type]
    for layer in range(depth):
        for t in BLOCK_TENSORS:
            name = t.replace(".", "__")
            expected = sum(coef[layer, n].item() * gen.genes[n][name].detach().double() for n in range(genes))
            assert torch.allclose(state[block_key(layer, t)].double(), expected, atol=1e-6), (layer, t)
    for key, value in gen.shared.items():
        assert torch.equal(state[key.replace("__", ".")], value.detach())
    assert len(model.blocks) == depth


def test_linear_basis_is_tleg() -> None:
    gen = random_generator(2, basis="linear")
    state = gen.recompose(depth=6).state_dict()
    a, b = gen.genes[0]["mlp__fc1__weight"], gen.genes[1]["mlp__fc1__weight"]
    for layer in range(6):
        assert torch.allclose(state[block_key(layer, "mlp.fc1.weight")], a + (layer / 6) * b, atol=1e-6)


@pytest.mark.parametrize("layout", ["cls", "avg"])
def test_training_model_logits_equal_recomposed(layout: str) -> None:
    gen = random_generator(3, arch={"layout": layout})
    with torch.no_grad():
        for p in gen.parameters():
            p.mul_(0.1)  # keep activations in a sane range
    images = torch.randn(4, 3, 16, 16)
    training_logits = GeneratedViT(gen)(images)
    recomposed = gen.recompose()
    assert torch.allclose(training_logits, recomposed(images), atol=1e-5)
    assert training_logits.shape == (4, 5)


def test_one_gene_paper_indexing_makes_first_layer_identity_block() -> None:
    gen = random_generator(1)
    state = gen.recompose(depth=4).state_dict()
    for t in BLOCK_TENSORS:
        assert torch.count_nonzero(state[block_key(0, t)]) == 0


def test_new_genes_start_at_zero_so_ict_stages_are_function_preserving() -> None:
    torch.manual_seed(0)
    gen = LDRGenerator(tiny_arch(), 4)
    images = torch.randn(2, 3, 16, 16)
    gen.set_stage(1)
    one = GeneratedViT(gen)(images)
    gen.set_stage(4, 1)
    assert torch.allclose(one, GeneratedViT(gen)(images), atol=1e-6)
    assert [g["attn__qkv__weight"].requires_grad for g in gen.genes] == [False, True, True, True]


def test_set_stage_and_sizes_are_validated() -> None:
    gen = LDRGenerator(tiny_arch(), 4)
    with pytest.raises(ConfigError, match="stage must train"):
        gen.set_stage(5)
    with pytest.raises(ConfigError, match=r"k must be in 1\.\.4"):
        gen.generate(depth=3, genes=5)
    with pytest.raises(ConfigError, match="depth must be at least 1"):
        gen.generate(depth=0)


def test_resized_keeps_first_genes_and_resets_a_different_head() -> None:
    gen = random_generator(4)
    small = gen.resized(6, 2)
    assert small.train_arch.depth == 6 and small.num_genes == 2
    assert torch.equal(small.genes[1]["mlp__fc2__weight"], gen.genes[1]["mlp__fc2__weight"])
    assert torch.equal(small.state_dict()["shared.head__weight"], gen.state_dict()["shared.head__weight"])
    assert torch.allclose(
        small.recompose().state_dict()["blocks.5.norm1.weight"],
        gen.recompose(depth=6, genes=2).state_dict()["blocks.5.norm1.weight"],
    )
    other = gen.resized(2, 1, num_classes=7)
    assert other.shared["head__weight"].shape == (7, 32)
    assert torch.equal(other.shared["pos_embed"], gen.shared["pos_embed"])
