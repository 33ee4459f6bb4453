"""Check a variant's settings and model files cheaply, before anything is loaded.

Only file headers are read: safetensors keys and shapes, model_index.json. Nothing here imports
Django or torch, so the admin form and `check_variant` can afford to run it on every save.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from generation.model_files import (
    SINGLE_FILE_CONFIG_HINT,
    SINGLE_FILE_SUFFIXES,
    is_single_file,
    single_file_config,
)
from generation.pipeline import DTYPES, SCHEDULERS, RenderSpec

LORA_WEIGHT_NAME = "pytorch_lora_weights.safetensors"
# A LoRA for another architecture misses hundreds of modules; a handful of sentences say enough.
MAX_KEY_PROBLEMS = 5

# Components the Stable Diffusion pipeline is built from; the renderer passes safety_checker and
# feature_extractor as None, so a folder may lack them.
_REQUIRED_COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
# Components a LoRA can patch, with the weight file names diffusers and transformers save.
_WEIGHT_FILES = {
    "unet": "diffusion_pytorch_model.safetensors",
    "text_encoder": "model.safetensors",
    "text_encoder_2": "model.safetensors",
}
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
_TRUE = {"1", "ON", "YES", "TRUE"}

# peft / current diffusers: unet.<module>.lora_A.weight (optionally with an adapter name).
_COMPONENT = r"^(?:(?P<component>unet|text_encoder|text_encoder_2)\.)?"
_PEFT_KEY = re.compile(_COMPONENT + r"(?P<module>.+)\.lora_(?P<part>[AB])(?:\.[\w-]+)?\.weight$")
# Older diffusers: <module>.lora.down.weight, <module>.lora_linear_layer.up.weight, and attention
# processors: <attention>.processor.to_q_lora.down.weight.
_DIFFUSERS_KEY = re.compile(
    _COMPONENT + r"(?P<module>.+)\.(?:lora|lora_linear_layer)\.(?P<part>down|up)\.weight$"
)
_PROCESSOR_KEY = re.compile(
    r"^(?:unet\.)?(?P<attention>.+)\.processor\."
    r"(?P<projection>to_q|to_k|to_v|to_out)_lora\.(?P<part>down|up)\.weight$"
)
# kohya-ss: lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight (dots become "_").
_KOHYA_KEY = re.compile(
    r"^lora_(?P<component>unet|te|te1|te2)_(?P<module>\w+)\.lora_(?P<part>down|up)\.weight$"
)
_KOHYA_COMPONENTS = {
    "unet": "unet",
    "te": "text_encoder",
    "te1": "text_encoder",
    "te2": "text_encoder_2",
}


@dataclass(frozen=True)
class _LoraWeight:
    key: str
    component: str
    module: str
    part: str  # "down" (lora_A: rank x in-features) or "up" (lora_B: out-features x rank)
    shape: tuple[int, ...]
    kohya: bool = False


def variant_problems(spec: RenderSpec, *, online: bool | None = None) -> list[str]:
    """Return one sentence per problem that would stop the spec from loading or rendering.

    `online` says whether the host may download from the Hugging Face hub; by default it may
    unless HF_HUB_OFFLINE is set. Hub ids cannot be checked further than that.
    """
    if online is None:
        online = os.environ.get("HF_HUB_OFFLINE", "").upper() not in _TRUE
    problems = settings_problems(spec)
    base_problems, components = _base_problems(spec.base_checkpoint, online=online)
    problems += base_problems
    problems += _lora_problems(spec.lora_path, components, online=online)
    return problems


def settings_problems(spec: RenderSpec) -> list[str]:
    """Return a sentence for each rendering setting the pipeline would refuse."""
    problems = []
    for name in ("width", "height"):
        value = getattr(spec, name)
        if value <= 0 or value % 8:
            problems.append(f"{name.capitalize()} {value} is not a positive multiple of 8.")
    if spec.steps < 1:
        problems.append(f"Steps must be at least 1, not {spec.steps}.")
    if spec.scheduler not in SCHEDULERS:
        problems.append(
            f"Scheduler {spec.scheduler!r} is unknown; use one of {', '.join(SCHEDULERS)}."
        )
    if spec.dtype not in DTYPES:
        problems.append(f"Dtype {spec.dtype!r} is unknown; use one of {', '.join(DTYPES)}.")
    if not math.isfinite(spec.guidance) or spec.guidance < 0:
        problems.append(f"Guidance must be a finite number of at least 0, not {spec.guidance}.")
    if not math.isfinite(spec.lora_scale):
        problems.append(f"LoRA scale must be a finite number, not {spec.lora_scale}.")
    return problems


def _base_problems(location: str, *, online: bool) -> tuple[list[str], dict[str, Path]]:
    """Check the base checkpoint; return its problems and its local component folders."""
    if not location:
        return ["No base checkpoint is set."], {}
    path = Path(location)
    if not path.exists():
        if _HUB_ID.match(location):
            return _hub_problems("Base checkpoint", location, "model_index.json", online), {}
        if path.suffix.lower() in SINGLE_FILE_SUFFIXES:
            return [f"Single-file checkpoint {location} does not exist."], {}
        return [f"Base checkpoint {location} does not exist."], {}
    if path.is_dir():
        return _pipeline_folder_problems(path, f"Base checkpoint folder {location}")
    if not is_single_file(location):
        return [
            f"Base checkpoint {location} is a file but not a .safetensors or .ckpt checkpoint, "
            "nor a diffusers folder."
        ], {}
    if not os.access(path, os.R_OK):
        return [f"Single-file checkpoint {location} is not readable."], {}
    problems = []
    if path.suffix.lower() == ".safetensors":
        try:
            keys = _safetensors_shapes(path)
        except Exception as exc:  # safetensors raises its own error type for bad headers
            return [
                f"Single-file checkpoint {location} has no readable safetensors header ({exc})."
            ], {}
        if not any(key.startswith("model.diffusion_model.") for key in keys):
            problems.append(
                f"Single-file checkpoint {location} holds no Stable Diffusion UNet "
                "(no model.diffusion_model.* keys)."
            )
    config = single_file_config(location)
    if config is None:
        if not online:
            problems.append(
                f"Single-file checkpoint {location} has no diffusers config folder beside it "
                f"({SINGLE_FILE_CONFIG_HINT}), and an offline host cannot fetch one from the hub."
            )
        return problems, {}
    config_problems, components = _pipeline_folder_problems(
        config, f"Config folder {config} of single-file checkpoint {location}", weights=False
    )
    return problems + config_problems, components


def _pipeline_folder_problems(
    folder: Path, label: str, *, weights: bool = True
) -> tuple[list[str], dict[str, Path]]:
    """Check that a diffusers folder lists and holds the pipeline's components."""
    index_path = folder / "model_index.json"
    if not index_path.is_file():
        return [f"{label} has no model_index.json, so it is not a diffusers pipeline folder."], {}
    try:
        index = json.loads(index_path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return [f"{index_path} cannot be read as JSON ({exc})."], {}
    if not isinstance(index, dict):
        return [f"{index_path} does not describe a pipeline."], {}
    problems = []
    components = {}
    for name in _REQUIRED_COMPONENTS:
        entry = index.get(name)
        if not (isinstance(entry, list) and all(entry)):
            problems.append(f"{label} lists no {name} in model_index.json.")
        elif not (folder / name).is_dir():
            problems.append(f"{label} lists {name} in model_index.json but has no {name}/ folder.")
        else:
            components[name] = folder / name
    if not weights:
        # The weights of a single file's config folder are only a stand-in for its architecture.
        return problems, components
    for name in ("unet", "vae", "text_encoder"):
        if name in components and not _has_weights(components[name]):
            problems.append(f"{label} has no weights in {name}/.")
    return problems, components


def _has_weights(folder: Path) -> bool:
    return any(
        path.suffix in {".safetensors", ".bin"} or path.name.endswith(".index.json")
        for path in folder.iterdir()
    )


def _hub_problems(label: str, location: str, filename: str, online: bool) -> list[str]:
    if online:
        return []  # It can only be checked by downloading it.
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(location, filename), str):
        return []
    return [
        f"{label} {location!r} is not a local path; as a hub id it needs the host online, "
        "and HF_HUB_OFFLINE is set with no cached copy."
    ]


