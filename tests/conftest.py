"""Shared fixtures: paths, a subprocess runner for the real `lgdeploy` command."""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def make_tiny_learngene(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """Make (once per architecture) a 2-gene LDR learngene with a made-up accuracy table for every depth and gene
    count: a fast stand-in for build tests. Call it with the Aux-Net's ``ArchSpec``; treat the file as read-only."""
    made: dict[str, Path] = {}

    def make(arch) -> Path:  # type: ignore[no-untyped-def]
        import json

        import torch

        from learngene_deploy.learngene.io import save_learngene
        from learngene_deploy.learngene.ldr import LDRGenerator

        key = json.dumps(arch.to_dict(), sort_keys=True)
        if key not in made:
            torch.manual_seed(0)
            depths = range(1, arch.depth + 1)
            rows = [{"depth": d, "genes": k, "top1": 0.1 * d + 0.01 * k} for d in depths for k in (1, 2)]
            folder = tmp_path_factory.mktemp("lg")
            made[key] = save_learngene(folder / "tiny.safetensors", LDRGenerator(arch, 2), accuracy=rows)
        return made[key]

    return make


@pytest.fixture(scope="session")
def lgdeploy_argv() -> list[str]:
    """argv prefix that runs the installed `lgdeploy` console script (falls back to `python -m`)."""
    script = Path(sys.executable).parent / "lgdeploy"
    if script.is_file():
        return [str(script)]
    found = shutil.which("lgdeploy")
    return [found] if found else [sys.executable, "-m", "learngene_deploy"]


@pytest.fixture
def run_cli(lgdeploy_argv: list[str], tmp_path: Path):
    """Run `lgdeploy ARGS...` as a real subprocess (in a temp working directory)."""

    def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        full_env = {**os.environ, **(env or {})}
        return subprocess.run(
            [*lgdeploy_argv, *args], capture_output=True, text=True, cwd=tmp_path, env=full_env, timeout=120
        )

    return run


# --- a real sshd on localhost (the SSH tests of bench and compile) ----------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    """sshd on 127.0.0.1:PORT accepting one temporary key for the current user; yields host and ssh options."""
    sshd_bin = shutil.which("sshd") or next((p for p in ("/usr/sbin/sshd",) if os.path.isfile(p)), None)
    missing = [name for name in ("ssh", "scp", "ssh-keygen") if shutil.which(name) is None]
    if sshd_bin is None:
        missing.insert(0, "sshd")
    if missing:
        pytest.skip(
            f"cannot start an sshd for the SSH tests: {', '.join(missing)} not installed "
            "(Debian: apt-get install openssh-server openssh-client)"
        )
    tmp = tmp_path_factory.mktemp("sshd")
    host_key, client_key = _keygen(tmp / "host_key"), _keygen(tmp / "client_key")
    shutil.copy(f"{client_key}.pub", tmp / "authorized_keys")
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation directory
    port = _free_port()
    config = tmp / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nAuthorizedKeysFile {tmp / 'authorized_keys'}\n"
        f"PidFile {tmp / 'sshd.pid'}\nUsePAM no\nStrictModes no\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
        "Subsystem sftp /usr/lib/openssh/sftp-server\n"
    )
    log = (tmp / "sshd.log").open("w")
    proc = subprocess.Popen([sshd_bin, "-D", "-e", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT)
    options = [
        f"Port={port}",
        f"IdentityFile={client_key}",
        "IdentitiesOnly=yes",
        "UserKnownHostsFile=/dev/null",
        "StrictHostKeyChecking=no",
        "LogLevel=ERROR",
    ]
    host = f"{getpass.getuser()}@127.0.0.1"
    from learngene_deploy.remote.ssh import ssh_option_args

    probe = ["ssh", *ssh_option_args(options), host, "true"]
    deadline = time.monotonic() + 15
    while True:
        if proc.poll() is not None:
            log.close()
            pytest.skip(f"sshd did not start: {(tmp / 'sshd.log').read_text().strip()[-300:]}")
        if subprocess.run(probe, capture_output=True, timeout=20).returncode == 0:
            break
        if time.monotonic() > deadline:
            proc.terminate()
            log.close()
            pytest.skip(f"sshd did not accept the test key: {(tmp / 'sshd.log').read_text().strip()[-300:]}")
        time.sleep(0.2)
    yield {"host": host, "options": options, "tmp": tmp, "keygen": _keygen}
    proc.terminate()
    proc.wait(timeout=10)
    log.close()
