"""Tests for the diffusers wrapper, run against the tiny offline model (no database)."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from generation.image_files import content_name, encode_png
from generation.model_files import single_file_config
from generation.pipeline import Renderer, RenderSpec, spec_fingerprint
from generation.tiny import TinyModel, build_tiny_model, tiny_model_is_complete
from tests.ldm_layout import config_only_copy, export_single_file

PROMPT = "a plate of jollof rice with fried plantain"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    """Build the tiny model once for the whole test session."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    """Share one renderer so the module loads the base pipeline only once."""
    return Renderer()


def make_spec(model: TinyModel, *, lora: bool = False, **overrides: object) -> RenderSpec:
    """Return a small, fast spec for the tiny model."""
    settings: dict[str, object] = {"steps": 4, "width": 64, "height": 64}
    settings.update(overrides)
    return RenderSpec(
        base_checkpoint=str(model.base),
        lora_path=str(model.lora) if lora else "",
        **settings,  # type: ignore[arg-type]
    )


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def png_chunk_types(data: bytes) -> list[str]:
    """Return the chunk types of a PNG stream in order."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    types, offset = [], 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        types.append(data[offset + 4 : offset + 8].decode("ascii"))
        offset += 12 + length
    return types


def test_tiny_model_build_is_complete(tiny_model: TinyModel, tmp_path: Path) -> None:
    assert tiny_model.base == tiny_model.base.parent / "base"
    assert tiny_model_is_complete(tiny_model.base.parent)
    assert not tiny_model_is_complete(tmp_path)
    size = sum(p.stat().st_size for p in tiny_model.base.parent.rglob("*") if p.is_file())
    assert size < 20 * 1024 * 1024


def test_same_spec_prompt_and_seed_render_identical_bytes(
    tiny_model: TinyModel, renderer: Renderer
) -> None:
    spec = make_spec(tiny_model, lora=True)
    first = renderer.render(spec, PROMPT, [7])
    second = renderer.render(spec, PROMPT, [7])
    assert len(first) == len(second) == 1
    assert first[0].size == (64, 64)
    assert encode_png(first[0]) == encode_png(second[0])


def test_lora_and_base_render_different_images(tiny_model: TinyModel, renderer: Renderer) -> None:
    base = renderer.render(make_spec(tiny_model), PROMPT, [3])[0]
    with_lora = renderer.render(make_spec(tiny_model, lora=True), PROMPT, [3])[0]
    difference = np.abs(pixels(base) - pixels(with_lora))
    # Rounding noise is below 1 grey level on average; the tiny LoRA moves pixels by ~19.
    assert difference.mean() > 5


@pytest.mark.parametrize("scheduler", ["dpm_multistep", "ddim", "euler", "euler_ancestral"])
def test_seed_renders_the_same_alone_and_inside_a_batch(
    tiny_model: TinyModel, renderer: Renderer, scheduler: str
) -> None:
    spec = make_spec(tiny_model, lora=True, scheduler=scheduler)
    alone = renderer.render(spec, PROMPT, [11])[0]
    batch = renderer.render(spec, PROMPT, [5, 11, 23])
    assert len(batch) == 3
    difference = np.abs(pixels(alone) - pixels(batch[1]))
    # Batched kernels round differently from single ones, so allow off-by-one grey levels: how
    # many depends on the CPU's kernels (DDIM put 12 % of values one level off on one machine,
    # none on another). A different seed differs by about 40 levels on average.
    assert difference.max() <= 2
    assert difference.mean() < 0.5
    assert np.abs(pixels(batch[0]) - pixels(batch[1])).mean() > 10


