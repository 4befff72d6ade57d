"""LeTs generator: parameter budget, Aux-Net equivalence, Des-Net shapes, widths, depths and errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from learngene_deploy.cli import app
from learngene_deploy.errors import ConfigError, LearngeneError
from learngene_deploy.learngene.base import skeleton_forward
from learngene_deploy.learngene.lets import MODULES, STRATEGIES, LeTsGenerator, virtual_sequence
from learngene_deploy.models.vit import build_vit

runner = CliRunner()
TINY = dict(img_size=16, patch_size=4, num_classes=5, head_dim=8, learngene_dim=16, aux_dim=32)


@pytest.fixture(scope="module")
def gen() -> LeTsGenerator:
    torch.manual_seed(0)
    g = LeTsGenerator(**TINY, learngene_depth=4, aux_depth=8)
    with torch.no_grad():  # move away from the init (zero biases, near-identity G) so mixing and selection matter
        for p in g.blocks.parameters():
            p.add_(torch.randn_like(p) * 0.02)
        for p in (*g.g.values(), *g.h.values()):
            p.add_(torch.randn_like(p) * 0.3)
        for f in (g.F_e, *g.F_q, *g.F_k, *g.F_v, *g.F_ffn):
            f.mul_(torch.rand(f.shape[0], 1) * 3)
    return g


def test_paper_scale_parameter_budget() -> None:
    with torch.device("meta"):
        g = LeTsGenerator()  # learngene 8 x 384, Aux 16 x 768, 1000 classes, 224 / 16
        untied = LeTsGenerator(tie_rows=False)
    budget = g.parameter_budget()
    assert budget["total"] == sum(p.numel() for p in g.parameters()) == 37_735_784
    assert budget["learngene"] == 14_876_776  # the paper's 14.88M (15.0M with its unused pos_embed)
    assert budget["depth_G"] == 8 * 8 * 4
    assert untied.parameter_budget()["total"] - budget["total"] == 8 * 8 * 4  # untying doubles the G rows
    assert g.F_e.shape == g.F_cls.shape == g.F_q[0].shape == (384, 384)
    assert g.F_ffn[7].shape == (1536, 1536) and len(g.F_v) == 8
    for (depth, width), count in {(12, 768): 86_566_120, (12, 384): 22_049_896}.items():  # Des-H12-L12, Des-H6-L12
        arch, params = g.generate(depth=depth, width=width)  # shapes only: the generator lives on the meta device
        assert arch.num_heads == width // 64 and sum(p.numel() for p in params.values()) == count


def test_initialisation_matches_paper() -> None:
    torch.manual_seed(1)
    g = LeTsGenerator(**TINY, learngene_depth=2, aux_depth=4)
    for f in (g.F_e, g.F_cls, g.F_q[0], g.F_ffn[1]):
        assert f.min() >= 0 and torch.allclose(f.sum(1), torch.ones(f.shape[0]))
    for coef in (*g.g.values(), *g.h.values()):
        rows = coef.view(-1, 2)
        assert torch.allclose(rows.sum(1), torch.ones(rows.shape[0])) and (rows[:, 1] < 0.03).all()


def test_virtual_sequences() -> None:
    paper = [0, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 7]  # README list for Des-H12-L12 (V0, V1, V2, V2, ...)
    assert virtual_sequence(12, 8, 2) == paper
    assert virtual_sequence(16, 8, 2) == [k for k in range(8) for _ in range(2)]
    assert virtual_sequence(8, 8, 2) == list(range(8))
    assert virtual_sequence(4, 8, 2) == [0, 2, 5, 7]
    assert virtual_sequence(1, 8, 2) == [0]
    assert virtual_sequence(16, 16, 1) == list(range(16))
    for depth in range(1, 17):
        seq = virtual_sequence(depth, 8, 2)
        assert len(seq) == depth and seq == sorted(seq) and seq[0] == 0 and (depth == 1 or seq[-1] == 7)


def test_paper_grouping() -> None:
    with torch.device("meta"):
        g = LeTsGenerator()
    # Aux layer i draws on learngene pair i // 4 through virtual layer i // 2.
    assert [g.pair_of(i // 2) for i in range(16)] == [i // 4 for i in range(16)]


def test_aux_net_forward_is_differentiable(gen: LeTsGenerator) -> None:
    params = gen()
    skeleton = build_vit(gen.train_arch)
    assert {k: v.shape for k, v in params.items()} == {k: v.shape for k, v in skeleton.state_dict().items()}
    skeleton_forward(skeleton, params, torch.randn(2, 3, 16, 16)).square().sum().backward()
    for name, p in gen.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    gen.zero_grad(set_to_none=True)


@pytest.mark.parametrize("strategy", ["continuous", "top-l2"])
def test_des_net_at_aux_size_reproduces_aux_net(gen: LeTsGenerator, strategy: str) -> None:
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        aux_logits = skeleton_forward(build_vit(gen.train_arch), gen(), x)
    assert gen.generate(depth=8, width=32, strategy=strategy)[0] == gen.train_arch
    model = gen.recompose(depth=8, width=32, strategy=strategy).eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), aux_logits)


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize(("depth", "width"), [(1, 16), (3, 24), (6, 24), (8, 32)])
def test_every_strategy_loads_into_timm(gen: LeTsGenerator, strategy: str, depth: int, width: int) -> None:
    model = gen.recompose(depth=depth, width=width, strategy=strategy)  # strict load_state_dict
    assert model.embed_dim == width and len(model.blocks) == depth and model.blocks[0].attn.num_heads == width // 8
    assert model.cls_token is None and model.pos_embed.shape == (1, 16, width)
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 5)


def test_learngene_appears_unchanged_in_first_rows_and_columns(gen: LeTsGenerator) -> None:
    _, small = gen.generate(depth=4, width=16)
    _, wide = gen.generate(depth=4, width=32, strategy="bottom-l1")
    assert torch.equal(small["patch_embed.proj.weight"], gen.patch_embed.weight)
    assert torch.equal(small["head.weight"], gen.head.weight) and torch.equal(small["fc_norm.bias"], gen.fc_norm.bias)
    assert torch.equal(wide["head.weight"][:, :16], gen.head.weight)
    assert torch.equal(wide["patch_embed.proj.weight"][:16], gen.patch_embed.weight)
    assert torch.equal(wide["pos_embed"][..., :16], gen.pos_embed[..., :16])
    # Block t of a 4-layer Des-Net is virtual layer t = G row t mixing the learngene pair t // 2.
    for t in range(4):
        a, b = gen.blocks[2 * (t // 2)], gen.blocks[2 * (t // 2) + 1]
        g, h = gen.g["fc1"].view(-1, 2)[t], gen.h["fc1"].view(-1, 2)[t]
        torch.testing.assert_close(small[f"blocks.{t}.mlp.fc1.weight"], g[0] * a.fc1.weight + g[1] * b.fc1.weight)
        torch.testing.assert_close(small[f"blocks.{t}.mlp.fc1.bias"], h[0] * a.fc1.bias + h[1] * b.fc1.bias)
        gq = gen.g["q"].view(-1, 2)[t]
        torch.testing.assert_close(small[f"blocks.{t}.attn.qkv.weight"][:16], gq[0] * a.q.weight + gq[1] * b.q.weight)
        for key in ("attn.qkv.weight", "attn.proj.weight", "mlp.fc1.weight", "mlp.fc2.weight", "norm1.weight"):
            s, w = small[f"blocks.{t}.{key}"], wide[f"blocks.{t}.{key}"]
            if key == "attn.qkv.weight":  # fused q, k, v: compare each part's first 16 rows
                w = torch.cat([part[:16] for part in w.chunk(3)])
            rows = w[: s.shape[0]]
            torch.testing.assert_close(rows[:, : s.shape[1]] if s.ndim == 2 else rows, s)


def test_width_expansion_formula(gen: LeTsGenerator) -> None:
    """Aux layer 2 (virtual layer 1, pair (0, 1)) against the spec's §2.3 formulas written out by hand."""

    def grow(w: torch.Tensor, f_out: torch.Tensor, f_in: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.cat([w, w @ f_in.T], 1), torch.cat([f_out @ w, f_out @ w @ f_in.T], 1)])

    params = gen()
    fe = gen.F_e
    for name, key, f_out, f_in in (
        ("proj", "attn.proj.weight", lambda j: fe, lambda j: gen.F_v[j]),
        ("fc2", "mlp.fc2.weight", lambda j: fe, lambda j: gen.F_ffn[j]),
        ("fc1", "mlp.fc1.weight", lambda j: gen.F_ffn[j], lambda j: fe),
    ):
        g = gen.g[name].view(-1, 2)[1]
        ws = [grow(getattr(gen.blocks[j], name).weight, f_out(j), f_in(j)) for j in (0, 1)]
        torch.testing.assert_close(params[f"blocks.2.{key}"], g[0] * ws[0] + g[1] * ws[1])
    assert torch.equal(params["blocks.2.mlp.fc2.weight"], params["blocks.3.mlp.fc2.weight"])  # tied rows
    v = [torch.cat([gen.blocks[j].v.bias, gen.F_v[j] @ gen.blocks[j].v.bias]) for j in (0, 1)]
    h = gen.h["v"].view(-1, 2)[1]
    torch.testing.assert_close(params["blocks.2.attn.qkv.bias"][64:], h[0] * v[0] + h[1] * v[1])
    torch.testing.assert_close(params["head.weight"], torch.cat([gen.head.weight, gen.head.weight @ gen.F_cls.T], 1))
    torch.testing.assert_close(params["fc_norm.bias"], torch.cat([gen.fc_norm.bias, fe @ gen.fc_norm.bias]))
    assert torch.equal(params["pos_embed"], gen.pos_embed)