def _lora_problems(location: str, components: dict[str, Path], *, online: bool) -> list[str]:
    if not location:
        return []
    path = Path(location)
    if not path.exists():
        if _HUB_ID.match(location):
            return _hub_problems("LoRA", location, LORA_WEIGHT_NAME, online)
        return [f"LoRA {location} does not exist."]
    if path.is_dir():
        try:
            weights, problem = _lora_file_in(path)
        except OSError as exc:
            return [f"LoRA folder {location} cannot be listed ({exc.strerror})."]
        if problem:
            return [problem]
        if weights is None:
            return []  # Only .bin weights: readable by unpickling them, which is not cheap.
    else:
        weights = path
        if path.suffix != ".safetensors":
            return []
    if not os.access(weights, os.R_OK):
        return [f"LoRA file {weights} is not readable."]
    try:
        shapes = _safetensors_shapes(weights)
    except Exception as exc:  # safetensors raises its own error type for bad headers
        return [f"LoRA file {weights} has no readable safetensors header ({exc})."]
    lora_weights = [
        weight for key, shape in shapes.items() if (weight := _parse_lora_key(key, shape))
    ]
    if not lora_weights:
        return [
            f"LoRA file {weights} holds no LoRA weights in a known layout "
            "(diffusers/peft lora_A/lora_B or kohya lora_down/lora_up keys)."
        ]
    return _fit_problems(lora_weights, components, weights)