def test_switching_between_lora_and_base_does_not_reload_base(tiny_model: TinyModel) -> None:
    renderer = Renderer()
    base_spec = make_spec(tiny_model)
    lora_spec = make_spec(tiny_model, lora=True)
    half_lora_spec = make_spec(tiny_model, lora=True, lora_scale=0.5)

    base_first = encode_png(renderer.render(base_spec, PROMPT, [1])[0])
    lora_first = encode_png(renderer.render(lora_spec, PROMPT, [1])[0])
    base_again = encode_png(renderer.render(base_spec, PROMPT, [1])[0])
    half = encode_png(renderer.render(half_lora_spec, PROMPT, [1])[0])
    lora_again = encode_png(renderer.render(lora_spec, PROMPT, [1])[0])
    base_last = encode_png(renderer.render(base_spec, PROMPT, [1])[0])

    assert renderer.base_loads == 1
    # Switching must really toggle the adapter, not just skip the reload.
    assert base_first == base_again == base_last
    assert lora_first == lora_again
    assert len({base_first, lora_first, half}) == 3


def test_encode_png_carries_no_text_chunks() -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a secret prompt")
    info.add_itxt("Description", "more metadata")
    info.add_text("Comment", "compressed " * 20, zip=True)
    source = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 30, 40)).save(source, format="PNG", pnginfo=info)
    tagged = Image.open(io.BytesIO(source.getvalue()))
    tagged.load()
    assert {"tEXt", "iTXt", "zTXt"} <= set(png_chunk_types(source.getvalue()))

    data = encode_png(tagged)

    assert set(png_chunk_types(data)) == {"IHDR", "IDAT", "IEND"}
    assert b"secret" not in data
    assert np.array_equal(pixels(Image.open(io.BytesIO(data))), pixels(tagged))


def test_content_name_depends_only_on_bytes() -> None:
    data = encode_png(Image.new("RGB", (8, 8), (1, 2, 3)))
    same = encode_png(Image.new("RGB", (8, 8), (1, 2, 3)))
    other = encode_png(Image.new("RGB", (8, 8), (3, 2, 1)))

    name = content_name(data, ".png")
    assert name == hashlib.sha256(data).hexdigest() + ".png"
    assert content_name(same, ".png") == name
    assert content_name(other, ".png") != name


def test_spec_fingerprint_changes_with_lora_file_and_steps(
    tiny_model: TinyModel, tmp_path: Path
) -> None:
    lora_dir = tmp_path / "lora"
    shutil.copytree(tiny_model.lora, lora_dir)
    spec = RenderSpec(base_checkpoint=str(tiny_model.base), lora_path=str(lora_dir), steps=4)
    fingerprint = spec_fingerprint(spec)

    assert len(fingerprint) == 64
    assert spec_fingerprint(spec) == fingerprint
    assert spec_fingerprint(RenderSpec(**vars(spec))) == fingerprint
    assert spec_fingerprint(RenderSpec(**{**vars(spec), "steps": 5})) != fingerprint
    assert spec_fingerprint(RenderSpec(**{**vars(spec), "lora_path": ""})) != fingerprint

    weights = lora_dir / "pytorch_lora_weights.safetensors"
    stat = weights.stat()
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    # Same size, so force a distinct mtime in case the filesystem clock is coarse.
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))

    assert spec_fingerprint(spec) != fingerprint


def test_spec_fingerprint_follows_content_not_location(
    tiny_model: TinyModel, tmp_path: Path
) -> None:
    moved_base = tmp_path / "base-copy"
    shutil.copytree(tiny_model.base, moved_base)
    (moved_base / "README.md").write_text("notes do not change the weights\n")
    original = RenderSpec(base_checkpoint=str(tiny_model.base), lora_path=str(tiny_model.lora))
    moved = RenderSpec(base_checkpoint=str(moved_base), lora_path=str(tiny_model.lora))

    assert spec_fingerprint(moved) == spec_fingerprint(original)


def test_tiny_tokenizer_tokenises_demo_prompt_without_unknown_tokens(
    tiny_model: TinyModel,
) -> None:
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(tiny_model.base / "tokenizer", local_files_only=True)
    ids = tokenizer(PROMPT).input_ids

    assert tokenizer.model_max_length == 77
    assert len(ids) < 77
    assert ids[0] == tokenizer.bos_token_id
    assert ids[-1] == tokenizer.eos_token_id
    # The unknown token is <|endoftext|>, so it must appear only as the closing token.
    assert tokenizer.unk_token_id not in ids[1:-1]
    assert len(ids) > 3
    assert tokenizer.decode(ids, skip_special_tokens=True) == PROMPT