def test_learngene_exact_when_g_selects_one_layer() -> None:
    torch.manual_seed(2)
    g = LeTsGenerator(**TINY, learngene_depth=2, aux_depth=4)
    with torch.no_grad():
        for m in MODULES:
            g.g[m].copy_(torch.tensor([1.0, 0.0, 0.0, 1.0]))
            g.h[m].copy_(torch.tensor([1.0, 0.0, 0.0, 1.0]))
    _, p = g.generate(depth=2, width=32, strategy="top-l1")
    for t in range(2):
        assert torch.equal(p[f"blocks.{t}.mlp.fc2.weight"][:16, :64], g.blocks[t].fc2.weight)
        assert torch.equal(p[f"blocks.{t}.attn.proj.bias"][:16], g.blocks[t].proj.bias)
        assert torch.equal(p[f"blocks.{t}.norm2.weight"][:16], g.blocks[t].norm2.weight)


def test_selection_uses_consistent_index_sets() -> None:
    torch.manual_seed(3)
    g = LeTsGenerator(**TINY, learngene_depth=2, aux_depth=4)
    with torch.no_grad():  # make residual row 5, new attention head 1 and hidden row 7 the largest
        g.F_e[5].mul_(10)
        g.F_k[1][8:16].mul_(10)
        g.F_ffn[0][7].mul_(10)
    _, p = g.generate(depth=2, width=24, strategy="top-l2")
    _, full = g.generate(depth=2, width=32)

    def top(rows: torch.Tensor, n: int, offset: int) -> list[int]:
        return [
            *range(offset),
            *(offset + torch.linalg.vector_norm(rows, dim=1).topk(n).indices.sort().values).tolist(),
        ]

    res = top(g.F_e, 8, 16)
    hidden = top(torch.cat([g.F_ffn[0], g.F_ffn[1]], dim=1), 32, 64)
    attn = [*range(16), *range(24, 32)]  # learngene channels + new head 1, for q, k and v alike
    assert 16 + 5 in res and 64 + 7 in hidden
    torch.testing.assert_close(p["pos_embed"], full["pos_embed"][..., res])
    torch.testing.assert_close(p["head.weight"], full["head.weight"][:, res])
    torch.testing.assert_close(p["patch_embed.proj.bias"], full["patch_embed.proj.bias"][res])
    torch.testing.assert_close(p["fc_norm.weight"], full["fc_norm.weight"][res])
    for t in range(2):
        q, k, v = full[f"blocks.{t}.attn.qkv.weight"].chunk(3)
        qkv = torch.cat([x[attn][:, res] for x in (q, k, v)])
        torch.testing.assert_close(p[f"blocks.{t}.attn.qkv.weight"], qkv)
        torch.testing.assert_close(
            p[f"blocks.{t}.attn.proj.weight"], full[f"blocks.{t}.attn.proj.weight"][res][:, attn]
        )
        torch.testing.assert_close(p[f"blocks.{t}.mlp.fc1.weight"], full[f"blocks.{t}.mlp.fc1.weight"][hidden][:, res])
        torch.testing.assert_close(p[f"blocks.{t}.mlp.fc2.weight"], full[f"blocks.{t}.mlp.fc2.weight"][res][:, hidden])
        torch.testing.assert_close(p[f"blocks.{t}.norm2.bias"], full[f"blocks.{t}.norm2.bias"][res])


