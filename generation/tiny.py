"""Build a tiny, randomly initialised Stable Diffusion pipeline and LoRA for offline tests."""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

BASE_DIRNAME = "base"
LORA_DIRNAME = "lora"
LORA_WEIGHT_NAME = "pytorch_lora_weights.safetensors"

BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
MODEL_MAX_LENGTH = 77
LORA_B_STD = 1.0

# A few merges so the BPE path is exercised; every merged token is added to the vocabulary.
_MERGES: tuple[tuple[str, str], ...] = (
    ("t", "h"),
    ("th", "e</w>"),
    ("a", "n"),
    ("an", "d</w>"),
    ("i", "n"),
    ("e", "r"),
    ("o", "f</w>"),
    ("r", "i"),
    ("c", "e</w>"),
    ("i", "c"),
)

# Files whose presence means a previous build finished; the build writes them last via rename.
_REQUIRED_FILES: tuple[str, ...] = (
    f"{BASE_DIRNAME}/model_index.json",
    f"{BASE_DIRNAME}/scheduler/scheduler_config.json",
    f"{BASE_DIRNAME}/unet/config.json",
    f"{BASE_DIRNAME}/unet/diffusion_pytorch_model.safetensors",
    f"{BASE_DIRNAME}/vae/config.json",
    f"{BASE_DIRNAME}/vae/diffusion_pytorch_model.safetensors",
    f"{BASE_DIRNAME}/text_encoder/config.json",
    f"{BASE_DIRNAME}/text_encoder/model.safetensors",
    f"{BASE_DIRNAME}/tokenizer/tokenizer_config.json",
    f"{BASE_DIRNAME}/tokenizer/vocab.json",
    f"{BASE_DIRNAME}/tokenizer/merges.txt",
    f"{LORA_DIRNAME}/{LORA_WEIGHT_NAME}",
)


@dataclass(frozen=True)
class TinyModel:
    """Locations of a built tiny base pipeline and its LoRA adapter."""

    base: Path
    lora: Path


def bytes_to_unicode() -> dict[int, str]:
    """Return the GPT-2/CLIP mapping from the 256 byte values to printable unicode characters."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    byte_values = printable[:]
    code_points = printable[:]
    extra = 0
    for value in range(256):
        if value not in byte_values:
            byte_values.append(value)
            code_points.append(256 + extra)
            extra += 1
    return dict(zip(byte_values, map(chr, code_points), strict=True))


def tiny_vocabulary() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Return a byte-level CLIP vocabulary and merge list that cover every byte sequence."""
    chars = list(bytes_to_unicode().values())
    vocab: dict[str, int] = {}
    for char in chars:
        vocab[char] = len(vocab)
    # CLIP's BPE marks the last symbol of each word with </w>, so every byte needs that form too.
    for char in chars:
        vocab[f"{char}</w>"] = len(vocab)
    for left, right in _MERGES:
        vocab.setdefault(left + right, len(vocab))
    vocab[BOS_TOKEN] = len(vocab)
    vocab[EOS_TOKEN] = len(vocab)
    return vocab, list(_MERGES)


def _amplify_lora(unet: torch.nn.Module, *, generator: torch.Generator) -> None:
    """Redraw the LoRA matrices so the adapter's update dominates the base attention weights."""
    import torch

    with torch.no_grad():
        for name, param in unet.named_parameters():
            # A ~ N(0, 1/fan_in) with unit-variance B makes B @ A a few times larger than
            # nn.Linear's default weights, so the effect survives a handful of denoising steps.
            if ".lora_A." in name:
                param.copy_(torch.randn(param.shape, generator=generator) / param.shape[1] ** 0.5)
            elif ".lora_B." in name:
                param.copy_(torch.randn(param.shape, generator=generator) * LORA_B_STD)


def _make_readable(root: Path) -> None:
    """Give built files ordinary permissions; some writers create them 0600 via temp files."""
    for path in root.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


def tiny_model_paths(directory: Path | str) -> TinyModel:
    """Return where build_tiny_model puts the base pipeline and LoRA under the directory."""
    root = Path(directory)
    return TinyModel(base=root / BASE_DIRNAME, lora=root / LORA_DIRNAME)


def tiny_model_is_complete(directory: Path | str) -> bool:
    """Tell whether the directory already holds a fully built tiny model."""
    root = Path(directory)
    return all((root / name).is_file() for name in _REQUIRED_FILES)


