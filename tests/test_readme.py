"""The README's two set-up commands exist, are single copy-paste lines, and CI runs the test one."""

from __future__ import annotations

import re
from pathlib import Path

from learngene_deploy.profile import list_profiles

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()


def _block_after(marker: str) -> list[str]:
    match = re.search(rf"<!-- {marker} -->\n```bash\n(.*?)\n```", README, flags=re.S)
    assert match, f"README has no ```bash block right after <!-- {marker} -->"
    return match.group(1).splitlines()


def test_exactly_two_setup_commands() -> None:
    assert len(re.findall(r"<!-- (main-job|test)-command -->", README)) == 2
    for marker in ("main-job-command", "test-command"):
        lines = _block_after(marker)
        assert len(lines) == 1, f"the {marker} must be one copy-paste line"
        assert "pip install" in lines[0], "each command does its own set-up"


def test_main_job_command_uses_a_shipped_profile() -> None:
    (line,) = _block_after("main-job-command")
    names = re.findall(r"(?:show|--profile)\s+([a-z0-9-]+)", line)
    assert names and all(n in list_profiles() for n in names)


def test_ci_runs_the_readme_test_command() -> None:
    ci = (REPO / ".ci" / "run").read_text()
    assert "<!-- test-command -->" in ci and "README.md" in ci
    (line,) = _block_after("test-command")
    assert "pytest" in line
