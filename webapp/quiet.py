"""Known, harmless messages of dependencies, dropped so that a normal run prints none.

Each entry says why it is safe to drop. Anything else a dependency says still reaches the log.
"""

from __future__ import annotations

import logging

# logger name -> the start of a message to drop from it, and why that is safe.
KNOWN_NOISE: dict[str, tuple[str, ...]] = {
    # transformers falls back to the PIL image processors without torchvision; the pipelines
    # load no image processor that is used (the safety checker is off), so nothing changes.
    "transformers.utils.import_utils": ("`",),
    # A LoRA adapter that trains the UNet only has no text-encoder keys: said on every load.
    "diffusers.loaders.peft": ("No LoRA keys associated",),
    "diffusers.loaders.lora_base": ("No LoRA keys associated",),
    "diffusers.loaders.lora_pipeline": ("No LoRA keys associated",),
    # The filesystem broker of the demo has no host; kombu says so on every connection.
    "kombu.connection": ("No hostname was supplied",),
}


class KnownNoise(logging.Filter):
    """Drop the records of KNOWN_NOISE from the logger this filter is attached to."""

    def filter(self, record: logging.LogRecord) -> bool:
        starts = KNOWN_NOISE.get(record.name, ())
        if not starts:
            return True
        message = record.getMessage()
        if record.name == "transformers.utils.import_utils":
            return "requires torchvision (not installed)" not in message
        return not message.startswith(starts)


def logging_filters() -> dict:
    """The `filters` and `loggers` entries of Django's LOGGING that drop the known noise."""
    return {
        "filters": {"known_noise": {"()": "webapp.quiet.KnownNoise"}},
        "loggers": {name: {"filters": ["known_noise"]} for name in KNOWN_NOISE},
    }


def progress_bars_off() -> None:
    """Loading bars of diffusers and transformers go to stderr, which a Celery worker logs as
    WARNING lines; the renderer logs one INFO line per image instead."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
