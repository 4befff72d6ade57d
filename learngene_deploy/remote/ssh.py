"""An edge box over SSH (``lgdeploy bench ARTIFACT --host user@host``): Jetson, Raspberry Pi, NUC.

:class:`SshTarget` measures (the local artifact is already verified by :func:`~learngene_deploy.remote.base.bench_on`):

1. probe the box with ``ssh -o BatchMode=yes``: it must accept a key without a password prompt, and
   ``--remote-python`` (default ``python3``) must import ``learngene_deploy`` (``pip install
   learngene-deploy`` on the box, with the runtime the profile names);
2. copy the manifest and the files it lists (nothing else, never ``scp -r``, which would follow a symlink) to
   ``--remote-dir/<artifact name>`` (default ``.lgdeploy/bench`` under the remote home; an existing directory
   there is replaced only if it is itself an artifact);
3. run ``python3 -m learngene_deploy bench <copy> --runs N --rounds R`` there: the remote toolkit verifies the
   hashes again (so a damaged copy fails), benchmarks in fresh processes and rewrites *its* manifest;
4. fetch that manifest (``ssh ... cat``), take its newest ``target_benchmarks`` record and remove the copy
   (``--keep-remote`` keeps it).

Host aliases, ports and keys come from ``~/.ssh/config`` as usual; ``--ssh-option KEY=VALUE`` passes extra
``-o`` options to both ssh and scp (e.g. ``Port=2222``, ``IdentityFile=~/.ssh/jetson``).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from learngene_deploy.artifact.manifest import Manifest
from learngene_deploy.bench import LatencyStats
from learngene_deploy.errors import ConfigError, RemoteError
from learngene_deploy.remote.base import Log, Measurement, Target, bench_on, find_tool, last_line, quiet, run_tool

DEFAULT_REMOTE_DIR = ".lgdeploy/bench"
DEFAULT_COMPILE_DIR = ".lgdeploy/compile"
SSH_BASE_OPTIONS = ("BatchMode=yes", "ConnectTimeout=15")
_SAFE_PATH = re.compile(r"^[A-Za-z0-9._/+@:=-]+$")


def ssh_option_args(options: Sequence[str]) -> list[str]:
    """``-o KEY=VALUE`` arguments for ssh and scp: ``options``, then a connect timeout and BatchMode.

    ssh keeps the first value of each key, so ``options`` can override the timeout; BatchMode (never prompt for a
    password or passphrase) cannot be turned off.

    Raises:
        ConfigError: an option is not of the form ``KEY=VALUE``, or tries to turn BatchMode off.
    """
    args: list[str] = []
    for option in (*options, *SSH_BASE_OPTIONS):
        if not re.match(r"^[A-Za-z][A-Za-z0-9]*=\S.*$", option):
            msg = f"ssh option '{option}' is not KEY=VALUE; pass options like --ssh-option Port=2222."
            raise ConfigError(msg)
        if option.lower().startswith("batchmode=") and option.split("=", 1)[1].lower() != "yes":
            msg = f"ssh option '{option}' would let ssh prompt; lgdeploy needs key authentication, drop the option."
            raise ConfigError(msg)
        args += ["-o", option]
    return args


def _remote_path(remote_dir: str, name: str) -> str:
    """``remote_dir/name`` for the remote shell; a leading ``~/`` means the remote home (ssh starts there)."""
    base = remote_dir[2:] if remote_dir.startswith("~/") else remote_dir
    base = base.rstrip("/") or "/"
    safe_name = re.sub(r"[^A-Za-z0-9._-]", "_", name) or "artifact"
    if not _SAFE_PATH.match(base):
        msg = f"remote directory '{remote_dir}' has characters a remote shell would mangle; use letters, digits, ._-/."
        raise ConfigError(msg)
    return f"{base.rstrip('/')}/{safe_name}"


def _ssh_failure(host: str, proc: subprocess.CompletedProcess[str], doing: str) -> RemoteError:
    """A one-sentence error for a failed ssh/scp call, classified from its exit code and stderr."""
    err = proc.stderr or ""
    last = last_line(err, proc.stdout)
    if "Permission denied" in err or "Too many authentication failures" in err:
        why = (
            f"ssh authentication to {host} failed ({last}); lgdeploy never prompts for a password, so install a key "
            f"with `ssh-copy-id {host}` (or pass --ssh-option IdentityFile=KEY) and check `ssh {host} true` works."
        )
    elif "Host key verification failed" in err or "REMOTE HOST IDENTIFICATION HAS CHANGED" in err:
        why = (
            f"the host key of {host} is unknown or changed ({last}); connect once with `ssh {host}` to check and "
            "accept it, then rerun."
        )
    elif proc.returncode == 255:
        why = f"cannot connect to {host} while {doing} ({last}); check the host name, port and network, then rerun."
    else:
        why = f"{doing} on {host} failed with exit code {proc.returncode} ({last}); fix the cause shown and rerun."
    return RemoteError(why)


class SshClient:
    """An edge box reachable with ``ssh``/``scp`` without a password prompt.

    Args:
        host: ``user@host`` or an alias from ``~/.ssh/config``.
        options: extra ``KEY=VALUE`` ssh options.
        timeout_s: limit for each ssh/scp call (the remote benchmark included).
    """

    def __init__(self, host: str, options: Sequence[str] = (), *, timeout_s: float = 1800.0) -> None:
        if not host or host.startswith("-") or any(c.isspace() for c in host):
            msg = f"'{host}' is not an ssh destination; pass --host user@host or a Host alias from ~/.ssh/config."
            raise ConfigError(msg)
        self.host = host
        self.option_args = ssh_option_args(options)
        self.timeout_s = timeout_s
        hint = "install the OpenSSH client (Debian/Ubuntu: `apt-get install openssh-client`)"
        self.ssh = find_tool("ssh", hint)
        self.scp = find_tool("scp", hint)

    def run(self, argv: Sequence[str], *, doing: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a command on the box (``argv`` is quoted for its shell); with ``check``, failures raise RemoteError."""
        return self.shell(shlex.join(argv), doing=doing, check=check)

    def shell(self, script: str, *, doing: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a shell snippet on the box as it is (the caller quotes)."""
        proc = run_tool([self.ssh, *self.option_args, self.host, script], timeout_s=self.timeout_s, doing=doing)
        if check and proc.returncode != 0:
            raise _ssh_failure(self.host, proc, doing)
        return proc

    def copy_files(self, root: Path, rels: Sequence[str], remote: str) -> None:
        """Copy the regular files ``root/rel`` to ``remote/rel`` (whose directories exist): one scp per directory,
        without ``-r``, so nothing but the named files travels."""
        groups: dict[str, list[str]] = {}
        for rel in rels:
            groups.setdefault(rel.rpartition("/")[0], []).append(str(root.resolve() / rel))  # "/...": never host:path
        for sub, files in sorted(groups.items()):
            dest = f"{remote}/{sub}/" if sub else f"{remote}/"
            argv = [self.scp, "-q", *self.option_args, "--", *files, f"{self.host}:{dest}"]
            proc = run_tool(argv, timeout_s=self.timeout_s, doing=f"copying {root.name}")
            if proc.returncode != 0:
                raise _ssh_failure(self.host, proc, f"copying the artifact to {remote}")


def fetch_files(client: SshClient, remote: str, rels: Sequence[str], local_root: Path) -> None:
    """Copy ``remote/rel`` from the box to ``local_root/rel`` for each (checked, relative) ``rel``; one scp per
    directory, without ``-r``."""
    groups: dict[str, list[str]] = {}
    for rel in rels:
        groups.setdefault(rel.rpartition("/")[0], []).append(f"{client.host}:{remote}/{rel}")
    for sub, sources in sorted(groups.items()):
        dest = local_root / sub
        dest.mkdir(parents=True, exist_ok=True)
        argv = [client.scp, "-q", *client.option_args, "--", *sources, f"{dest.resolve()}/"]
        proc = run_tool(argv, timeout_s=client.timeout_s, doing="fetching the compiled files")
        if proc.returncode != 0:
            raise _ssh_failure(client.host, proc, f"fetching the compiled files from {remote}")


def _listed(manifest: Manifest) -> list[str]:
    from learngene_deploy.artifact.writer import MANIFEST

    return [*manifest["files"], MANIFEST]  # verified: relative, inside, regular files


def prepare_remote(client: SshClient, manifest: Manifest, remote: str) -> None:
    """Make ``remote`` an empty directory tree for the artifact's files, replacing an earlier copy but never a
    directory that is no artifact (refused before anything there is touched)."""
    rels = _listed(manifest)
    q = shlex.quote(remote)
    subdirs = sorted({f"{remote}/{rel.rpartition('/')[0]}" for rel in rels if "/" in rel})
    make = " ".join(shlex.quote(d) for d in [remote, *subdirs])
    prepare = (
        f"if [ -e {q} ] && [ ! -f {q}/manifest.json ]; then echo 'not an lgdeploy artifact: {remote}' >&2; "
        f"exit 3; fi; rm -rf {q} && mkdir -p {make}"
    )
    client.shell(prepare, doing=f"preparing {remote}")


def copy_artifact(client: SshClient, root: Path, manifest: Manifest, remote: str, log: Log = quiet) -> None:
    """Copy the artifact's listed files and its manifest into ``remote`` (made by :func:`prepare_remote`)."""
    rels = _listed(manifest)
    client.copy_files(root, rels, remote)
    log(f"copied {len(rels)} files of {root} to {client.host}:{remote}")


def profile_path(remote: str) -> str:
    """Where the artifact's profile file goes on the box: beside the copy, never inside it (it is not listed)."""
    return f"{remote}.profile.yaml"


def ship_profile(client: SshClient, manifest: Manifest, profile: str | Path | None, remote: str) -> str:
    """Copy the artifact's profile file (found as :func:`trusted_profile` finds it) beside the remote copy, so that
    the box judges by the same profile whatever profiles its own lgdeploy ships; its remote path."""
    from learngene_deploy.artifact.store import trusted_profile

    p, _ = trusted_profile(manifest, profile)
    target = profile_path(remote)
    argv = [client.scp, "-q", *client.option_args, "--", str(Path(p.source).resolve()), f"{client.host}:{target}"]
    proc = run_tool(argv, timeout_s=client.timeout_s, doing="copying the profile")
    if proc.returncode != 0:
        raise _ssh_failure(client.host, proc, f"copying the profile to {target}")
    return target


def probe_remote_python(client: SshClient, python: str) -> str:
    """The version of lgdeploy that ``python`` imports on the box.

    Raises:
        RemoteError: ssh fails, ``python`` is missing, or it cannot import ``learngene_deploy``.
    """
    code = "import learngene_deploy as m; print(m.__version__)"
    proc = client.run([python, "-c", code], doing="checking the remote Python", check=False)
    if proc.returncode == 255:
        raise _ssh_failure(client.host, proc, "connecting")
    if proc.returncode == 127 or ("not found" in proc.stderr and "No module" not in proc.stderr):
        msg = (
            f"'{python}' is not a command on {client.host} ({last_line(proc.stderr)}); pass --remote-python with the "
            "path of the Python that has lgdeploy installed there."
        )
        raise RemoteError(msg)
    if proc.returncode != 0:
        msg = (
            f"{python} on {client.host} cannot import lgdeploy ({last_line(proc.stderr)}); install it there with "
            f"`{python} -m pip install learngene-deploy` (plus the profile's runtime) or pass --remote-python."
        )
        raise RemoteError(msg)
    return last_line(proc.stdout)


@dataclass(frozen=True)
class SshTarget(Target):
    """An edge box over SSH, benchmarked by its own lgdeploy on a copy of the artifact (arguments as for
    :func:`bench_over_ssh`)."""

    host: str
    ssh_options: Sequence[str] = ()
    remote_python: str = "python3"
    remote_dir: str = DEFAULT_REMOTE_DIR
    keep_remote: bool = False
    timeout_s: float = 1800.0
    log: Log = quiet
    profile: str | Path | None = None  # the artifact's profile file, when it is not a shipped one

    def bench(self, root: Path, manifest: Manifest, *, runs: int, rounds: int) -> Measurement:
        client = SshClient(self.host, self.ssh_options, timeout_s=self.timeout_s)
        remote = _remote_path(self.remote_dir, root.resolve().name)
        version = probe_remote_python(client, self.remote_python)
        self.log(f"{self.host}: lgdeploy {version} at {self.remote_python}")
        remote_profile = profile_path(remote)
        prepare_remote(client, manifest, remote)  # refuses a directory that is no artifact, touching nothing
        try:  # from here the remote directory is ours: removed even when the copy fails half-way
            copy_artifact(client, root, manifest, remote, self.log)
            ship_profile(client, manifest, self.profile, remote)
            self._run_bench(client, remote, remote_profile, runs=runs, rounds=rounds)
            fetched = client.run(["cat", f"{remote}/manifest.json"], doing="fetching the remote manifest")
        finally:
            if not self.keep_remote:
                client.run(["rm", "-rf", remote, remote_profile], doing=f"removing {remote}", check=False)
        return self._measurement(fetched.stdout, len(manifest.target_benchmarks), remote, version)

    def _run_bench(self, client: SshClient, remote: str, remote_profile: str, *, runs: int, rounds: int) -> None:
        """Run ``lgdeploy bench`` on the copy with the box's Python; it records into the copy's manifest."""
        python = self.remote_python
        argv = [python, "-m", "learngene_deploy", "bench", remote, "--runs", str(runs), "--rounds", str(rounds)]
        argv += ["--profile", remote_profile]
        proc = client.run(argv, doing="running `lgdeploy bench`", check=False)
        if proc.returncode == 255:
            raise _ssh_failure(self.host, proc, "running `lgdeploy bench`")
        if proc.returncode != 0:
            msg = (
                f"`lgdeploy bench` failed on {self.host} ({last_line(proc.stderr, proc.stdout)}); run "
                f"`ssh {self.host} {python} -m learngene_deploy bench {remote}` to see it there."
            )
            raise RemoteError(msg)
        self.log(f"{self.host}: {last_line(proc.stdout)}")

    def _measurement(self, text: str, before: int, remote: str, version: str) -> Measurement:
        """The record the box appended to its manifest ``text`` (which must hold more than the local ``before``)."""
        try:
            records = json.loads(text)["target_benchmarks"]  # the box's manifest, as its own lgdeploy wrote it
            record = records[-1]
            if len(records) <= before:
                raise KeyError("target_benchmarks")
            stats, host, measured = LatencyStats.from_dict(record["stats"]), record["host"], record["measured"]
        except (json.JSONDecodeError, KeyError, IndexError, TypeError) as e:
            msg = (
                f"the manifest fetched from {self.host}:{remote} has no new benchmark record ({type(e).__name__}: "
                f"{e}); check that lgdeploy {version} on {self.host} writes target_benchmarks and rerun."
            )
            raise RemoteError(msg) from e
        via = {
            "method": "ssh",
            "host": self.host,
            "remote_dir": remote,
            "remote_python": self.remote_python,
            "remote_toolkit_version": version,
        }
        where = f"{host.get('hostname', self.host)} (ssh {self.host})"
        return Measurement(stats, host, via=via, where=where, measured=measured)


def bench_over_ssh(
    artifact_dir: str | Path,
    host: str,
    *,
    runs: int = 50,
    rounds: int = 3,
    remote_python: str = "python3",
    remote_dir: str = DEFAULT_REMOTE_DIR,
    ssh_options: Sequence[str] = (),
    keep_remote: bool = False,
    timeout_s: float = 1800.0,
    log: Log = quiet,
    profile: str | Path | None = None,
) -> Manifest:
    """Benchmark an artifact on an edge box over SSH and record the box's measurement in the local manifest.

    Args:
        artifact_dir: a complete artifact directory (its hashes are checked first).
        host: ``user@host`` or an ``~/.ssh/config`` alias; key authentication without a prompt is required.
        runs: timed runs per process on the box.
        rounds: fresh processes on the box; the best round is reported.
        remote_python: the Python on the box that has lgdeploy installed.
        remote_dir: where the copy goes on the box (relative paths are under the remote home).
        ssh_options: extra ``KEY=VALUE`` options for ssh and scp.
        keep_remote: leave the copy on the box (it is removed by default).
        timeout_s: limit for each ssh/scp call.
        profile: the profile the artifact was built with (its budgets judge the measurement; default: the shipped
            profile the manifest names by sha256).
        log: receives one line per step.

    Returns:
        The updated local manifest.

    Raises:
        RemoteError: ssh/scp missing, unreachable box, failed authentication, no lgdeploy there, or a failed run.
        ArtifactError: the local artifact does not verify or has no compiled model.
    """
    target = SshTarget(
        host,
        ssh_options=tuple(ssh_options),
        remote_python=remote_python,
        remote_dir=remote_dir,
        keep_remote=keep_remote,
        timeout_s=timeout_s,
        log=log,
        profile=profile,
    )
    return bench_on(target, artifact_dir, runs=runs, rounds=rounds, profile=profile)


def compile_over_ssh(
    artifact_dir: str | Path,
    host: str,
    *,
    force: bool = False,
    remote_python: str = "python3",
    remote_dir: str = DEFAULT_COMPILE_DIR,
    ssh_options: Sequence[str] = (),
    options: Sequence[str] = (),
    keep_remote: bool = False,
    timeout_s: float = 3600.0,
    profile: str | Path | None = None,
    log: Log = quiet,
) -> Path:
    """Finish an artifact awaiting its compile on an edge box: the box's own ``lgdeploy compile`` compiles, gates and
    benchmarks a copy; the compiled files come back and the local artifact is swapped for the finished one at once.

    The box may add files, never change the build's: every file of the local artifact must keep its sha256 in the
    box's manifest, and every fetched file must match the hash the box recorded. Any failure leaves the local
    artifact as it was.

    Args:
        artifact_dir: a local artifact whose status is ``awaiting-compile`` (its hashes are checked first).
        host: ``user@host`` or an ``~/.ssh/config`` alias (key authentication without a prompt).
        force: pass ``--force`` to the box (compile even if it is not the profile's device).
        options: more ``lgdeploy compile`` flags for the box (gate and benchmark settings).
        profile: the profile file when the artifact's profile is not shipped (it is copied to the box).

    Raises:
        RemoteError: ssh/scp failures, no lgdeploy on the box, a failed compile there, or fetched files that do not
            match.
        ArtifactError: the local artifact does not verify or is not awaiting its compile.
    """
    from learngene_deploy.artifact.store import verify_artifact
    from learngene_deploy.pipeline.deferred import require_awaiting

    root = Path(artifact_dir)
    manifest = verify_artifact(root)
    require_awaiting(root, manifest)
    client = SshClient(host, ssh_options, timeout_s=timeout_s)
    remote = _remote_path(remote_dir, root.resolve().name)
    version = probe_remote_python(client, remote_python)
    log(f"{host}: lgdeploy {version} at {remote_python}")
    remote_profile = profile_path(remote)
    prepare_remote(client, manifest, remote)  # refuses a directory that is no artifact, touching nothing
    try:  # from here the remote directory is ours: removed even when the copy fails half-way
        copy_artifact(client, root, manifest, remote, log)
        ship_profile(client, manifest, profile, remote)
        argv = [remote_python, "-m", "learngene_deploy", "compile", remote, "--profile", remote_profile, *options]
        proc = client.run([*argv, *(["--force"] if force else [])], doing="running `lgdeploy compile`", check=False)
        if proc.returncode == 255:
            raise _ssh_failure(host, proc, "running `lgdeploy compile`")
        if proc.returncode != 0:
            msg = (
                f"`lgdeploy compile` failed on {host} ({last_line(proc.stderr, proc.stdout)}); the local artifact is "
                "unchanged."
            )
            raise RemoteError(msg)
        log(f"{host}: {last_line(proc.stdout)}")
        via = {
            "method": "ssh",
            "host": host,
            "remote_dir": remote,
            "remote_python": remote_python,
            "remote_toolkit_version": version,
        }
        added = _take_back(client, root, manifest, remote, via)
        fetched = f"fetched {', '.join(added)}" if added else "nothing to fetch (the compiled model is model.onnx)"
        log(f"{fetched}; {root} is complete")
    finally:
        if not keep_remote:
            client.run(["rm", "-rf", remote, remote_profile], doing=f"removing {remote}", check=False)
    return root


def _take_back(client: SshClient, root: Path, manifest: Manifest, remote: str, via: dict[str, Any]) -> list[str]:
    """Swap the box's finished copy into ``root`` in one step; the files it added.

    The box may add files, never change the build's (only the report, a summary of the manifest, is rewritten);
    every fetched file must match the hash the box recorded.
    """
    from learngene_deploy.artifact.manifest import check_relative
    from learngene_deploy.artifact.report import report_markdown
    from learngene_deploy.artifact.writer import ArtifactWriter, files_table
    from learngene_deploy.pipeline.deferred import REWRITTEN

    host = client.host
    text = client.run(["cat", f"{remote}/manifest.json"], doing="fetching the remote manifest").stdout
    try:
        done = json.loads(text)
        files = done["files"]
        kept = {rel: entry for rel, entry in manifest["files"].items() if rel not in REWRITTEN}
        changed = [rel for rel, entry in kept.items() if files.get(rel) != entry]
        added = [check_relative(rel, f"the file {rel!r}", Path(f"{host}:{remote}/manifest.json")) for rel in files]
        added = [rel for rel in added if rel not in kept and rel not in REWRITTEN]
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
        raise RemoteError(f"the manifest fetched from {host}:{remote} is not an lgdeploy manifest ({e}).") from e
    if done.get("status") != "complete" or changed:
        why = f"it changed {', '.join(changed)}" if changed else f"its status is {done.get('status')!r}"
        raise RemoteError(f"the box's compiled artifact cannot be taken back: {why}; the local one is unchanged.")
    with ArtifactWriter(root, force=True) as writer:
        for rel in kept:
            (writer.path / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / rel, writer.path / rel)
        fetch_files(client, remote, added, writer.path)
        if files_table(writer.path) != {rel: e for rel, e in files.items() if rel not in REWRITTEN}:
            msg = f"the files fetched from {host}:{remote} do not match the box's manifest; the local one is unchanged."
            raise RemoteError(msg)
        done["deferred"]["completed"]["via"] = via
        header = ("files", "schema_version", "toolkit_version", "created")
        done = {k: v for k, v in done.items() if k not in header}
        (writer.path / "report.md").write_text(report_markdown(done))  # now naming the ssh route too
        writer.finalize(done)
    return added