def _lora_file_in(folder: Path) -> tuple[Path | None, str]:
    """Return the weight file diffusers would load from a LoRA folder, or a problem."""
    if (folder / LORA_WEIGHT_NAME).is_file():
        return folder / LORA_WEIGHT_NAME, ""
    # As diffusers' _best_guess_weight_name: training leftovers are not adapters.
    candidates = sorted(
        path
        for path in folder.iterdir()
        if path.suffix == ".safetensors"
        and not any(word in path.name for word in ("scheduler", "optimizer", "checkpoint"))
    )
    if len(candidates) == 1:
        return candidates[0], ""
    if len(candidates) > 1:
        names = ", ".join(path.name for path in candidates)
        return None, (
            f"LoRA folder {folder} holds several .safetensors files ({names}); point the LoRA "
            "path at the one to use."
        )
    if any(path.suffix == ".bin" for path in folder.iterdir()):
        return None, ""
    return None, f"LoRA folder {folder} holds no {LORA_WEIGHT_NAME} or other LoRA weights."


def _parse_lora_key(key: str, shape: tuple[int, ...]) -> _LoraWeight | None:
    """Name the base module and the LoRA matrix a weight key belongs to, if it is one."""
    if match := _PEFT_KEY.match(key):
        part = "down" if match["part"] == "A" else "up"
        component = match["component"] or "unet"
        return _LoraWeight(key, component, match["module"], part, shape)
    if match := _PROCESSOR_KEY.match(key):
        projection = "to_out.0" if match["projection"] == "to_out" else match["projection"]
        module = f"{match['attention']}.{projection}"
        return _LoraWeight(key, "unet", module, match["part"], shape)
    if match := _DIFFUSERS_KEY.match(key):
        component = match["component"] or "unet"
        return _LoraWeight(key, component, match["module"], match["part"], shape)
    if match := _KOHYA_KEY.match(key):
        component = _KOHYA_COMPONENTS[match["component"]]
        return _LoraWeight(key, component, match["module"], match["part"], shape, kohya=True)
    return None


