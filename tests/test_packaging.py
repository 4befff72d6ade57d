"""The wheel carries the shipped profiles: install it outside the checkout and use it from there."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from learngene_deploy.profile import list_profiles
from learngene_deploy.shipped import list_shipped_learngenes

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(REPO)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (whl,) = out.glob("learngene_deploy-*.whl")
    return whl


@pytest.mark.slow
def test_wheel_contains_every_shipped_profile(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {Path(n).stem for n in names if n.startswith("learngene_deploy/_shipped/profiles/")}
    assert shipped == set(list_profiles())
    assert not any(n.startswith(("tests/", "profiles/")) for n in names), "only the package goes into the wheel"
    learngenes = {Path(n).stem for n in names if n.startswith("learngene_deploy/learngenes/")}
    assert learngenes == set(list_shipped_learngenes())


@pytest.mark.slow
def test_installed_wheel_works_outside_the_checkout(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    work = tmp_path / "elsewhere"
    work.mkdir()
    code = (
        "import learngene_deploy, sys\n"
        "from learngene_deploy.profile import list_profiles, load_profile, shipped_profiles_dir\n"
        "print(learngene_deploy.__file__)\n"
        "print(shipped_profiles_dir())\n"
        "print(','.join(list_profiles()))\n"
        "from learngene_deploy.shipped import default_learngene\n"
        "print(default_learngene())\n"
        "from learngene_deploy.cli import main\n"
        "sys.argv = ['lgdeploy', 'profiles', 'validate', 'jetson-orin-nano']\n"
        "main()\n"
    )
    # -I would drop PYTHONPATH; -s keeps user site out. The editable install's path hook is in the venv's
    # site-packages, which comes after PYTHONPATH, so the wheel's copy wins; the asserts check that it did.
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-s", "-c", code], capture_output=True, text=True, cwd=work, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    module_file, profiles_dir, names, learngene, ok = result.stdout.strip().splitlines()
    assert Path(learngene).is_relative_to(site) and learngene.endswith(".safetensors")
    assert Path(module_file).is_relative_to(site)
    assert Path(profiles_dir).is_relative_to(site) and profiles_dir.endswith("_shipped/profiles")
    assert names.split(",") == list_profiles()
    assert ok.startswith("ok: jetson-orin-nano")
