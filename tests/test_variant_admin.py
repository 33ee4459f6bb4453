"""Registering model variants in the Django admin: cheap checks as form errors, fingerprint."""

from __future__ import annotations

from html import unescape
from pathlib import Path

from generation.models import ModelVariant
from generation.pipeline import spec_fingerprint

ADD_URL = "/admin/generation/modelvariant/add/"


def variant_form(tiny_model, **overrides: object) -> dict[str, object]:
    data: dict[str, object] = {
        "name": "tiny-admin",
        "role": "finetuned",
        "base_checkpoint": str(tiny_model.base),
        "lora_path": str(tiny_model.lora),
        "lora_scale": 1.0,
        "scheduler": "euler",
        "steps": 4,
        "guidance": 4.5,
        "width": 64,
        "height": 64,
        "negative_prompt": "",
        "dtype": "auto",
    }
    data.update(overrides)
    return data


def test_a_missing_lora_path_is_shown_and_nothing_is_saved(
    admin_client, tiny_model, tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-lora"
    response = admin_client.post(ADD_URL, variant_form(tiny_model, lora_path=str(missing)))

    assert response.status_code == 200
    errors = response.context["adminform"].form.non_field_errors()
    assert list(errors) == [f"LoRA {missing} does not exist."]
    assert f"LoRA {missing} does not exist." in unescape(response.content.decode())
    assert not ModelVariant.objects.exists()


def test_every_problem_is_shown_at_once(admin_client, tiny_model, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-base"
    response = admin_client.post(
        ADD_URL, variant_form(tiny_model, base_checkpoint=str(missing), width=60)
    )

    assert list(response.context["adminform"].form.non_field_errors()) == [
        "Width 60 is not a positive multiple of 8.",
        f"Base checkpoint {missing} does not exist.",
    ]
    assert not ModelVariant.objects.exists()


def test_a_lora_scale_without_a_lora_is_refused(admin_client, tiny_model) -> None:
    response = admin_client.post(ADD_URL, variant_form(tiny_model, lora_path="", lora_scale=0.5))

    assert response.context["adminform"].form.errors["lora_scale"] == [
        "A LoRA scale needs a LoRA path; leave it at 1 without one."
    ]
    assert not ModelVariant.objects.exists()


def test_a_good_variant_is_saved_with_its_fingerprint(admin_client, tiny_model) -> None:
    response = admin_client.post(ADD_URL, variant_form(tiny_model))

    assert response.status_code == 302, response.content.decode()[:2000]
    variant = ModelVariant.objects.get(name="tiny-admin")
    assert variant.scheduler == "euler"
    assert len(variant.fingerprint) == 64
    assert variant.fingerprint == spec_fingerprint(variant.render_spec())


def test_editing_a_variant_refreshes_its_fingerprint(admin_client, tiny_model) -> None:
    admin_client.post(ADD_URL, variant_form(tiny_model))
    variant = ModelVariant.objects.get(name="tiny-admin")
    before = variant.fingerprint

    response = admin_client.post(
        f"/admin/generation/modelvariant/{variant.pk}/change/",
        variant_form(tiny_model, steps=5),
    )

    assert response.status_code == 302
    variant.refresh_from_db()
    assert variant.steps == 5
    assert variant.fingerprint == spec_fingerprint(variant.render_spec()) != before
