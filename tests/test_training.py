"""The generic training loop: ICT freezing, schedule, distillation, checkpoint + exact resume, DDP under torchrun."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from learngene_deploy.data import load_data
from learngene_deploy.errors import ConfigError
from learngene_deploy.learngene.base import GeneratedViT
from learngene_deploy.learngene.io import load_learngene, read_metadata, save_learngene
from learngene_deploy.learngene.ldr import LDRGenerator
from learngene_deploy.models.vit import ArchSpec
from learngene_deploy.training.loop import (
    CHECKPOINT_NAME,
    Phase,
    TrainConfig,
    distill_loss,
    load_checkpoint,
    lr_at,
    make_optimizer,
    train,
)
from learngene_deploy.training.recipes import accuracy_table, train_learngene
from learngene_deploy.training.teacher import load_teacher

ROOT = Path(__file__).resolve().parents[1]
ARCH = ArchSpec(img_size=16, patch_size=4, in_chans=3, num_classes=10, embed_dim=32, depth=2, num_heads=2)


@pytest.fixture(scope="module")
def digits():  # type: ignore[no-untyped-def]
    return load_data("digits", img_size=16, train_limit=256, val_limit=64)


def ict(gen: LDRGenerator, counts: list[int]) -> list[Phase]:
    prevs = [0, *counts[:-1]]
    return [Phase(f"g{c}", lambda c=c, p=p: gen.set_stage(c, p)) for p, c in zip(prevs, counts, strict=True)]


def fresh(genes: int = 3) -> LDRGenerator:
    torch.manual_seed(0)
    return LDRGenerator(ARCH, genes)


def test_lr_schedule_warms_up_and_decays_per_stage() -> None:
    cfg = TrainConfig(lr=1.0, min_lr=0.1, warmup=0.2)
    lrs = [lr_at(s, 10, cfg) for s in range(10)]
    assert lrs[0] == pytest.approx(0.5) and lrs[1] == pytest.approx(1.0)
    assert all(a >= b for a, b in itertools.pairwise(lrs[1:]))
    assert lrs[-1] > 0.1 and lr_at(10, 10, cfg) == pytest.approx(0.1)


def test_optimizer_decays_only_matrices_and_skips_frozen() -> None:
    gen = LDRGenerator(ARCH.replace(layout="cls"), 3)
    gen.set_stage(3, 1)
    opt = make_optimizer(GeneratedViT(gen), TrainConfig(weight_decay=0.05))
    decay, no_decay = (set(map(id, g["params"])) for g in opt.param_groups)
    assert opt.param_groups[0]["weight_decay"] == 0.05 and opt.param_groups[1]["weight_decay"] == 0.0
    in_opt = decay | no_decay
    assert not any(id(p) in in_opt for p in gen.genes[0].parameters())
    assert all(id(p) in in_opt for g in gen.genes[1:] for p in g.parameters())
    assert id(gen.genes[1]["mlp__fc1__weight"]) in decay and id(gen.genes[1]["mlp__fc1__bias"]) in no_decay
    assert id(gen.shared["pos_embed"]) in no_decay and id(gen.shared["cls_token"]) in no_decay
    assert id(gen.shared["patch_embed__proj__weight"]) in decay and id(gen.shared["head__weight"]) in decay


def test_ict_trains_only_new_genes(digits) -> None:  # type: ignore[no-untyped-def]
    gen = fresh()
    snapshots = {}

    def stage2() -> None:
        snapshots["g1"] = gen.genes[0]["attn__qkv__weight"].detach().clone()
        snapshots["shared"] = gen.shared["head__weight"].detach().clone()
        gen.set_stage(3, 1)

    stages = [Phase("g1", lambda: gen.set_stage(1)), Phase("g2-3", stage2)]
    result = train(GeneratedViT(gen), digits, TrainConfig(max_steps=3, batch_size=32, progress=False), phases=stages)
    assert result.steps == 6 and result.finished
    assert torch.equal(gen.genes[0]["attn__qkv__weight"], snapshots["g1"]), "frozen learngene changed"
    assert not torch.equal(gen.shared["head__weight"], snapshots["shared"]), "shared params must keep training"
    assert (
        torch.count_nonzero(gen.genes[1]["attn__qkv__weight"]) > 0
        and torch.count_nonzero(gen.genes[2]["mlp__fc2__weight"]) > 0
    )


def test_checkpoint_resume_is_exact(digits, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    def run(out: Path, **kw: object) -> LDRGenerator:
        gen = fresh()
        cfg = TrainConfig(out=out, max_steps=3, batch_size=32, progress=False, lr=3e-3, **kw)  # type: ignore[arg-type]
        train(GeneratedViT(gen), digits, cfg, phases=ict(gen, [1, 3]))
        return gen

    full = run(tmp_path / "full")
    run(tmp_path / "split", stop_after=4, ckpt_interval=2)  # stops inside stage 2
    ckpt = load_checkpoint(tmp_path / "split" / CHECKPOINT_NAME)
    assert (ckpt["step"], ckpt["stage"]) == (4, 1)
    resumed = run(tmp_path / "split", resume=True)
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    assert load_checkpoint(tmp_path / "split" / CHECKPOINT_NAME)["step"] == 6
    assert not list((tmp_path / "split").glob(".*tmp*"))


def _private_tmpfs_works() -> bool:
    try:
        probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return probe.returncode == 0


def test_checkpoint_on_a_full_disk_is_an_oserror(tmp_path: Path) -> None:
    """A real full file system (a 64 KiB tmpfs in a private mount namespace): ENOSPC, not torch's RuntimeError."""
    if not _private_tmpfs_works():
        pytest.skip("needs `unshare -m` (root with CAP_SYS_ADMIN) to mount a tiny tmpfs")
    code = (
        "import errno, torch\n"
        "from pathlib import Path\n"
        "from learngene_deploy.training.loop import _save_checkpoint\n"
        "try:\n"
        f"    _save_checkpoint(Path({str(tmp_path / 'ckpt.pt')!r}), {{'w': torch.zeros(100_000)}})\n"
        "except OSError as e:\n"
        "    print('errno', errno.errorcode[e.errno])\n"
    )
    script = f'mount -t tmpfs -o size=64k tmpfs {tmp_path} && {sys.executable} -c "$0" && ls -A {tmp_path}'
    result = subprocess.run(["unshare", "-m", "sh", "-c", script, code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["errno ENOSPC"], "no exception other than ENOSPC, and no file left behind"


def test_resume_refuses_other_schedule_and_missing_checkpoint(digits, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    gen = fresh()
    train(GeneratedViT(gen), digits, TrainConfig(out=tmp_path, max_steps=1, batch_size=32, progress=False))
    with pytest.raises(ConfigError, match="resume with the original options"):
        train(GeneratedViT(gen), digits, TrainConfig(out=tmp_path, max_steps=2, batch_size=32, resume=True))
    with pytest.raises(ConfigError, match="no checkpoint"):
        train(GeneratedViT(gen), digits, TrainConfig(out=tmp_path / "x", max_steps=2, batch_size=32, resume=True))


def test_distill_losses() -> None:
    torch.manual_seed(0)
    logits, labels = torch.randn(4, 10), torch.randint(0, 10, (4,))
    ce = F.cross_entropy(logits, labels)
    cfg = TrainConfig(temperature=2.0)
    assert torch.allclose(distill_loss(logits, labels, None, cfg), ce)
    assert torch.allclose(distill_loss(logits, labels, logits.clone(), cfg), ce, atol=1e-6)  # KL(p‖p) = 0
    teacher = torch.randn(4, 10)
    kl = F.kl_div(F.log_softmax(logits / 2, -1), F.softmax(teacher / 2, -1), reduction="sum")
    assert torch.allclose(distill_loss(logits, labels, teacher, cfg), ce + kl / 4 * 4, atol=1e-5)
    soft = TrainConfig(distill="soft", alpha=1.0, temperature=2.0)
    assert torch.allclose(distill_loss(logits, labels, teacher, soft), kl * 4 / 40, atol=1e-6)  # sum / (B·C)


def test_teachers_from_learngene_and_timm_checkpoint(digits, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import timm

    gen = fresh(2)
    path = save_learngene(tmp_path / "teacher.safetensors", gen)
    images = torch.from_numpy(digits.arrays("val", 4)[0])
    assert torch.allclose(load_teacher(str(path), num_classes=10)(images), gen.recompose()(images), atol=1e-6)

    cnn = timm.create_model("test_resnet", num_classes=10)
    save_file(cnn.state_dict(), str(tmp_path / "cnn.safetensors"))
    loaded = load_teacher("test_resnet", checkpoint=tmp_path / "cnn.safetensors", num_classes=10).eval()
    assert torch.equal(loaded(images), cnn.eval()(images))
    torch.save({"model": cnn.state_dict()}, tmp_path / "cnn.pth")
    assert torch.equal(
        load_teacher("test_resnet", checkpoint=tmp_path / "cnn.pth", num_classes=10).eval()(images), loaded(images)
    )
    with pytest.raises(ConfigError, match="nothing is downloaded"):
        load_teacher("test_resnet", num_classes=10)
    with pytest.raises(ConfigError, match="neither a file nor a timm model"):
        load_teacher("no_such_model_xyz", num_classes=10)

    student = fresh(2)
    cfg = TrainConfig(max_steps=2, batch_size=32, progress=False)
    result = train(GeneratedViT(student), digits, cfg, teacher=loaded)
    assert result.finished and result.final_loss == result.final_loss  # not NaN


def test_train_learngene_writes_file_with_accuracy_table(digits, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    gen = fresh(2)
    sizes = [{"depth": d, "genes": k} for d in (1, 2, 3) for k in (1, 2)]
    cfg = TrainConfig(out=tmp_path, max_steps=2, batch_size=32, progress=False)
    train_learngene(gen, digits, cfg, out_file=tmp_path / "lg.safetensors", phases=ict(gen, [1, 2]), sizes=sizes)
    meta = read_metadata(tmp_path / "lg.safetensors")
    assert [(r["depth"], r["genes"]) for r in meta["accuracy"]] == [(s["depth"], s["genes"]) for s in sizes]
    assert all(0.0 <= r["top1"] <= 1.0 and r["params"] > 0 for r in meta["accuracy"])
    assert meta["training"]["steps"] == 4 and meta["training"]["data"]["fingerprint"] == digits.info["fingerprint"]
    row = accuracy_table(load_learngene(tmp_path / "lg.safetensors"), [{"depth": 3, "genes": 1}], digits.val)[0]
    assert row == meta["accuracy"][4]


def torchrun_worker(*args: Path) -> None:
    """tests/_ddp_worker.py under torchrun with 2 processes (gloo); fails the test with its output."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    worker = [str(ROOT / "tests" / "_ddp_worker.py"), *map(str, args)]
    proc = subprocess.run([*cmd, *worker], env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_torchrun_two_processes_gloo(tmp_path: Path) -> None:
    torchrun_worker(tmp_path)
    rank0, rank1 = load_file(str(tmp_path / "rank0.safetensors")), load_file(str(tmp_path / "rank1.safetensors"))
    assert rank0.keys() == rank1.keys()
    for k in rank0:
        assert torch.equal(rank0[k], rank1[k]), f"ranks differ in {k}"
    ckpt = load_checkpoint(tmp_path / CHECKPOINT_NAME)
    assert ckpt["step"] == 4
    gen = LDRGenerator(ARCH, 2)
    GeneratedViT(gen).load_state_dict(ckpt["model"])
    for k, v in gen.state_dict().items():
        assert torch.equal(v, rank0[k]), k
    saved = load_learngene(tmp_path / "lg.safetensors")
    assert read_metadata(tmp_path / "lg.safetensors")["training"]["world_size"] == 2
    assert all(torch.equal(v, rank0[k]) for k, v in saved.state_dict().items())


def test_torchrun_two_processes_stream_images_with_the_deit_recipe(tmp_path: Path) -> None:
    """DDP (gloo) over an ImageFolder: per-rank DistributedSampler shares, a worker each, RandAugment + Mixup."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(3):
        (tmp_path / "imgs" / f"c{c}").mkdir(parents=True)
        for i in range(12):
            pixels = (rng.random((20, 18, 3)) * 80 + 60 * c).astype(np.uint8)
            Image.fromarray(pixels).save(tmp_path / "imgs" / f"c{c}" / f"{i}.jpg")
    out = tmp_path / "run"
    torchrun_worker(out, tmp_path / "imgs")
    rank0, rank1 = load_file(str(out / "rank0.safetensors")), load_file(str(out / "rank1.safetensors"))
    for k in rank0:
        assert torch.equal(rank0[k], rank1[k]), f"ranks differ in {k}"
    training = read_metadata(out / "lg.safetensors")["training"]
    assert training["world_size"] == 2 and training["augmentation"]["name"] == "deit" and training["steps"] == 3


class _Payload:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.touch, (Path(os.environ["LGD_PWNED"]),))


def test_a_pickle_checkpoint_is_refused_in_one_sentence_and_never_run(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    marker = tmp_path / "pwned"
    monkeypatch.setenv("LGD_PWNED", str(marker))
    torch.save({"model": _Payload()}, tmp_path / CHECKPOINT_NAME)
    with pytest.raises(ConfigError, match=r"is not a checkpoint lgdeploy wrote .* never unpickled"):
        load_checkpoint(tmp_path / CHECKPOINT_NAME)
    assert not marker.exists()
    (tmp_path / CHECKPOINT_NAME).write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ConfigError, match="not a checkpoint lgdeploy wrote"):
        load_checkpoint(tmp_path / CHECKPOINT_NAME)


def test_train_teacher_resumes_saves_a_pickle_free_model_and_learngenes_count_it(digits, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """`lgdeploy train teacher`: stop, resume, a model file that rebuilds to the recorded accuracy, and a learngene
    distilled from it that records the teacher's accuracy and training compute."""
    from typer.testing import CliRunner

    from learngene_deploy.cli import app
    from learngene_deploy.models.io import load_model, read_model_info
    from learngene_deploy.training.loop import evaluate

    runner = CliRunner()
    common = ["--data", "digits", "--out", str(tmp_path / "t"), "--model", "test_resnet", "--img-size", "16"]
    common += ["--max-steps", "4", "--batch-size", "16", "--ckpt-interval", "1", "--no-progress"]
    first = runner.invoke(app, ["train", "teacher", *common, "--stop-after", "2"])
    assert first.exit_code == 0, first.output
    assert "continue with --resume" in first.output and not (tmp_path / "t" / "teacher.safetensors").exists()
    second = runner.invoke(app, ["train", "teacher", *common, "--resume"])
    assert second.exit_code == 0, second.output
    path = tmp_path / "t" / "teacher.safetensors"
    info = read_model_info(path)
    assert info["model"] == "test_resnet" and info["steps"] == 4 and info["images"] == 64
    assert info["forward_gflops"] > 0 and info["train_tflops"] == pytest.approx(3 * info["forward_gflops"] * 64 / 1e3)
    assert "teacher test_resnet: top-1" in second.output
    data16 = load_data("digits", img_size=16, seed=0)
    assert evaluate(load_model(path), data16.val) == pytest.approx(info["top1"])

    lets = ["train", "lets", "--data", "digits", "--out", str(tmp_path / "lg"), "--img-size", "16"]
    lets += ["--patch-size", "4", "--max-steps", "2", "--batch-size", "16", "--teacher", str(path), "--no-progress"]
    lg = runner.invoke(app, lets)
    assert lg.exit_code == 0, lg.output
    training = read_metadata(tmp_path / "lg" / "learngene.safetensors")["training"]
    assert training["distill"] == "soft" and training["teacher"] == str(path)
    assert training["teacher_info"]["train_tflops"] == info["train_tflops"]
    assert training["teacher_info"]["top1"] == info["top1"]


def test_model_file_with_unsafe_timm_metadata_is_refused(tmp_path: Path) -> None:
    """A model file may only name a timm model and numeric keywords: no pretrained download, no checkpoint path."""
    import json

    import timm

    from learngene_deploy.errors import LearngeneError
    from learngene_deploy.models.io import load_model, save_timm_model

    cnn = timm.create_model("test_resnet", num_classes=10)
    path = save_timm_model(tmp_path / "ok.safetensors", cnn, "test_resnet", {"num_classes": 10})
    x = torch.randn(2, 3, 16, 16)
    assert torch.equal(load_model(path).eval()(x), cnn.eval()(x))
    state = {k: v.contiguous() for k, v in cnn.state_dict().items()}
    for spec in (
        {"name": "test_resnet", "kwargs": {"num_classes": 10, "pretrained": True}},
        {"name": "test_resnet", "kwargs": {"num_classes": 10, "checkpoint_path": "/etc/passwd"}},
        {"name": ["test_resnet"], "kwargs": {}},
        {"name": "no_such_model_xyz", "kwargs": {"num_classes": 10}},
        {"name": "test_resnet", "kwargs": {"num_classes": 7}},
    ):
        bad = tmp_path / "bad.safetensors"
        header = {"format": "lgdeploy-model", "timm": json.dumps(spec), "info": "{}"}
        save_file(state, str(bad), metadata=header)
        with pytest.raises(LearngeneError) as caught:
            load_model(bad)
        message = str(caught.value)
        assert str(bad) in message and "\n" not in message and message.endswith((".", "re-save it."))
