"""`manage.py check_variant NAME`: cheap checks, one real render of the tiny model, fingerprint."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from PIL import Image

from generation.image_files import encode_png
from generation.models import ModelVariant
from generation.pipeline import Renderer, spec_fingerprint


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("check_variant", *args, stdout=out)
    return out.getvalue()


def test_renders_the_lora_variant_and_stores_its_fingerprint(variants, tmp_path: Path) -> None:
    tuned = variants[1]
    assert tuned.fingerprint == ""
    png = tmp_path / "check.png"

    output = run("tiny-lora", "--seed", "3", "--out", str(png))

    tuned.refresh_from_db()
    spec = tuned.render_spec()
    assert tuned.fingerprint == spec_fingerprint(spec)
    assert ModelVariant.objects.get(name="tiny-base").fingerprint == ""  # only the one checked
    lines = dict(line.split(None, 1) for line in output.splitlines())
    assert lines["fingerprint"] == tuned.fingerprint
    assert lines["dtype"] == ("float32" if lines["device"] == "cpu" else "float16")
    assert float(lines["load"].removesuffix(" s")) > 0
    render_seconds, _, detail = lines["render"].partition(" s ")
    assert float(render_seconds) > 0
    assert detail == "(4 steps, 64x64)"
    # The written image is the default prompt rendered from the given seed, nothing else.
    expected = Renderer(device=lines["device"]).render(spec, "a test image", [3])[0]
    assert png.read_bytes() == encode_png(expected)
    assert Image.open(png).size == (64, 64)


def test_refuses_an_unknown_name(db) -> None:
    with pytest.raises(CommandError, match=r"^No variant named 'nope'\.$"):
        run("nope")


def test_refuses_a_variant_with_a_missing_lora_and_stores_nothing(
    db, tiny_model, tmp_path: Path
) -> None:
    missing = tmp_path / "gone"
    ModelVariant.objects.create(
        name="broken",
        role="finetuned",
        base_checkpoint=str(tiny_model.base),
        lora_path=str(missing),
        steps=4,
        width=64,
        height=64,
    )
    with pytest.raises(CommandError) as refused:
        run("broken", "--out", str(tmp_path / "never.png"))
    assert (
        str(refused.value)
        == f"Variant broken cannot be rendered:\n  LoRA {missing} does not exist."
    )
    assert ModelVariant.objects.get(name="broken").fingerprint == ""
    assert not (tmp_path / "never.png").exists()


def test_reports_a_base_that_passes_the_cheap_checks_but_fails_to_load(
    db, tiny_model, tmp_path: Path
) -> None:
    base = tmp_path / "base"
    shutil.copytree(tiny_model.base, base)
    (base / "unet" / "config.json").write_text("{ not json")
    ModelVariant.objects.create(
        name="corrupt", role="base", base_checkpoint=str(base), steps=4, width=64, height=64
    )
    with pytest.raises(CommandError, match=r"^Variant corrupt failed to load: "):
        run("corrupt")
    assert ModelVariant.objects.get(name="corrupt").fingerprint == ""
