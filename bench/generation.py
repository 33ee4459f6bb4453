"""Benchmark: images per second through the real worker path against a bare diffusers loop.

    .venv/bin/python bench/generation.py --images 64

The worker path is everything a queued image goes through: the batch is queued in PostgreSQL,
render tasks travel through Redis to a real Celery worker process, which claims the rows,
renders, encodes PNG and WebP, stores the files and marks the rows done. The bare loop calls
the same Renderer with the same specs and seed chunks in this process. Both run in the same
invocation, alternating rounds, after a warm-up that loads the model; medians are reported.
`--batching` also compares several seeds per pipeline call with one image per call.

Uses DATABASE_URL (default: PostgreSQL database polyphony_bench on 127.0.0.1) and
CELERY_BROKER_URL (default redis://127.0.0.1:6379/14). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _support import ROOT, database_create, environment_defaults, machine

environment_defaults(database="polyphony_bench", broker_db=14)


def _start_worker(media_root: Path, log_path: Path) -> subprocess.Popen:
    env = {**os.environ, "MEDIA_ROOT": str(media_root), "PYTHONUNBUFFERED": "1"}
    command = [
        str(Path(sys.executable).parent / "celery"),
        "-A",
        "webapp",
        "worker",
        "-Q",
        "gpu",
        "-c",
        "1",
        "--prefetch-multiplier",
        "1",
        "--loglevel",
        "WARNING",
        "--without-gossip",
        "--without-mingle",
        "-n",
        f"bench-{os.getpid()}@%h",
    ]
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=log_path.open("w"), stderr=subprocess.STDOUT
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64, help="images per round (per path)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--seeds-per-prompt", type=int, default=4)
    parser.add_argument("--batching", action="store_true", help="also compare batch sizes")
    parser.add_argument("--model", default="", help="a diffusers folder (default: tiny model)")
    parser.add_argument("--lora", default="", help="LoRA for the fine-tuned variant")
    args = parser.parse_args()

    database_create(fresh=False)
    work = Path(tempfile.mkdtemp(prefix="polyphony-bench-"))
    media_root = work / "media"
    os.environ["MEDIA_ROOT"] = str(media_root)

    import django

    django.setup()
    import redis
    from django.conf import settings
    from django.core.management import call_command

    from generation.batch_files import PromptRow
    from generation.models import Image, ModelVariant
    from generation.pipeline import Renderer, pick_device
    from generation.services import batch_queue
    from generation.tiny import build_tiny_model
    from ratings.studies import cohort_ensure, study_create

    call_command("migrate", verbosity=0)
    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()
    if args.model:
        base_path, lora_path = args.model, args.lora
    else:
        tiny = build_tiny_model(work / "tiny")
        base_path, lora_path = str(tiny.base), str(tiny.lora)

    stamp = f"{os.getpid()}-{int(time.time())}"
    cohort_ensure(path="bench")
    study = study_create(name=f"bench {stamp}", slug=f"bench-{stamp}", cohort_paths=["bench"])
    common = {"steps": args.steps, "width": args.size, "height": args.size, "guidance": 4.5}
    base = ModelVariant.objects.create(
        name=f"bench-base-{stamp}", role="base", base_checkpoint=base_path, **common
    )
    tuned = ModelVariant.objects.create(
        name=f"bench-lora-{stamp}",
        role="finetuned",
        base_checkpoint=base_path,
        lora_path=lora_path,
        **common,
    )
    variants = [base, tuned]
    seeds_per_prompt = args.seeds_per_prompt
    prompts_per_round = max(1, args.images // (seeds_per_prompt * len(variants)))
    images_per_round = prompts_per_round * seeds_per_prompt * len(variants)
    rng = random.Random(0)

    def rows(round_name: str, count: int) -> list[PromptRow]:
        return [
            PromptRow(
                i + 1,
                f"{round_name} prompt {i}: a street market at dusk",
                "bench",
                "",
                tuple(rng.randint(0, 2**32 - 1) for _ in range(seeds_per_prompt)),
            )
            for i in range(count)
        ]

    def worker_round(name: str, count: int) -> float:
        started = time.perf_counter()
        batch = batch_queue(study=study, rows=rows(name, count), variants=variants)
        images = Image.objects.filter(prompt__batch=batch)
        while images.exclude(status__in=["done", "failed"]).exists():
            if worker.poll() is not None:
                raise SystemExit(f"worker died; see {log_path}")
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
        if images.filter(status="failed").exists():
            raise SystemExit(f"images failed: {images.filter(status='failed').first().error}")
        return elapsed

    renderer = Renderer()

    def bare_round(name: str, count: int, batch_size: int | None = None) -> float:
        chunk = batch_size or seeds_per_prompt
        started = time.perf_counter()
        for row in rows(name, count):
            for variant in variants:
                spec = variant.render_spec()
                for start in range(0, len(row.seeds), chunk):
                    renderer.render(spec, row.text, row.seeds[start : start + chunk])
        return time.perf_counter() - started

    log_path = work / "worker.log"
    worker = _start_worker(media_root, log_path)
    try:
        worker_round("warm-up", 1)  # loads the pipeline in the worker process
        bare_round("warm-up", 1)
        worker_times, bare_times = [], []
        for round_index in range(args.rounds):
            worker_times.append(worker_round(f"w{round_index}", prompts_per_round))
            bare_times.append(bare_round(f"b{round_index}", prompts_per_round))
    finally:
        worker.terminate()
        worker.wait(timeout=60)

    worker_rate = images_per_round / statistics.median(worker_times)
    bare_rate = images_per_round / statistics.median(bare_times)
    result = {
        "worker_images_per_s": round(worker_rate, 3),
        "bare_images_per_s": round(bare_rate, 3),
        "overhead": round(1 - worker_rate / bare_rate, 4),
        "device": renderer.device or pick_device(),
        "images_per_round": images_per_round,
        "rounds": args.rounds,
        "size": args.size,
        "steps": args.steps,
        "seeds_per_call": seeds_per_prompt,
        "worker_round_s": [round(t, 3) for t in worker_times],
        "bare_round_s": [round(t, 3) for t in bare_times],
        "machine": machine(),
    }
    if args.batching:
        batched, single = [], []
        for round_index in range(args.rounds):
            batched.append(bare_round(f"batched{round_index}", prompts_per_round))
            single.append(bare_round(f"single{round_index}", prompts_per_round, batch_size=1))
        result["batched_images_per_s"] = round(images_per_round / statistics.median(batched), 3)
        result["single_images_per_s"] = round(images_per_round / statistics.median(single), 3)
        result["batching_speedup"] = round(
            statistics.median(single) / statistics.median(batched), 3
        )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
