"""The training recipe through the loop: presets and overrides, Mixup/CutMix with the teacher on the mixed images,
label smoothing, drop-path, EMA, DataLoader workers, and exact resume with all of it on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from learngene_deploy.data import load_data
from learngene_deploy.data.contract import Preprocessing, eval_transform
from learngene_deploy.data.presets import PRESETS, resolve_recipe
from learngene_deploy.errors import ConfigError, DataError
from learngene_deploy.learngene.base import GeneratedViT
from learngene_deploy.learngene.lets import LeTsGenerator
from learngene_deploy.models.vit import ArchSpec, build_vit
from learngene_deploy.training.loop import CHECKPOINT_NAME, TrainConfig, distill_loss, load_checkpoint, train
from learngene_deploy.training.regularize import set_drop_path


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three classes of 24 small JPEGs (different sizes, so the random crop has work to do)."""
    root = tmp_path_factory.mktemp("recipe") / "imgs"
    rng = np.random.default_rng(0)
    for c in range(3):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(24):
            h, w = 20 + i % 5, 22 + i % 3
            Image.fromarray((rng.random((h, w, 3)) * 90 + 60 * c).astype(np.uint8)).save(root / f"class{c}/{i}.jpg")
    return root


@pytest.fixture(scope="module")
def images(folder: Path):  # type: ignore[no-untyped-def]
    return load_data(folder, img_size=16, val_fraction=0.25)


def lets() -> LeTsGenerator:
    torch.manual_seed(0)
    return LeTsGenerator(
        img_size=16, patch_size=8, in_chans=3, num_classes=3, head_dim=8, learngene_depth=2, learngene_dim=8,
        aux_depth=4, aux_dim=16,
    )  # fmt: skip


def test_resolve_recipe_presets_and_overrides() -> None:
    assert resolve_recipe("auto", images=True) == PRESETS["deit"]
    assert resolve_recipe("auto", images=False) == PRESETS["none"]
    changed = resolve_recipe("deit", ["mixup=0", "scale=0.2,1", "ema=0.999", "auto-augment=none", "re_count=2"])
    assert (changed.mixup, changed.scale, changed.ema, changed.auto_augment, changed.re_count) == (
        0.0, (0.2, 1.0), 0.999, None, 2,
    )  # fmt: skip
    assert changed.cutmix == PRESETS["deit"].cutmix  # the rest is the preset's
    for bad, match in [
        (["mixup"], "not KEY=VALUE"),
        (["blur=1"], "unknown recipe knob 'blur'"),
        (["mixup=lots"], "mixup='lots' is not a valid value"),
        (["hflip=2"], r"hflip must lie in \[0, 1\]"),
        (["ema=1.5"], "ema must lie strictly between 0 and 1"),
    ]:
        with pytest.raises(DataError, match=match):
            resolve_recipe("deit", bad)
    with pytest.raises(DataError, match="unknown augmentation preset 'strong'"):
        resolve_recipe("strong")


def test_label_smoothing_and_soft_targets_in_the_loss() -> None:
    torch.manual_seed(0)
    logits, labels = torch.randn(6, 5), torch.randint(0, 5, (6,))
    cfg = TrainConfig()
    smoothed = distill_loss(logits, labels, None, cfg, label_smoothing=0.1)
    assert torch.allclose(smoothed, F.cross_entropy(logits, labels, label_smoothing=0.1))
    assert not torch.allclose(smoothed, distill_loss(logits, labels, None, cfg))
    soft = torch.softmax(torch.randn(6, 5), -1)  # Mixup's targets: already smoothed, no second smoothing
    expected = -(soft * torch.log_softmax(logits, -1)).sum(-1).mean()
    assert torch.allclose(distill_loss(logits, soft, None, cfg, label_smoothing=0.1), expected, atol=1e-6)


def test_drop_path_rises_linearly_and_is_removed() -> None:
    from timm.layers import DropPath

    vit = build_vit(ArchSpec(img_size=16, patch_size=8, in_chans=3, num_classes=3, embed_dim=16, depth=3, num_heads=2))
    set_drop_path(vit, 0.2)
    rates = [getattr(b.drop_path1, "drop_prob", 0.0) for b in vit.blocks]
    assert rates == pytest.approx([0.0, 0.1, 0.2]) and isinstance(vit.blocks[2].drop_path2, DropPath)
    set_drop_path(vit, 0.0)
    assert all(isinstance(b.drop_path1, nn.Identity) and isinstance(b.drop_path2, nn.Identity) for b in vit.blocks)
    gen_vit = GeneratedViT(lets())
    set_drop_path(gen_vit, 0.1)
    gen_vit.eval()
    assert not gen_vit.skeleton.blocks[-1].drop_path1.training  # the skeleton follows train()/eval()


