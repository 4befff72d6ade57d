"""Device families: one name (``jetson-orin``) for the shipped profiles of several modules of one device line.

``--profile FAMILY`` resolves on the machine it runs on: on a member device (recognised from the device tree's model
string, ``/proc/device-tree/model``) to that module's profile, elsewhere to every member (one artifact per module).
Detection reads a few small files below ``root`` (``/`` unless a test points it at a fake tree) and never blocks.
No heavy imports: ``lgdeploy profiles list`` imports this.

Example:
    >>> from learngene_deploy.families import resolve_family
    >>> resolve_family("raspberry-pi", root="/nonexistent").profiles
    ('raspberry-pi-5',)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from learngene_deploy.errors import ProfileError

# The device tree's model string, as Linux exposes it (NUL-terminated); the first that exists is read.
MODEL_FILES = ("proc/device-tree/model", "sys/firmware/devicetree/base/model")
MAX_MODEL_BYTES = 4096
DEFAULT_ROOT = Path("/")  # tests point this at a fake filesystem tree


@dataclass(frozen=True)
class Member:
    """One profile of a family and the device-tree model strings of the module it describes."""

    profile: str
    model: str  # regular expression searched in the model string


@dataclass(frozen=True)
class Family:
    """A device line: the profiles of its modules and how a machine of the line is recognised."""

    name: str
    description: str
    device: str  # what a machine of the line is called in messages ("a Jetson")
    members: tuple[Member, ...]
    model: str  # regular expression: the model string says the machine is of this line
    marker: str | None = None  # a file (relative to root) only machines of this line have

    @property
    def profiles(self) -> tuple[str, ...]:
        return tuple(m.profile for m in self.members)


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family(
            name="jetson-orin",
            description="NVIDIA Jetson Orin modules (TensorRT fp16)",
            device="a Jetson",
            members=(
                Member("jetson-orin-nano", r"\bOrin Nano\b"),
                Member("jetson-orin-nx-16gb", r"\bOrin NX\b"),
                Member("jetson-agx-orin-64gb", r"\bAGX Orin\b"),
            ),
            model=r"\bJetson\b",
            marker="etc/nv_tegra_release",  # the L4T release file: every JetPack install has it
        ),
        Family(
            name="raspberry-pi",
            description="Raspberry Pi boards (ONNX Runtime on the CPU)",
            device="a Raspberry Pi",
            members=(Member("raspberry-pi-5", r"^Raspberry Pi 5\b"),),
            model=r"^Raspberry Pi\b",
        ),
    )
}


@dataclass(frozen=True)
class Expansion:
    """What a family name resolved to on this machine, and why."""

    family: str
    profiles: tuple[str, ...]
    reason: str

    @property
    def line(self) -> str:
        """The one log line, e.g. ``profile family raspberry-pi -> raspberry-pi-5 (...)``."""
        return f"profile family {self.family} -> {', '.join(self.profiles)} ({self.reason})"


def is_family(name: str) -> bool:
    """Whether ``name`` is a device family (not a profile)."""
    return str(name) in FAMILIES


def family_error(name: str) -> str:
    """The sentence for a family name given where one profile is needed."""
    family = FAMILIES[name]
    return (
        f"'{name}' is a device family ({', '.join(family.profiles)}); pass one of its profiles, "
        f"or `lgdeploy build --profile {name}` to build each."
    )


def read_model(root: str | Path | None = None) -> str | None:
    """The device tree's model string below ``root`` (trailing NULs and spaces stripped), or None where there is none.

    Read with a size cap and never blocking (:func:`~learngene_deploy._fs.read_regular`): a FIFO, a device or an
    oversized file there counts as no model string.
    """
    from learngene_deploy._fs import read_regular

    base = Path(root) if root is not None else DEFAULT_ROOT
    for rel in MODEL_FILES:
        try:
            raw = read_regular(base / rel, limit=MAX_MODEL_BYTES)
        except (OSError, ValueError):
            continue
        text = raw.split(b"\0", 1)[0].decode("utf-8", "replace").strip()
        if text:
            return text
    return None


def resolve_family(name: str, root: str | Path | None = None) -> Expansion:
    """The profiles ``--profile NAME`` means on this machine: its module's profile on a member device, else all.

    Raises:
        ProfileError: ``name`` is not a family, or this machine is of the family's line but its module is none of
            the members (the message names the model string and the members).
    """
    family = FAMILIES.get(str(name))
    if family is None:
        msg = f"'{name}' is not a device family; families are {', '.join(FAMILIES)}."
        raise ProfileError(msg)
    base = Path(root) if root is not None else DEFAULT_ROOT
    model = read_model(base)
    marked = family.marker is not None and (base / family.marker).exists()
    if model is None or not (marked or re.search(family.model, model)):
        if marked:  # of the line, but without a model string to tell the module
            msg = (
                f"this machine is {family.device} ({base / family.marker} exists) but its device tree model string "
                f"cannot be read ({', '.join(str(base / f) for f in MODEL_FILES)}); pass its profile, one of "
                f"{', '.join(family.profiles)}."
            )
            raise ProfileError(msg)
        why = f"this machine is not {family.device}: one artifact per module"
        return Expansion(family.name, family.profiles, why)
    matched = [m.profile for m in family.members if re.search(m.model, model)]
    if len(matched) != 1:
        msg = (
            f"this machine's device tree says '{model}', which is {family.device} but not one of the modules of "
            f"family {family.name} ({', '.join(family.profiles)}); pass a profile for it (a .yaml file, see "
            "`lgdeploy profiles show NAME --json` for one to copy)."
        )
        raise ProfileError(msg)
    return Expansion(family.name, (matched[0],), f"this machine's device tree says '{model}'")


def expand(names: list[str], root: str | Path | None = None) -> tuple[list[str], list[Expansion]]:
    """``names`` with every family replaced by what it resolves to here (order kept), and each resolution."""
    out: list[str] = []
    expansions: list[Expansion] = []
    for name in names:
        if is_family(name):
            expansion = resolve_family(name, root)
            expansions.append(expansion)
            out.extend(expansion.profiles)
        else:
            out.append(name)
    return out, expansions


def expand_all(names: list[str]) -> list[str]:
    """``names`` with every family replaced by all its members, whatever this machine is (for CI matrices)."""
    return [p for name in names for p in (FAMILIES[name].profiles if is_family(name) else (name,))]


def member_matches(profile: str, root: str | Path | None = None) -> tuple[bool | None, str]:
    """Whether this machine is the device of ``profile`` (a family member), and how that was told.

    Returns ``(True, how)`` when the device tree names the member's module, ``(False, how)`` when it names another
    machine or none (not a device of the family), and ``(None, how)`` for a profile of no family (lgdeploy cannot
    tell).
    """
    for family in FAMILIES.values():
        member = next((m for m in family.members if m.profile == profile), None)
        if member is None:
            continue
        model = read_model(root)
        if model is None:
            return False, f"no device tree model string here, so this is not {family.device}"
        if re.search(member.model, model):
            return True, f"the device tree says '{model}'"
        return False, f"the device tree says '{model}'"
    return None, f"profile {profile} belongs to no device family, so lgdeploy cannot check the device"