def test_metadata_round_trip(gen: LeTsGenerator) -> None:
    clone = LeTsGenerator.from_metadata(gen.metadata())
    clone.load_state_dict(gen.state_dict())
    for (k, a), b in zip(gen().items(), clone().values(), strict=True):
        assert torch.equal(a, b), k
    with pytest.raises(LearngeneError, match="LeTs metadata is incomplete or malformed"):
        LeTsGenerator.from_metadata({k: v for k, v in gen.metadata().items() if k != "aux_dim"})


@pytest.mark.parametrize(
    ("size", "match"),
    [
        (dict(depth=0, width=16), "depth 0 is out of range; LeTs Des-Nets can have 1 to 8 layers"),
        (dict(depth=9, width=16), "depth 9 is out of range"),
        (dict(depth=2, width=8), "width 8 is not supported .* multiple of 8 from 16 to 32"),
        (dict(depth=2, width=40), "width 40 is not supported"),
        (dict(depth=2, width=20), "width 20 is not supported"),
        (dict(depth=2, width=16, strategy="top-l3"), "unknown selection strategy 'top-l3'; valid strategies are"),
    ],
)
def test_invalid_sizes_raise_config_error(gen: LeTsGenerator, size: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        gen.generate(**size)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(learngene_depth=3, aux_depth=6), "even learngene depth"),
        (dict(learngene_depth=4, aux_depth=6), "multiple of it"),
        (dict(learngene_depth=2, aux_depth=4, aux_dim=12), "multiples of head_dim 8"),
        (dict(learngene_depth=2, aux_depth=4, learngene_dim=40), "Aux width >= learngene width"),
    ],
)
def test_invalid_construction_raises_config_error(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        LeTsGenerator(**{**TINY, **kwargs})


def test_other_depth_ratios() -> None:
    g = LeTsGenerator(**TINY, learngene_depth=2, aux_depth=6)  # r = 3: one pair, three virtual layers run twice
    assert g.num_virtual == 3 and [g.pair_of(k) for k in range(3)] == [0, 0, 0]
    assert len(g.g["q"]) == 6
    untied = LeTsGenerator(**TINY, learngene_depth=4, aux_depth=8, tie_rows=False)
    assert untied.num_virtual == 8 and [untied.pair_of(k) for k in range(8)] == [0, 0, 0, 0, 1, 1, 1, 1]
    arch, params = untied.generate(depth=8, width=32)
    assert arch == untied.train_arch and not torch.equal(
        params["blocks.0.norm1.weight"], params["blocks.1.norm1.weight"]
    )


def test_train_lets_cli_resumes_exactly_and_stores_accuracy_table(tmp_path: Path) -> None:
    from learngene_deploy.learngene.io import load_learngene, read_metadata

    common = [
        "train", "lets", "--data", "digits", "--img-size", "16", "--head-dim", "8", "--learngene-dim", "16",
        "--aux-dim", "32", "--learngene-depth", "2", "--aux-depth", "4", "--max-steps", "4", "--batch-size", "32",
        "--train-limit", "256", "--val-limit", "64", "--table-depths", "2,4", "--no-progress",
    ]  # fmt: skip
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert runner.invoke(app, [*common, "--out", str(straight)]).exit_code == 0
    stopped = runner.invoke(app, [*common, "--out", str(split), "--stop-after", "2", "--ckpt-interval", "1"])
    assert stopped.exit_code == 0 and "continue with --resume" in stopped.stdout
    assert runner.invoke(app, [*common, "--out", str(split), "--resume"]).exit_code == 0
    a, b = (load_learngene(d / "learngene.safetensors") for d in (straight, split))
    assert isinstance(a, LeTsGenerator) and a.metadata() == b.metadata()
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), name
    meta = read_metadata(straight / "learngene.safetensors")
    assert [(r["depth"], r["width"]) for r in meta["accuracy"]] == [
        (2, 16),
        (2, 24),
        (2, 32),
        (4, 16),
        (4, 24),
        (4, 32),
    ]
    assert meta["sizes"]["width"] == [16, 24, 32] and all(0 <= r["top1"] <= 1 for r in meta["accuracy"])
    bad = runner.invoke(app, [*common, "--out", str(tmp_path / "bad"), "--table-widths", "20"])
    assert bad.exit_code != 0 and "--table-widths '20' holds unsupported values [20]" in bad.output