class Recorder(nn.Module):
    """Wraps a model and keeps every batch of images it sees."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.seen = model, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return self.model(x)


def test_teacher_sees_the_mixed_images_and_targets_are_soft(images) -> None:  # type: ignore[no-untyped-def]
    student = Recorder(GeneratedViT(lets()))
    teacher = Recorder(GeneratedViT(lets()).eval())
    cfg = TrainConfig(max_steps=3, batch_size=8, progress=False, recipe="deit")
    result = train(student, images, cfg, teacher=teacher)
    assert result.finished and np.isfinite(result.final_loss) and result.recipe["name"] == "deit"
    assert len(student.seen) == len(teacher.seen) == 3
    for s, t in zip(student.seen, teacher.seen, strict=True):
        assert torch.equal(s, t)
    plain = eval_transform(images.preprocessing)
    first = torch.stack([plain(images.train.path(i)) for i in range(8)])
    assert not any(torch.allclose(s, first) for s in student.seen)  # augmented and mixed, not the plain images


def test_odd_batch_with_mixup_is_refused(images) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="even batch"):
        train(GeneratedViT(lets()), images, TrainConfig(max_steps=1, batch_size=7, progress=False, recipe="deit"))


def test_deit_with_ema_resumes_exactly_and_workers_do_not_matter(images, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    recipe = PRESETS["deit"].replace(ema=0.9)

    def run(out: Path, workers: int, **kw: object) -> LeTsGenerator:
        gen = lets()
        cfg = TrainConfig(
            out=out, max_steps=7, batch_size=8, progress=False, recipe=recipe, workers=workers, lr=3e-3, **kw
        )  # type: ignore[arg-type]
        train(GeneratedViT(gen), images, cfg)
        return gen

    full = run(tmp_path / "full", 0)
    run(tmp_path / "split", 2, stop_after=5, ckpt_interval=5)  # 5 steps of 8 = 40 > 54 train images: into epoch 2
    assert load_checkpoint(tmp_path / "split" / CHECKPOINT_NAME)["ema"] is not None
    resumed = run(tmp_path / "split", 2, resume=True)
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    with pytest.raises(ConfigError, match="resume with the original recipe"):
        gen = lets()
        cfg = TrainConfig(out=tmp_path / "split", max_steps=7, batch_size=8, recipe="light", resume=True)
        train(GeneratedViT(gen), images, cfg)


def test_ema_weights_are_the_result(images) -> None:  # type: ignore[no-untyped-def]
    no_ema, with_ema = lets(), lets()
    cfg = TrainConfig(max_steps=4, batch_size=8, progress=False, lr=3e-3, seed=1)
    train(GeneratedViT(no_ema), images, TrainConfig(**{**cfg.__dict__, "recipe": "light"}))
    train(GeneratedViT(with_ema), images, TrainConfig(**{**cfg.__dict__, "recipe": PRESETS["light"].replace(ema=0.5)}))
    start = lets().state_dict()
    for k, v in with_ema.state_dict().items():  # EMA with decay 0.5 lies between the start and the trained weights
        if not torch.equal(start[k], no_ema.state_dict()[k]):
            assert not torch.equal(v, no_ema.state_dict()[k]), k
            break
    else:
        pytest.fail("training changed nothing")


def test_in_memory_batches_equal_the_per_image_transform() -> None:
    digits = load_data("digits", img_size=12, train_limit=40, val_limit=8)  # 8x8 images: the batch path resizes
    batch, labels = digits.train.batch(list(range(40)))
    single = torch.stack([digits.train[i][0] for i in range(40)])
    assert torch.equal(batch, single) and labels.tolist() == [digits.train[i][1] for i in range(40)]
    rgb = Preprocessing.imagenet(12)
    arrays = np.random.default_rng(0).integers(0, 255, (5, 20, 17, 3), dtype=np.uint8)
    transform = eval_transform(rgb)
    assert torch.equal(transform.batch(arrays), torch.stack([transform(a) for a in arrays]))


def test_deit_randaugment_posterize_to_zero_bits_is_not_a_bad_image() -> None:
    """RandAugment inc1 at magnitude 10 keeps 0 bits, which Pillow 13 rejects: the deit transform must not raise."""
    from timm.data.auto_augment import RandAugment

    from learngene_deploy.data.presets import TrainTransform

    transform = TrainTransform(PRESETS["deit"], Preprocessing.imagenet(16))
    ra = next(t for t in transform._timm.transforms if isinstance(t, RandAugment))
    posterize = next(op for op in ra.ops if op.name.startswith("Posterize"))
    posterize.prob, posterize.magnitude, posterize.magnitude_std = 1.0, 10, 0  # always, at the top magnitude
    image = Image.fromarray(np.random.default_rng(0).integers(1, 255, (20, 20, 3), dtype=np.uint8))
    assert np.asarray(posterize(image)).max() == 0  # 0 bits kept: black, as Pillow < 13 gave


def test_truncated_image_in_a_worker_stops_or_is_skipped_and_recorded(folder: Path, tmp_path: Path) -> None:
    import shutil

    from learngene_deploy.learngene.io import read_metadata
    from learngene_deploy.training.recipes import train_learngene

    root = Path(shutil.copytree(folder, tmp_path / "imgs"))
    good = (root / "class1" / "0.jpg").read_bytes()
    (root / "class1" / "truncated.jpg").write_bytes(good[: len(good) // 3])
    strict = load_data(root, img_size=16, val_fraction=0.25)
    truncated = str(root / "class1" / "truncated.jpg")
    assert truncated in [str(strict.train.path(i)) for i in range(len(strict.train))]  # it is in the training split
    cfg = TrainConfig(max_steps=8, batch_size=8, progress=False, recipe="light", workers=2)
    with pytest.raises(DataError, match=f"cannot read image {truncated} .*on_bad_image='skip'"):
        train(GeneratedViT(lets()), strict, cfg)
    lenient = load_data(root, img_size=16, val_fraction=0.25, on_bad_image="skip")
    gen = lets()
    with pytest.warns(UserWarning, match="skipped unreadable image .*truncated.jpg"):
        result = train_learngene(gen, lenient, cfg, out_file=tmp_path / "lg.safetensors", sizes=[{"depth": 4}])
    assert result.finished and result.bad_images == [truncated]
    assert read_metadata(tmp_path / "lg.safetensors")["training"]["bad_images"] == {
        "skipped": 1, "examples": [truncated],
    }  # fmt: skip
