"""Management command that builds the tiny offline Stable Diffusion model."""

from __future__ import annotations

from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand

from generation.tiny import build_tiny_model, tiny_model_is_complete, tiny_model_paths


class Command(BaseCommand):
    help = "Build a tiny random Stable Diffusion pipeline and LoRA in DIR (no network needed)."

    def add_arguments(self, parser: ArgumentParser) -> None:
        """Declare the target directory, seed and --force."""
        parser.add_argument("directory", type=Path, help="folder that receives base/ and lora/")
        parser.add_argument("--seed", type=int, default=0, help="torch seed for the random weights")
        parser.add_argument(
            "--force",
            action="store_true",
            help="rebuild even if DIR already holds a complete model",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        """Build the model unless a complete one exists, then print its paths."""
        directory: Path = options["directory"].expanduser().resolve()
        if tiny_model_is_complete(directory) and not options["force"]:
            self.stdout.write(
                f"{directory} already holds a complete tiny model; reusing it (--force rebuilds)."
            )
            model = tiny_model_paths(directory)
        else:
            model = build_tiny_model(directory, seed=options["seed"])
            self.stdout.write(self.style.SUCCESS(f"Built tiny model in {directory}"))
        self.stdout.write(f"base: {model.base}")
        self.stdout.write(f"lora: {model.lora}")
