"""Render images with diffusers Stable Diffusion pipelines, keeping models loaded between calls."""

from __future__ import annotations

import gc
import hashlib
import json
import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from generation.model_files import (
    SINGLE_FILE_CONFIG_HINT,
    content_digest,
    is_single_file,
    single_file_config,
    stat_signature,
)

if TYPE_CHECKING:
    import torch
    from diffusers import StableDiffusionPipeline

# torch and diffusers are imported lazily inside functions: the web process imports this module
# for the constants, the spec and the hashing helpers, and must not pay for (or initialise) torch.

_FINGERPRINT_VERSION = 1

SCHEDULERS = ("dpm_multistep", "ddim", "euler", "euler_ancestral")
DTYPES = ("auto", "float16", "bfloat16", "float32")

_SCHEDULER_CLASSES = {
    "dpm_multistep": "DPMSolverMultistepScheduler",
    "ddim": "DDIMScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler_ancestral": "EulerAncestralDiscreteScheduler",
}


@dataclass(frozen=True)
class RenderSpec:
    """Describe everything except prompt and seed that determines a rendered image."""

    base_checkpoint: str  # local diffusers folder (or a hub id when online)
    lora_path: str = ""  # "" = none
    lora_scale: float = 1.0
    scheduler: str = "dpm_multistep"
    steps: int = 50
    guidance: float = 4.5
    width: int = 512
    height: int = 512
    negative_prompt: str = ""
    dtype: str = "auto"


def validate_spec(spec: RenderSpec) -> None:
    """Raise ValueError when the spec cannot be rendered."""
    if not spec.base_checkpoint:
        raise ValueError("base_checkpoint must not be empty")
    if spec.scheduler not in SCHEDULERS:
        raise ValueError(
            f"unknown scheduler {spec.scheduler!r}; expected one of {', '.join(SCHEDULERS)}"
        )
    if spec.dtype not in DTYPES:
        raise ValueError(f"unknown dtype {spec.dtype!r}; expected one of {', '.join(DTYPES)}")
    for name in ("width", "height"):
        value = getattr(spec, name)
        if value <= 0 or value % 8:
            raise ValueError(f"{name} must be a positive multiple of 8, got {value}")
    if spec.steps < 1:
        raise ValueError(f"steps must be at least 1, got {spec.steps}")
    if not math.isfinite(spec.guidance):
        raise ValueError(f"guidance must be finite, got {spec.guidance}")
    if not math.isfinite(spec.lora_scale):
        raise ValueError(f"lora_scale must be finite, got {spec.lora_scale}")


def pick_device() -> str:
    """Return the best available torch device name: cuda, then mps, then cpu."""
    import torch

    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    """Map a DTYPES name to a torch dtype, choosing fp16 on CUDA and fp32 elsewhere for auto."""
    import torch

    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; expected one of {', '.join(DTYPES)}")
    if dtype == "auto":
        return torch.float16 if device.startswith("cuda") else torch.float32
    return {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}[dtype]


def adapter_name_for(lora_path: str) -> str:
    """Derive a stable, peft-safe adapter name from a LoRA location."""
    location = Path(lora_path)
    key = str(location.resolve()) if location.exists() else lora_path
    # peft adapter names end up in module attribute paths, so keep them to [a-z0-9_].
    return "lora_" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


@dataclass
class _LoadedBase:
    pipe: StableDiffusionPipeline
    scheduler_config: Any
    # adapter name -> stat signature of the files it was loaded from
    adapters: dict[str, tuple[tuple[str, int, int], ...]] = field(default_factory=dict)


