"""Cheap variant checks against the real tiny model, without loading any weights."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from generation.pipeline import RenderSpec
from generation.tiny import LORA_WEIGHT_NAME, TinyModel
from generation.variants import variant_problems
from tests.ldm_layout import config_only_copy, export_single_file

TO_Q = "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q"  # a 64 -> 64 Linear


def spec_for(base: Path | str, lora: Path | str = "", **settings: object) -> RenderSpec:
    return RenderSpec(base_checkpoint=str(base), lora_path=str(lora), **settings)  # type: ignore[arg-type]


def write_lora(path: Path, tensors: dict[str, tuple[int, ...]]) -> Path:
    save_file({key: np.zeros(shape, dtype=np.float32) for key, shape in tensors.items()}, path)
    return path


def test_tiny_base_with_its_lora_has_no_problems(tiny_model: TinyModel) -> None:
    assert variant_problems(spec_for(tiny_model.base, tiny_model.lora), online=False) == []
    weights = tiny_model.lora / LORA_WEIGHT_NAME
    assert variant_problems(spec_for(tiny_model.base, weights), online=False) == []


def test_missing_base_path_is_named(tiny_model: TinyModel, tmp_path: Path) -> None:
    missing = tmp_path / "models" / "gone"
    problems = variant_problems(spec_for(missing, tiny_model.lora), online=True)
    assert problems == [f"Base checkpoint {missing} does not exist."]


def test_missing_lora_is_named(tiny_model: TinyModel, tmp_path: Path) -> None:
    missing = tmp_path / "adapters" / "gone"
    problems = variant_problems(spec_for(tiny_model.base, missing), online=True)
    assert problems == [f"LoRA {missing} does not exist."]


def test_lora_key_for_a_module_the_base_lacks_is_named(
    tiny_model: TinyModel, tmp_path: Path
) -> None:
    bogus = TO_Q.replace("down_blocks.1", "down_blocks.7")
    lora = write_lora(
        tmp_path / "bogus.safetensors",
        {f"unet.{bogus}.lora_A.weight": (4, 64), f"unet.{bogus}.lora_B.weight": (64, 4)},
    )
    problems = variant_problems(spec_for(tiny_model.base, lora), online=False)
    assert problems == [
        f"LoRA key unet.{bogus}.lora_A.weight targets unet module {bogus}, "
        "which is not in the base checkpoint."
    ]


def test_lora_with_wrong_in_features_is_named(tiny_model: TinyModel, tmp_path: Path) -> None:
    lora = write_lora(
        tmp_path / "narrow.safetensors",
        {f"unet.{TO_Q}.lora_A.weight": (4, 48), f"unet.{TO_Q}.lora_B.weight": (64, 4)},
    )
    problems = variant_problems(spec_for(tiny_model.base, lora), online=False)
    assert problems == [
        f"LoRA key unet.{TO_Q}.lora_A.weight takes 48 input features but base module "
        f"unet.{TO_Q} takes 64."
    ]


def test_lora_with_wrong_out_features_or_rank_is_named(
    tiny_model: TinyModel, tmp_path: Path
) -> None:
    lora = write_lora(
        tmp_path / "odd.safetensors",
        {f"unet.{TO_Q}.lora_A.weight": (4, 64), f"unet.{TO_Q}.lora_B.weight": (32, 8)},
    )
    problems = variant_problems(spec_for(tiny_model.base, lora), online=False)
    assert problems == [
        f"LoRA key unet.{TO_Q}.lora_B.weight gives 32 output features but base module "
        f"unet.{TO_Q} gives 64.",
        f"LoRA keys unet.{TO_Q}.lora_A.weight and unet.{TO_Q}.lora_B.weight disagree on the "
        "rank (4 and 8).",
    ]


def test_kohya_keys_are_matched_to_base_modules(tiny_model: TinyModel, tmp_path: Path) -> None:
    peft = load_file(tiny_model.lora / LORA_WEIGHT_NAME)
    kohya = {}
    for key, tensor in peft.items():
        module, _, part = key.removeprefix("unet.").rpartition(".lora_")
        suffix = "lora_down.weight" if part == "A.weight" else "lora_up.weight"
        kohya[f"lora_unet_{module.replace('.', '_')}.{suffix}"] = tensor
    kohya["lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight"] = np.zeros(
        (4, 32), dtype=np.float32
    )
    kohya["lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight"] = np.zeros(
        (32, 4), dtype=np.float32
    )
    good = tmp_path / "kohya.safetensors"
    save_file(kohya, good)
    assert variant_problems(spec_for(tiny_model.base, good), online=False) == []

    kohya["lora_te_text_model_encoder_layers_9_self_attn_q_proj.lora_down.weight"] = np.zeros(
        (4, 32), dtype=np.float32
    )
    bad = tmp_path / "kohya-bad.safetensors"
    save_file(kohya, bad)
    assert variant_problems(spec_for(tiny_model.base, bad), online=False) == [
        "LoRA key lora_te_text_model_encoder_layers_9_self_attn_q_proj.lora_down.weight targets "
        "text_encoder module text_model_encoder_layers_9_self_attn_q_proj, which is not in the "
        "base checkpoint."
    ]


def test_unreadable_or_foreign_lora_files_are_named(tiny_model: TinyModel, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\xff" * 64)
    (problem,) = variant_problems(spec_for(tiny_model.base, garbage), online=False)
    assert problem.startswith(f"LoRA file {garbage} has no readable safetensors header (")

    foreign = write_lora(tmp_path / "foreign.safetensors", {"encoder.weight": (4, 4)})
    assert variant_problems(spec_for(tiny_model.base, foreign), online=False) == [
        f"LoRA file {foreign} holds no LoRA weights in a known layout "
        "(diffusers/peft lora_A/lora_B or kohya lora_down/lora_up keys)."
    ]


def test_lora_folder_with_several_weight_files_is_ambiguous(
    tiny_model: TinyModel, tmp_path: Path
) -> None:
    folder = tmp_path / "lora"
    folder.mkdir()
    for name in ("a.safetensors", "b.safetensors"):
        shutil.copyfile(tiny_model.lora / LORA_WEIGHT_NAME, folder / name)
    assert variant_problems(spec_for(tiny_model.base, folder), online=False) == [
        f"LoRA folder {folder} holds several .safetensors files (a.safetensors, b.safetensors); "
        "point the LoRA path at the one to use."
    ]
    (folder / "b.safetensors").unlink()
    assert variant_problems(spec_for(tiny_model.base, folder), online=False) == []


def test_base_folder_without_unet_or_model_index_is_named(
    tiny_model: TinyModel, tmp_path: Path
) -> None:
    base = tmp_path / "base"
    shutil.copytree(tiny_model.base, base)
    shutil.rmtree(base / "unet")
    assert variant_problems(spec_for(base), online=False) == [
        f"Base checkpoint folder {base} lists unet in model_index.json but has no unet/ folder."
    ]
    (base / "model_index.json").unlink()
    assert variant_problems(spec_for(base), online=False) == [
        f"Base checkpoint folder {base} has no model_index.json, so it is not a diffusers "
        "pipeline folder."
    ]


def test_bad_settings_are_each_named(tiny_model: TinyModel) -> None:
    spec = spec_for(tiny_model.base, width=60, height=0, steps=0, scheduler="plms")
    assert variant_problems(spec, online=False) == [
        "Width 60 is not a positive multiple of 8.",
        "Height 0 is not a positive multiple of 8.",
        "Steps must be at least 1, not 0.",
        "Scheduler 'plms' is unknown; use one of dpm_multistep, ddim, euler, euler_ancestral.",
    ]


def test_hub_id_needs_the_host_online(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # so the id cannot name a local folder
    spec = spec_for("polyphony-test/no-such-model")
    assert variant_problems(spec, online=True) == []
    assert variant_problems(spec, online=False) == [
        "Base checkpoint 'polyphony-test/no-such-model' is not a local path; as a hub id it "
        "needs the host online, and HF_HUB_OFFLINE is set with no cached copy."
    ]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert variant_problems(spec) == variant_problems(spec, online=False)


def test_single_file_checkpoint_is_checked_against_its_config_folder(
    tiny_model: TinyModel, tmp_path: Path
) -> None:
    checkpoint = export_single_file(tiny_model.base, tmp_path / "tiny.safetensors")
    spec = spec_for(checkpoint, tiny_model.lora)
    assert variant_problems(spec, online=False) == [
        f"Single-file checkpoint {checkpoint} has no diffusers config folder beside it (a folder "
        "with the same name minus the suffix, or the folder holding the file, with "
        "model_index.json and the component configs), and an offline host cannot fetch one "
        "from the hub."
    ]

    config_only_copy(tiny_model.base, tmp_path / "tiny")
    assert variant_problems(spec, online=False) == []

    # With the weights beside it too, LoRA keys are checked against the architecture.
    shutil.rmtree(tmp_path / "tiny")
    shutil.copytree(tiny_model.base, tmp_path / "tiny")
    bogus = TO_Q.replace("attn1", "attn9")
    lora = write_lora(
        tmp_path / "bogus.safetensors",
        {f"unet.{bogus}.lora_A.weight": (4, 64), f"unet.{bogus}.lora_B.weight": (64, 4)},
    )
    assert variant_problems(spec_for(checkpoint, lora), online=False) == [
        f"LoRA key unet.{bogus}.lora_A.weight targets unet module {bogus}, "
        "which is not in the base checkpoint."
    ]


def test_single_file_without_a_unet_is_named(tmp_path: Path) -> None:
    checkpoint = write_lora(tmp_path / "vae.safetensors", {"first_stage_model.x.weight": (4, 4)})
    assert variant_problems(spec_for(checkpoint), online=True) == [
        f"Single-file checkpoint {checkpoint} holds no Stable Diffusion UNet "
        "(no model.diffusion_model.* keys)."
    ]
