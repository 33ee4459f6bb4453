"""How soon the next pair's images are on screen after Enter, in real Chromium (issue 13).

Runs the browser test that measures it (tests/test_rater_pages_browser.py, the latency test:
a live server, PostgreSQL, four answers by keyboard, Enter, until both new images are complete
and a frame painted, by performance.now()) with more rounds, and prints its numbers as JSON.
Needs what the tests need: DATABASE_URL (or the embedded server) and Chromium.

    .venv/bin/python bench/next_pair.py --rounds 40
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARK = "next-pair latency "


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40, help="pairs voted on, one after another")
    args = parser.parse_args()
    env = {**os.environ, "POLYPHONY_NEXT_PAIR_ROUNDS": str(args.rounds)}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-s",
            "-p",
            "no:cacheprovider",
            "tests/test_rater_pages_browser.py",
            "-k",
            "latency",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [line for line in run.stdout.splitlines() if MARK in line]
    if run.returncode or not lines:
        sys.stderr.write(run.stdout[-4000:] + run.stderr[-4000:])
        raise SystemExit(run.returncode or 1)
    result = json.loads(lines[-1].split(MARK, 1)[1])
    result["machine"] = f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.platform()}"
    result["load_average"] = os.getloadavg()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
