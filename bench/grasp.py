"""Benchmark: GRASP (group association) on dense studies, from rater pairs and from counts per item.

    .venv/bin/python bench/grasp.py [--raters 1000 3000 9000] [--items 20] [--permutations 1000]

A dense study: every rater answers the same items (a panel shown one fixed set of pairs), one
criterion and variant pair, three cohorts of a third of the raters each, one of them planted
(it leans a, the rest lean b). For each size, each form of `rater_agreement` (the agreement of
every pair of raters, or each rater's answers counted per item, `form="counts"`) runs in a
child process of its own, timed and with its peak RSS read from the kernel, through
`group_association` with the study's permutation test. The pairs form is skipped above
--pairs-max raters (its memory grows with the square of the raters). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _run(n_raters: int, n_items: int, permutations: int, form: str) -> dict:
    import numpy as np

    from ratings.results.statistics.codes import A, B
    from ratings.results.statistics.grasp import group_association, rater_agreement

    rng = np.random.default_rng(0)
    raters = np.repeat(np.arange(n_raters), n_items)
    items = np.tile(np.arange(n_items), n_raters)
    leans_a = raters < n_raters // 3
    codes = np.where(
        rng.random(len(raters)) < 0.8, np.where(leans_a, A, B), np.where(leans_a, B, A)
    )
    groups = np.zeros((3, n_raters), dtype=bool)
    for cohort in range(3):
        groups[cohort, cohort * n_raters // 3 : (cohort + 1) * n_raters // 3] = True
    started = time.perf_counter()
    agreement = rater_agreement(raters, items, codes.astype(np.int8), n_raters=n_raters, form=form)
    built = time.perf_counter()
    results = group_association(
        agreement, groups, permutations=permutations, rng=np.random.default_rng(1)
    )
    finished = time.perf_counter()
    return {
        "raters": n_raters,
        "answers": len(raters),
        "form": form,
        "build_s": round(built - started, 3),
        "test_s": round(finished - built, 3),
        "gai": [round(r.gai, 4) if r.gai is not None else None for r in results],
        "p": [r.p for r in results],
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raters", type=int, nargs="+", default=[1000, 3000, 9000])
    parser.add_argument("--items", type=int, default=20)
    parser.add_argument("--permutations", type=int, default=1000)
    parser.add_argument("--pairs-max", type=int, default=3000)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        size, form = args.child
        print(json.dumps(_run(int(size), args.items, args.permutations, form)))
        return
    runs = []
    for size in args.raters:
        for form in ("pairs", "counts"):
            if form == "pairs" and size > args.pairs_max:
                runs.append({"raters": size, "form": form, "skipped": "above --pairs-max"})
                continue
            child = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--items",
                    str(args.items),
                    "--permutations",
                    str(args.permutations),
                    "--child",
                    str(size),
                    form,
                ],
                capture_output=True,
                text=True,
                check=True,
                cwd=ROOT,
            )
            runs.append(json.loads(child.stdout.strip().splitlines()[-1]))
    print(
        json.dumps(
            {
                "items": args.items,
                "permutations": args.permutations,
                "runs": runs,
                "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
                "load_average": os.getloadavg(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