def test_unknown_scheduler_raises_value_error(tiny_model: TinyModel) -> None:
    renderer = Renderer(device="cpu")
    with pytest.raises(ValueError, match="unknown scheduler 'plms'"):
        renderer.render(make_spec(tiny_model, scheduler="plms"), PROMPT, [0])
    assert renderer.base_loads == 0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"dtype": "float64"}, "unknown dtype"),
        ({"width": 60}, "multiple of 8"),
        ({"height": 100}, "multiple of 8"),
    ],
)
def test_invalid_dtype_or_size_raises_value_error_before_loading(
    tiny_model: TinyModel, overrides: dict[str, object], message: str
) -> None:
    renderer = Renderer(device="cpu")
    with pytest.raises(ValueError, match=message):
        renderer.render(make_spec(tiny_model, **overrides), PROMPT, [0])
    assert renderer.base_loads == 0


@pytest.mark.parametrize("suffix", [".safetensors", ".ckpt"])
def test_single_file_checkpoint_renders_like_its_diffusers_folder(
    tiny_model: TinyModel, renderer: Renderer, tmp_path: Path, suffix: str
) -> None:
    checkpoint = export_single_file(tiny_model.base, tmp_path / f"tiny{suffix}")
    # Weights come only from the single file: the folder beside it has configs alone.
    config_only_copy(tiny_model.base, tmp_path / "tiny")
    assert single_file_config(str(checkpoint)) == tmp_path / "tiny"
    single = Renderer(device=renderer.device)

    for lora in (False, True):
        folder_spec = make_spec(tiny_model, lora=lora)
        single_spec = RenderSpec(**{**vars(folder_spec), "base_checkpoint": str(checkpoint)})
        expected = encode_png(renderer.render(folder_spec, PROMPT, [5])[0])
        assert encode_png(single.render(single_spec, PROMPT, [5])[0]) == expected
    assert single.base_loads == 1


def test_single_file_inside_a_diffusers_folder_uses_that_folder_as_config(
    tiny_model: TinyModel, tmp_path: Path
) -> None:
    folder = config_only_copy(tiny_model.base, tmp_path / "sd")
    checkpoint = export_single_file(tiny_model.base, folder / "weights.safetensors")
    assert single_file_config(str(checkpoint)) == folder
    assert single_file_config(str(tiny_model.base)) is None

    renderer = Renderer(device="cpu")
    renderer.load(RenderSpec(base_checkpoint=str(checkpoint), steps=4, width=64, height=64))
    assert renderer.base_loads == 1


def test_spec_fingerprint_covers_a_single_file_and_its_config_folder(
    tiny_model: TinyModel, tmp_path: Path
) -> None:
    checkpoint = export_single_file(tiny_model.base, tmp_path / "tiny.safetensors")
    config = config_only_copy(tiny_model.base, tmp_path / "tiny")
    spec = RenderSpec(base_checkpoint=str(checkpoint), steps=4)
    fingerprint = spec_fingerprint(spec)

    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.copyfile(checkpoint, moved / checkpoint.name)
    shutil.copytree(config, moved / "tiny")
    moved_spec = RenderSpec(base_checkpoint=str(moved / checkpoint.name), steps=4)
    assert spec_fingerprint(moved_spec) == fingerprint

    scheduler_config = moved / "tiny" / "scheduler" / "scheduler_config.json"
    scheduler_config.write_text(scheduler_config.read_text().replace("1000", "999"))
    assert spec_fingerprint(moved_spec) != fingerprint

    data = bytearray(checkpoint.read_bytes())
    data[-1] ^= 0xFF
    checkpoint.write_bytes(bytes(data))
    os.utime(checkpoint, ns=(0, checkpoint.stat().st_mtime_ns + 1_000_000_000))
    assert spec_fingerprint(spec) != fingerprint
