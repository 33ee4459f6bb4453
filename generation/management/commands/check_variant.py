"""Load a variant and render one image: `check_variant NAME [--prompt T] [--seed N] [--out F]`."""

from __future__ import annotations

import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from generation.models import MAX_SEED, ModelVariant
from generation.variants import variant_problems


class Command(BaseCommand):
    help = (
        "Check a variant's settings and files, load it, render one image, and store its "
        "fingerprint."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="the variant's name")
        parser.add_argument("--prompt", default="a test image", help='default "a test image"')
        parser.add_argument("--seed", type=int, default=0, help="default 0")
        parser.add_argument("--out", type=Path, help="write the image here as PNG")

    def handle(self, *args, name: str, prompt: str, seed: int, out: Path | None, **options) -> None:
        try:
            variant = ModelVariant.objects.get(name=name)
        except ModelVariant.DoesNotExist as exc:
            raise CommandError(f"No variant named {name!r}.") from exc
        if not 0 <= seed <= MAX_SEED:
            raise CommandError(f"--seed must be between 0 and {MAX_SEED}, not {seed}.")
        spec = variant.render_spec()
        problems = variant_problems(spec)
        if problems:
            lines = "\n".join(f"  {problem}" for problem in problems)
            raise CommandError(f"Variant {name} cannot be rendered:\n{lines}")

        # torch and diffusers load only once the cheap checks have passed.
        from generation.image_files import encode_png
        from generation.pipeline import Renderer, resolve_dtype, spec_fingerprint

        renderer = Renderer(device=settings.POLYPHONY_RENDER_DEVICE or None)
        device = renderer.device
        started = time.perf_counter()
        try:
            renderer.load(spec)
        except Exception as exc:
            raise CommandError(f"Variant {name} failed to load: {exc}") from exc
        loaded = time.perf_counter()
        try:
            (image,) = renderer.render(spec, prompt, [seed])
        except Exception as exc:
            raise CommandError(f"Variant {name} failed to render: {exc}") from exc
        rendered = time.perf_counter()

        if out is not None:
            try:
                out.write_bytes(encode_png(image))
            except OSError as exc:
                raise CommandError(f"Cannot write {out}: {exc.strerror}.") from exc
        fingerprint = spec_fingerprint(spec)
        ModelVariant.objects.filter(pk=variant.pk).update(fingerprint=fingerprint)

        size = f"{image.width}x{image.height}"
        report = [
            ("variant", name),
            ("device", device),
            ("dtype", str(resolve_dtype(spec.dtype, device)).removeprefix("torch.")),
            ("load", f"{loaded - started:.2f} s"),
            ("render", f"{rendered - loaded:.2f} s ({spec.steps} steps, {size})"),
            ("fingerprint", fingerprint),
        ]
        if out is not None:
            report.append(("image", str(out)))
        for label, value in report:
            self.stdout.write(f"{label:<12} {value}")