@pytest.mark.parametrize("source", ["digits", "folder"])
def test_killed_train_run_resumes_from_its_checkpoint(tmp_path: Path, lgdeploy_argv: list[str], source: str) -> None:
    """SIGKILL a real `lgdeploy train lets` after a checkpoint; `--resume` finishes it exactly as an unbroken run.

    ``folder``: JPEGs streamed by two DataLoader workers with the deit recipe (RandAugment, Mixup/CutMix, random
    erasing, drop-path) and an EMA, so the sampler position and every random stream must come back exactly.
    """
    import os
    import signal
    import subprocess
    import time

    import numpy as np
    from PIL import Image

    from learngene_deploy.learngene.io import load_learngene
    from learngene_deploy.training.loop import CHECKPOINT_NAME, load_checkpoint

    data, recipe = ["--data", "digits"], []
    if source == "folder":
        rng = np.random.default_rng(0)
        for c in range(4):
            (tmp_path / "imgs" / f"c{c}").mkdir(parents=True)
            for i in range(40):
                pixels = (rng.random((18, 22, 3)) * 90 + 50 * c).astype(np.uint8)
                Image.fromarray(pixels).save(tmp_path / "imgs" / f"c{c}" / f"{i}.jpg")
        data = ["--data", str(tmp_path / "imgs")]
        recipe = ["--recipe", "deit", "--aug", "ema=0.9", "--workers", "2"]
    common = [
        *lgdeploy_argv, "train", "lets", *data, *recipe, "--img-size", "16", "--head-dim", "8",
        "--learngene-dim", "16", "--aux-dim", "32", "--learngene-depth", "2", "--aux-depth", "4", "--max-steps", "150",
        "--batch-size", "32", "--train-limit", "256", "--val-limit", "64", "--table-depths", "4", "--table-widths",
        "32", "--ckpt-interval", "5", "--no-progress",
    ]  # fmt: skip
    killed = tmp_path / "killed"
    checkpoint = killed / CHECKPOINT_NAME
    with subprocess.Popen([*common, "--out", str(killed)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as p:
        deadline = time.monotonic() + 300
        while not checkpoint.is_file() and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(p.pid, signal.SIGKILL)
    assert p.returncode == -signal.SIGKILL, "the run ended before its first checkpoint was seen"
    assert not (killed / "learngene.safetensors").exists(), "a killed run must not leave a learngene file"
    step = load_checkpoint(checkpoint)["step"]
    assert 0 < step < 150 and step % 5 == 0

    resumed = subprocess.run([*common, "--out", str(killed), "--resume"], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    straight = subprocess.run([*common, "--out", str(tmp_path / "straight")], capture_output=True, text=True)
    assert straight.returncode == 0, straight.stderr
    a, b = (load_learngene(d / "learngene.safetensors") for d in (tmp_path / "straight", killed))
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), name