def _fit_problems(
    lora_weights: Iterable[_LoraWeight], components: dict[str, Path], weights_file: Path
) -> list[str]:
    """Check that every LoRA matrix targets an existing base module of matching size."""
    targets: dict[str, dict[str, tuple[int, ...]] | None] = {}
    missing: list[str] = []
    mismatched: list[str] = []
    ranks: dict[tuple[str, str], dict[str, _LoraWeight]] = {}
    unknown: set[tuple[str, str]] = set()
    unknown_components: set[str] = set()
    for weight in lora_weights:
        if weight.component not in targets:
            targets[weight.component] = _module_shapes(components.get(weight.component))
        modules = targets[weight.component]
        if modules is None:
            known = weight.component in components or weight.component in unknown_components
            if components and not known:
                unknown_components.add(weight.component)
                missing.append(
                    f"LoRA key {weight.key} targets {weight.component}, which the base "
                    "checkpoint does not have."
                )
            continue  # No readable safetensors weights to compare with (a hub id, .bin files).
        module = _resolve_module(weight, modules)
        if module is None:
            if (weight.component, weight.module) in unknown:
                continue  # One sentence per module, not one for each of its matrices.
            unknown.add((weight.component, weight.module))
            missing.append(
                f"LoRA key {weight.key} targets {weight.component} module {weight.module}, "
                "which is not in the base checkpoint."
            )
            continue
        target = modules[module]
        if len(target) < 2:
            mismatched.append(
                f"LoRA key {weight.key} targets {weight.component} module {module}, which is "
                "not a linear or convolution layer."
            )
            continue
        if weight.part == "down" and (len(weight.shape) < 2 or weight.shape[1] != target[1]):
            mismatched.append(
                f"LoRA key {weight.key} takes {_dim(weight.shape, 1)} input features but base "
                f"module {weight.component}.{module} takes {target[1]}."
            )
        elif weight.part == "up" and weight.shape[0] != target[0]:
            mismatched.append(
                f"LoRA key {weight.key} gives {weight.shape[0]} output features but base "
                f"module {weight.component}.{module} gives {target[0]}."
            )
        ranks.setdefault((weight.component, module), {})[weight.part] = weight
    for down, up in ((pair.get("down"), pair.get("up")) for pair in ranks.values()):
        if down is None and up is not None:
            mismatched.append(f"LoRA key {up.key} has no matching down (lora_A) matrix.")
        elif up is None and down is not None:
            mismatched.append(f"LoRA key {down.key} has no matching up (lora_B) matrix.")
        elif down is not None and up is not None and _dim(up.shape, 1) != down.shape[0]:
            mismatched.append(
                f"LoRA keys {down.key} and {up.key} disagree on the rank "
                f"({down.shape[0]} and {_dim(up.shape, 1)})."
            )
    problems = missing[:MAX_KEY_PROBLEMS] + mismatched[:MAX_KEY_PROBLEMS]
    hidden = max(0, len(missing) - MAX_KEY_PROBLEMS) + max(0, len(mismatched) - MAX_KEY_PROBLEMS)
    if hidden:
        problems.append(
            f"LoRA file {weights_file} has {hidden} more keys that do not fit the base."
        )
    return problems


def _dim(shape: tuple[int, ...], index: int) -> int | str:
    return shape[index] if len(shape) > index else "no"


def _resolve_module(weight: _LoraWeight, modules: dict[str, tuple[int, ...]]) -> str | None:
    """Find the base module a LoRA key names, allowing for naming differences between tools."""
    if weight.kohya:
        underscored = {name.replace(".", "_"): name for name in modules}
        candidates = [weight.module, weight.module.removeprefix("text_model_")]
        return next((underscored[name] for name in candidates if name in underscored), None)
    # transformers >= 5.6 saves CLIPTextModel without the text_model. wrapper that older LoRAs name.
    candidates = [weight.module, weight.module.removeprefix("text_model.")]
    return next((name for name in candidates if name in modules), None)


def _module_shapes(folder: Path | None) -> dict[str, tuple[int, ...]] | None:
    """Return {module name: weight shape} of a component folder's safetensors weights."""
    if folder is None or not folder.is_dir():
        return None
    files = _component_weight_files(folder)
    if not files:
        return None
    modules = {}
    for path in files:
        for key, shape in _safetensors_shapes(path).items():
            if key.endswith(".weight"):
                modules[key.removesuffix(".weight")] = shape
    return modules


def _component_weight_files(folder: Path) -> list[Path]:
    """List the safetensors files that hold one component's weights, shards included."""
    name = _WEIGHT_FILES.get(folder.name, "diffusion_pytorch_model.safetensors")
    if (folder / name).is_file():
        return [folder / name]
    index = folder / f"{name}.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text("utf-8")).get("weight_map", {})
        return [folder / shard for shard in sorted(set(weight_map.values()))]
    # Only a variant such as model.fp16.safetensors: same keys and shapes.
    variants = sorted(folder.glob("*.safetensors"))
    return variants[:1]


def _safetensors_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Read a safetensors header: every key with its shape, without loading a tensor."""
    from safetensors import safe_open

    with safe_open(path, framework="numpy") as handle:
        names = handle.keys()  # a safe_open handle is not iterable
        return {key: tuple(handle.get_slice(key).get_shape()) for key in names}
