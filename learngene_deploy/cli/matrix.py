"""`lgdeploy matrix`: the shipped profiles (or those given) as a CI build matrix (one artifact per device)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from learngene_deploy.profile import DeviceProfile

# Where each profile's artifact job runs. TensorRT engines are specific to the GPU and TensorRT version they were
# built with, so Jetson profiles run on self-hosted runners with these labels; everything else builds on a hosted
# runner (budgets are then judged on predicted target latency, see the manifest).
HOSTED_RUNNER = "ubuntu-latest"


def runner_for(profile) -> list[str] | str:
    if profile.runtime.backend == "tensorrt":
        return ["self-hosted", "linux", "arm64", profile.name]
    return HOSTED_RUNNER


def _distinct(profiles: list[DeviceProfile]) -> list[DeviceProfile]:
    """``profiles`` with repeats dropped (a family and one of its members); two different profiles of one name, which
    would share an artifact name, are refused."""
    from learngene_deploy.errors import ConfigError

    kept: dict[str, DeviceProfile] = {}
    for p in profiles:
        same = kept.setdefault(p.name, p)
        if same.sha256 != p.sha256:
            msg = (
                f"{same.source} and {p.source} are different profiles both named '{p.name}', so their artifacts "
                "would share a name; rename one (its 'name' key) or pass only one."
            )
            raise ConfigError(msg)
    return list(kept.values())


def matrix_command(
    runtime: Annotated[
        list[str] | None,
        typer.Option(
            "--runtime",
            "-r",
            help="Only profiles with this backend (repeatable): onnxruntime, openvino, tensorrt, auto.",
        ),
    ] = None,
    profile: Annotated[
        list[str] | None,
        typer.Option(
            "--profile",
            "-p",
            help="Only these profiles (repeatable): shipped names, .yaml files, or device families (every member).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the GitHub Actions matrix as JSON.")] = False,
) -> None:
    """Print the shipped profiles as a CI matrix: one entry per device, with its runner labels."""
    from learngene_deploy.errors import ConfigError
    from learngene_deploy.families import expand_all
    from learngene_deploy.names import RUNTIME_CHOICES
    from learngene_deploy.profile import list_profiles, load_profile

    for name in runtime or []:
        if name not in RUNTIME_CHOICES:
            msg = f"unknown runtime {name!r} for --runtime; valid runtimes are {', '.join(RUNTIME_CHOICES)}."
            raise ConfigError(msg)
    # A matrix plans jobs for other machines, so a family always means every member, whatever this machine is.
    names = list(dict.fromkeys(expand_all(profile))) if profile else list_profiles()
    profiles = _distinct([load_profile(n) for n in names])
    include = [
        {
            "profile": p.name,
            "backend": p.runtime.backend,
            "precision": p.runtime.precision,
            "runs-on": runner_for(p),
            # built (fine-tuned, exported, verified) on a hosted runner, compiled by `lgdeploy compile` on the device
            "defer": runner_for(p) != HOSTED_RUNNER,
            "artifact": f"lgdeploy-{p.name}",
        }
        for p in profiles
        if not runtime or p.runtime.backend in runtime
    ]
    if as_json:
        typer.echo(json.dumps({"include": include}))
        return
    for entry in include:
        runs_on = entry["runs-on"] if isinstance(entry["runs-on"], str) else ",".join(entry["runs-on"])
        typer.echo(f"{entry['profile']:<24} {entry['backend']:<12} {entry['precision']:<5} {runs_on}")