class Renderer:
    """Keep base pipelines loaded between calls and switch LoRA adapters by name."""

    def __init__(self, device: str | None = None, *, max_loaded_bases: int = 2) -> None:
        """Create a renderer; the device is picked on first use so nothing touches CUDA yet."""
        if max_loaded_bases < 1:
            raise ValueError("max_loaded_bases must be at least 1")
        self._device = device
        self.max_loaded_bases = max_loaded_bases
        self.base_loads = 0
        self._bases: OrderedDict[tuple[str, str], _LoadedBase] = OrderedDict()
        # Celery thread pools could share one renderer; a pipeline is not safe to run concurrently.
        self._lock = threading.RLock()

    @property
    def device(self) -> str:
        """Return the torch device this renderer uses, picking one on first access."""
        if self._device is None:
            self._device = pick_device()
        return self._device

    def render(self, spec: RenderSpec, prompt: str, seeds: Sequence[int]) -> list[Image.Image]:
        """Render one image per seed for the prompt in a single pipeline call."""
        validate_spec(spec)
        seeds = [int(seed) for seed in seeds]
        if not seeds:
            raise ValueError("at least one seed is required")

        import torch

        with self._lock:
            loaded = self._base(spec)
            pipe = loaded.pipe
            self._activate_lora(loaded, spec)
            scheduler_class = _scheduler_class(spec.scheduler)
            pipe.scheduler = scheduler_class.from_config(loaded.scheduler_config)

            generators, latents = self._initial_latents(pipe, spec, seeds)
            count = len(seeds)
            with torch.inference_mode():
                result = pipe(
                    prompt=[prompt] * count,
                    negative_prompt=[spec.negative_prompt] * count,
                    num_inference_steps=spec.steps,
                    guidance_scale=spec.guidance,
                    width=spec.width,
                    height=spec.height,
                    num_images_per_prompt=1,
                    latents=latents,
                    # Ancestral schedulers draw fresh noise each step; a per-seed generator that
                    # continues after the initial latents keeps every seed independent of its batch.
                    generator=generators,
                    output_type="pil",
                )
            return list(result.images)

    def _initial_latents(
        self, pipe: StableDiffusionPipeline, spec: RenderSpec, seeds: Sequence[int]
    ) -> tuple[list[torch.Generator], torch.Tensor]:
        """Draw unscaled initial noise per seed on the CPU so results match across devices."""
        import torch

        scale = pipe.vae_scale_factor
        shape = (1, pipe.unet.config.in_channels, spec.height // scale, spec.width // scale)
        generators = [torch.Generator("cpu").manual_seed(seed) for seed in seeds]
        # Drawn in fp32 and cast afterwards so fp16 and fp32 runs start from the same noise;
        # the pipeline multiplies by scheduler.init_noise_sigma itself.
        noise = [torch.randn(shape, generator=gen, dtype=torch.float32) for gen in generators]
        latents = torch.cat(noise).to(device=pipe.device, dtype=pipe.unet.dtype)
        return generators, latents

    def load(self, spec: RenderSpec) -> None:
        """Load the spec's base pipeline and LoRA now, so that rendering it only runs inference."""
        validate_spec(spec)
        with self._lock:
            self._activate_lora(self._base(spec), spec)

    def _base(self, spec: RenderSpec) -> _LoadedBase:
        """Return the loaded pipeline for the spec's base checkpoint and dtype, loading it once."""
        torch_dtype = resolve_dtype(spec.dtype, self.device)
        key = (spec.base_checkpoint, str(torch_dtype))
        loaded = self._bases.get(key)
        if loaded is not None:
            self._bases.move_to_end(key)
            return loaded

        while len(self._bases) >= self.max_loaded_bases:
            self._bases.popitem(last=False)
            self._release_memory()

        pipe = self._load_pipeline(spec.base_checkpoint, torch_dtype)
        pipe = pipe.to(self.device)
        pipe.set_progress_bar_config(disable=True)
        self.base_loads += 1
        loaded = _LoadedBase(pipe=pipe, scheduler_config=pipe.scheduler.config)
        self._bases[key] = loaded
        return loaded

    @staticmethod
    def _load_pipeline(checkpoint: str, torch_dtype: torch.dtype) -> StableDiffusionPipeline:
        """Load a diffusers folder, a hub id, or a single-file .safetensors/.ckpt checkpoint."""
        from diffusers import StableDiffusionPipeline

        from webapp.quiet import progress_bars_off

        progress_bars_off()
        options: dict[str, Any] = {
            "dtype": torch_dtype,
            # The safety checker costs memory and blanks images on false positives; ratings
            # of generated food images do not need it.
            "safety_checker": None,
            "requires_safety_checker": False,
        }
        if not is_single_file(checkpoint):
            local = Path(checkpoint).is_dir()
            return StableDiffusionPipeline.from_pretrained(
                checkpoint, local_files_only=local, **options
            )
        config = single_file_config(checkpoint)
        if config is not None:
            # A single file holds only weights; the component configs, the tokenizer and the
            # scheduler come from the diffusers folder beside it, so nothing is fetched.
            return StableDiffusionPipeline.from_single_file(
                checkpoint, config=str(config), local_files_only=True, **options
            )
        if "://" not in checkpoint and not Path(checkpoint).is_file():
            raise FileNotFoundError(f"single-file checkpoint {checkpoint} does not exist")
        try:
            # diffusers guesses the architecture from the weights and fetches its configs from the
            # hub (or the hub cache), which fails on an offline host.
            return StableDiffusionPipeline.from_single_file(checkpoint, **options)
        except OSError as exc:
            raise OSError(
                f"single-file checkpoint {checkpoint} has no diffusers config folder beside it "
                f"({SINGLE_FILE_CONFIG_HINT}) and its configs could not be fetched from the hub: "
                f"{exc}"
            ) from exc

    def _activate_lora(self, loaded: _LoadedBase, spec: RenderSpec) -> None:
        """Make exactly the spec's LoRA (or none) active on the loaded pipeline."""
        pipe = loaded.pipe
        if not spec.lora_path:
            if loaded.adapters:
                pipe.disable_lora()
            return

        name = adapter_name_for(spec.lora_path)
        signature = stat_signature(spec.lora_path)
        known = loaded.adapters.get(name)
        if known is not None and known != signature:
            # The file changed on disk since it was loaded; drop the stale weights.
            pipe.delete_adapters(name)
            del loaded.adapters[name]
            known = None
        if known is None:
            try:
                pipe.load_lora_weights(spec.lora_path, adapter_name=name)
            except Exception:
                # A half-injected adapter would leak into later base renders and block a retry
                # under the same name, so remove whatever part of it got in.
                if name in _adapter_names(pipe):
                    pipe.delete_adapters(name)
                raise
            loaded.adapters[name] = signature
        # disable_lora() switches the layers off globally and set_adapters() does not undo that.
        pipe.enable_lora()
        pipe.set_adapters([name], adapter_weights=[spec.lora_scale])

    def _release_memory(self) -> None:
        """Return memory of evicted pipelines to the allocator."""
        gc.collect()
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()


def _adapter_names(pipe: StableDiffusionPipeline) -> set[str]:
    """Return the names of every adapter present in any component of the pipeline."""
    return {name for names in pipe.get_list_adapters().values() for name in names}


def _scheduler_class(name: str) -> Any:
    """Return the diffusers scheduler class for a SCHEDULERS name."""
    import diffusers

    if name not in _SCHEDULER_CLASSES:
        raise ValueError(f"unknown scheduler {name!r}; expected one of {', '.join(SCHEDULERS)}")
    return getattr(diffusers, _SCHEDULER_CLASSES[name])


def spec_fingerprint(spec: RenderSpec) -> str:
    """Return a sha256 hex identifying the spec's settings and the contents of its model files."""
    settings = asdict(spec)
    # Paths are replaced by content digests so a moved or copied model keeps its fingerprint.
    del settings["base_checkpoint"], settings["lora_path"]
    if not spec.lora_path:
        settings["lora_scale"] = None
    base = content_digest(spec.base_checkpoint)
    config = single_file_config(spec.base_checkpoint)
    if base is not None and config is not None:
        # The config folder decides the architecture, tokenizer and scheduler, and supplies the
        # weights of any component the file lacks, so all of it is part of the identity.
        base["config"] = content_digest(str(config))
    payload = {
        "version": _FINGERPRINT_VERSION,
        "settings": settings,
        "base": base,
        "lora": content_digest(spec.lora_path),
    }
    encoded = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return hashlib.sha256(encoded).hexdigest()


def is_out_of_memory(exc: BaseException) -> bool:
    """Tell whether an exception means the device ran out of memory for this batch."""
    import torch

    oom_types = tuple(
        kind
        for kind in (
            getattr(torch, "OutOfMemoryError", None),
            getattr(torch.cuda, "OutOfMemoryError", None),
        )
        if kind is not None
    )
    if oom_types and isinstance(exc, oom_types):
        return True
    # MPS and some CUDA paths raise a plain RuntimeError with this wording.
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def free_device_memory(device: str) -> None:
    """Hand cached device memory back after an out-of-memory error, before a smaller retry."""
    gc.collect()
    if device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()


def default_batch_size(device: str) -> int:
    """Choose how many seeds go through one pipeline call on this device.

    About 3 GiB of device memory per 512 x 512 fp16 image at SD 1.x sizes, with headroom; on a
    CPU more than a few images per call only adds latency.
    """
    if device.startswith("cuda"):
        import torch

        total_gib = torch.cuda.get_device_properties(torch.device(device)).total_memory / 2**30
        return max(1, min(16, int(total_gib // 3)))
    return 4