def build_tiny_model(directory: Path | str, *, seed: int = 0) -> TinyModel:
    """Build a tiny random Stable Diffusion pipeline plus a non-zero LoRA under the directory."""
    # Heavy imports stay local so importing this module (e.g. from a management command) is cheap.
    import torch
    from diffusers import (
        AutoencoderKL,
        DPMSolverMultistepScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    result = tiny_model_paths(root)

    # Build in a sibling staging folder and rename at the end, so a crash or a concurrent
    # reader never sees a half-written model that tiny_model_is_complete() would accept.
    staging = Path(tempfile.mkdtemp(prefix=".tiny-build-", dir=root))
    # Seeding the global generator is what makes the module inits reproducible; restore it after
    # so building a model does not change the random stream of the caller (e.g. a test session).
    rng_state = torch.get_rng_state()
    try:
        torch.manual_seed(seed)

        vocab, merges = tiny_vocabulary()
        tokenizer_src = staging / "tokenizer-src"
        tokenizer_src.mkdir()
        (tokenizer_src / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), "utf-8")
        merges_text = "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges)
        (tokenizer_src / "merges.txt").write_text(merges_text, "utf-8")
        # transformers 5 ignores vocab_file= in the constructor; from_pretrained converts the files.
        tokenizer = CLIPTokenizer.from_pretrained(
            tokenizer_src, model_max_length=MODEL_MAX_LENGTH, local_files_only=True
        )
        bos_id = tokenizer.convert_tokens_to_ids(BOS_TOKEN)
        eos_id = tokenizer.convert_tokens_to_ids(EOS_TOKEN)

        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=len(vocab),
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=4,
                max_position_embeddings=MODEL_MAX_LENGTH,
                projection_dim=32,
                bos_token_id=bos_id,
                eos_token_id=eos_id,
                pad_token_id=eos_id,
            )
        )
        unet = UNet2DConditionModel(
            sample_size=32,
            in_channels=4,
            out_channels=4,
            block_out_channels=(32, 64),
            layers_per_block=1,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=32,
            attention_head_dim=4,
        )
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            block_out_channels=(32, 64),
            down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
            up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
            latent_channels=4,
            sample_size=64,
        )
        scheduler = DPMSolverMultistepScheduler(
            num_train_timesteps=1000,
            beta_start=0.00085,
            beta_end=0.012,
            beta_schedule="scaled_linear",
            prediction_type="epsilon",
            steps_offset=1,
        )
        pipe = StableDiffusionPipeline(
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            unet=unet,
            scheduler=scheduler,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
        staged_base = staging / BASE_DIRNAME
        from webapp.quiet import progress_bars_off

        progress_bars_off()  # "Writing model shards" would print a bar into the demo's output
        pipe.save_pretrained(staged_base, safe_serialization=True)
        # Keep the plain BPE files next to tokenizer.json so older transformers can load them too.
        for name in ("vocab.json", "merges.txt"):
            shutil.copyfile(tokenizer_src / name, staged_base / "tokenizer" / name)

        # init_lora_weights=False keeps B from being zeroed (a zero B would make the adapter a
        # no-op); _amplify_lora then redraws A and B large enough to change images visibly.
        lora_config = LoraConfig(
            r=4,
            lora_alpha=4,
            target_modules=["to_q", "to_k", "to_v", "to_out.0"],
            init_lora_weights=False,
        )
        unet.add_adapter(lora_config)
        _amplify_lora(unet, generator=torch.Generator("cpu").manual_seed(seed + 1))
        # No adapter metadata: safetensors writes header metadata in hash-map order, which would
        # make the file differ between identical builds, and with lora_alpha == r the loader's
        # default alpha (the rank) gives the same scaling.
        StableDiffusionPipeline.save_lora_weights(
            staging / LORA_DIRNAME,
            unet_lora_layers=get_peft_model_state_dict(unet),
            weight_name=LORA_WEIGHT_NAME,
            safe_serialization=True,
        )
        shutil.rmtree(tokenizer_src)
        _make_readable(staging)

        for target in (result.base, result.lora):
            if target.exists():
                shutil.rmtree(target)
        (staging / LORA_DIRNAME).rename(result.lora)
        staged_base.rename(result.base)
    finally:
        torch.set_rng_state(rng_state)
        shutil.rmtree(staging, ignore_errors=True)
    return result
