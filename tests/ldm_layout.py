"""Export a diffusers Stable Diffusion 1.x folder as one checkpoint in the original (LDM) layout.

diffusers ships only the other direction (original -> diffusers, in
`diffusers.loaders.single_file_utils`); its script
`scripts/convert_diffusers_to_original_stable_diffusion.py` is not part of the wheel and
hard-codes SD 1.5's four blocks of two layers. This is the exact
inverse of `convert_ldm_unet_checkpoint`, `convert_ldm_vae_checkpoint` and
`convert_ldm_clip_checkpoint` for any block count, so the tiny model can be saved as a single
file and loaded back with `from_single_file`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIX = "cond_stage_model.transformer."

_UNET_FIXED = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}
_UNET_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "time_emb_proj": "emb_layers.1",
    "conv_shortcut": "skip_connection",
}
_VAE_FIXED = {
    "conv_in": "conv_in",
    "conv_out": "conv_out",
    "conv_norm_out": "norm_out",
}
_VAE_ATTENTION = {
    "group_norm": "norm",
    "to_q": "q",
    "to_k": "k",
    "to_v": "v",
    "to_out.0": "proj_out",
}


def _rename_first(rest: str, mapping: dict[str, str]) -> str:
    for diffusers_name, ldm_name in mapping.items():
        if rest.startswith(diffusers_name + "."):
            return ldm_name + rest[len(diffusers_name) :]
    return rest


def unet_to_ldm(state: dict[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
    """Rename diffusers UNet2DConditionModel keys to the original `model.diffusion_model.` ones."""
    per_block = config["layers_per_block"] + 1
    has_up_attentions = {
        index: kind.startswith("CrossAttn") for index, kind in enumerate(config["up_block_types"])
    }
    converted: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        parts = key.split(".")
        fixed = ".".join(parts[:-1])
        if fixed in _UNET_FIXED:
            new = f"{_UNET_FIXED[fixed]}.{parts[-1]}"
        elif parts[0] == "down_blocks":
            block, kind, layer = int(parts[1]), parts[2], int(parts[3])
            rest = ".".join(parts[4:])
            index = 1 + block * per_block + layer
            if kind == "resnets":
                new = f"input_blocks.{index}.0.{_rename_first(rest, _UNET_RESNET)}"
            elif kind == "attentions":
                new = f"input_blocks.{index}.1.{rest}"
            else:  # downsamplers.0.conv.*
                new = f"input_blocks.{(block + 1) * per_block}.0.op.{parts[-1]}"
        elif parts[0] == "mid_block":
            kind, layer = parts[1], int(parts[2])
            rest = ".".join(parts[3:])
            if kind == "resnets":
                new = f"middle_block.{layer * 2}.{_rename_first(rest, _UNET_RESNET)}"
            else:
                new = f"middle_block.1.{rest}"
        elif parts[0] == "up_blocks":
            block, kind, layer = int(parts[1]), parts[2], int(parts[3])
            rest = ".".join(parts[4:])
            index = block * per_block + layer
            if kind == "resnets":
                new = f"output_blocks.{index}.0.{_rename_first(rest, _UNET_RESNET)}"
            elif kind == "attentions":
                new = f"output_blocks.{index}.1.{rest}"
            else:  # upsamplers.0.conv.*: after the attention when the block has one
                slot = 2 if has_up_attentions[block] else 1
                new = f"output_blocks.{block * per_block + per_block - 1}.{slot}.conv.{parts[-1]}"
        else:
            raise ValueError(f"unexpected UNet key {key!r}")
        converted[UNET_PREFIX + new] = tensor
    return converted


def vae_to_ldm(state: dict[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
    """Rename diffusers AutoencoderKL keys to the original `first_stage_model.` ones."""
    up_blocks = len(config["up_block_types"])
    converted: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        parts = key.split(".")
        side = parts[0]
        if side in ("quant_conv", "post_quant_conv"):
            converted[VAE_PREFIX + key] = tensor
            continue
        rest = ".".join(parts[1:])
        fixed = ".".join(parts[1:-1])
        if fixed in _VAE_FIXED:
            new = f"{_VAE_FIXED[fixed]}.{parts[-1]}"
        elif parts[1] in ("down_blocks", "up_blocks"):
            block = int(parts[2])
            ldm_block = block if parts[1] == "down_blocks" else up_blocks - 1 - block
            direction = "down" if parts[1] == "down_blocks" else "up"
            if parts[3] == "resnets":
                tail = ".".join(parts[5:]).replace("conv_shortcut", "nin_shortcut")
                new = f"{direction}.{ldm_block}.block.{parts[4]}.{tail}"
            else:  # downsamplers/upsamplers.0.conv.*
                new = f"{direction}.{ldm_block}.{direction}sample.conv.{parts[-1]}"
        elif parts[1] == "mid_block" and parts[2] == "resnets":
            tail = ".".join(parts[4:]).replace("conv_shortcut", "nin_shortcut")
            new = f"mid.block_{int(parts[3]) + 1}.{tail}"
        elif parts[1] == "mid_block" and parts[2] == "attentions":
            new = "mid.attn_1." + _rename_first(".".join(parts[4:]), _VAE_ATTENTION)
            # The original VAE attention projections are 1x1 convolutions.
            if tensor.ndim == 2:
                tensor = tensor[:, :, None, None]
        else:
            raise ValueError(f"unexpected VAE key {key!r} ({rest})")
        converted[f"{VAE_PREFIX}{side}.{new}"] = tensor
    return converted


def clip_to_ldm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Prefix CLIPTextModel keys the way the original checkpoints hold them."""
    # transformers >= 5.6 saves CLIPTextModel without its `text_model.` wrapper.
    return {
        CLIP_PREFIX + (key if key.startswith("text_model.") else "text_model." + key): tensor
        for key, tensor in state.items()
    }


def export_single_file(folder: Path, target: Path) -> Path:
    """Write the folder's UNet, VAE and text encoder as one original-layout checkpoint."""
    unet_config = json.loads((folder / "unet" / "config.json").read_text("utf-8"))
    vae_config = json.loads((folder / "vae" / "config.json").read_text("utf-8"))
    checkpoint = {
        **unet_to_ldm(
            load_file(folder / "unet" / "diffusion_pytorch_model.safetensors"), unet_config
        ),
        **vae_to_ldm(load_file(folder / "vae" / "diffusion_pytorch_model.safetensors"), vae_config),
        **clip_to_ldm(load_file(folder / "text_encoder" / "model.safetensors")),
    }
    checkpoint = {key: tensor.contiguous() for key, tensor in checkpoint.items()}
    if target.suffix == ".ckpt":
        torch.save({"state_dict": checkpoint}, target)
    else:
        save_file(checkpoint, target)
    return target


def config_only_copy(base: Path, target: Path) -> Path:
    """Copy a diffusers folder's configs, tokenizer and scheduler but none of its weights."""
    for source in base.rglob("*"):
        if source.is_file() and source.suffix in {".json", ".txt"}:
            destination = target / source.relative_to(base)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, destination)
    return target
