"""Extra requests and extra time per emulator fault profile, against a clean run of the same data.

    python bench/faults_bench.py --users 1000

Each profile gets a fresh emulator and state; every run must end with the vendors holding exactly the
source's values (the chaos suite's check), and a re-run that sends nothing. Requests are counted by the
emulator across the three vendors, both runs included.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.chaos.harness import run_profile

PROFILES = ("storm", "errors", "drops", "slow", "flaky")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--profiles", nargs="*", default=list(PROFILES))
    a = parser.parse_args()
    patch = pytest.MonkeyPatch()
    with tempfile.TemporaryDirectory() as tmp:
        base, base_s = run_profile("unlimited", Path(tmp) / "clean", a.users, patch)
        print("| profile | requests | extra requests | seconds | extra time |\n|---|---|---|---|---|")
        print(f"| clean (`unlimited`) | {base:,} | – | {base_s:.1f} | – |")
        for profile in a.profiles:
            n, s = run_profile(profile, Path(tmp) / profile, a.users, patch)
            print(
                f"| `{profile}` | {n:,} | +{n - base:,} (+{(n - base) / base:.0%}) | {s:.1f} | +{s - base_s:.1f} s |",
                flush=True,
            )
    patch.undo()


if __name__ == "__main__":
    main()
