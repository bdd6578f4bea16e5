"""The README's newcomer path, as a newcomer runs it: a fresh clone, `make demo`, then the README's next
block (activate the venv `make demo` made, run `accoil-sync` from PATH). Bounded: pip reuses its cache."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

MARKER = "<!-- newcomer-next:"


def readme_next_block(readme: str) -> str:
    after = readme[readme.index(MARKER) :]
    match = re.search(r"```sh\n(.*?)```", after, re.DOTALL)
    assert match is not None, "the README lost its newcomer block"
    return match.group(1)


def newcomer_env() -> dict[str, str]:
    """A shell that has never seen this project: no venv on PATH, no ACCOIL_SYNC_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCOIL_SYNC_", "VIRTUAL_ENV", "PYTHON"))}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if ".venv" not in p)
    return env


def test_the_readme_next_block_uses_only_what_make_demo_provides() -> None:
    block = readme_next_block((ROOT / "README.md").read_text())
    assert block.splitlines()[0].startswith(". .venv/bin/activate")
    assert all(line.startswith(("accoil-sync ", ". ")) for line in block.splitlines() if line.strip())


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("git") is None or shutil.which("make") is None, reason="needs git and make")
def test_a_fresh_clone_runs_make_demo_then_the_readme_next_block(tmp_path: Path) -> None:
    clone = tmp_path / "accoil-sync"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, timeout=120)
    env = newcomer_env()
    demo = subprocess.run(
        ["make", "demo"], cwd=clone, env=env, capture_output=True, text=True, timeout=900, check=False
    )
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert "changes on the second run: 0; writes sent to the vendors: 0" in demo.stdout
    assert ". .venv/bin/activate" in demo.stdout  # the demo itself says what comes next

    block = readme_next_block((clone / "README.md").read_text())
    steps = subprocess.run(
        ["bash", "-c", block], cwd=clone, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    output = steps.stdout + steps.stderr
    assert "command not found" not in output and "Traceback" not in output, output[-3000:]
    assert re.search(r"accoil-sync \d+\.\d+", steps.stdout)
    assert "Plan" in steps.stdout and "Sync" in steps.stdout and "Recent runs" in steps.stdout
    assert (clone / "examples" / ".accoil-sync" / "state.db").is_file()  # the example's own state
    assert (clone / ".accoil-sync" / "demo" / "state.db").is_file()  # the demo's, untouched by it
    assert steps.returncode == 0  # the last step, status
