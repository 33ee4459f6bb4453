"""`manage.py demo_setup`, the heart of `make demo`: everything a newcomer needs, once."""

from __future__ import annotations

from django.contrib.auth import authenticate
from django.core.management import call_command

from generation.models import Image, ModelVariant, PromptBatch
from ratings.models import Study


def test_demo_setup_creates_study_people_model_and_batch_and_reuses_them(
    db, settings, tmp_path, django_capture_on_commit_callbacks
):
    settings.POLYPHONY_TINY_MODEL_DIR = tmp_path / "tiny"
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        call_command("demo_setup", seeds=1, no_showcase=True)
    study = Study.objects.get(slug="demo")
    assert study.criteria.count() == 4
    assert "india:tamil" in set(study.cohorts.values_list("path", flat=True))
    assert (tmp_path / "tiny" / "base" / "model_index.json").exists()
    assert set(ModelVariant.objects.values_list("role", flat=True)) == {"base", "finetuned"}
    assert Image.objects.count() == 30 * 2
    assert len(callbacks) == 30
    assert authenticate(username="rater", password="polyphony-rater") is not None
    researcher = authenticate(username="researcher", password="polyphony-research")
    assert researcher.has_perm("ratings.export_study")
    assert authenticate(username="admin", password="polyphony-admin").is_superuser
    # Settings a person trying the demo will not trip, and whose votes the scores show.
    assert (study.min_cohort_size, study.min_seconds_per_pair, study.max_failed_checks) == (
        1,
        0.5,
        20,
    )
    assert set(ModelVariant.objects.values_list("width", "steps")) == {(64, 8)}

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        call_command("demo_setup", seeds=1, no_showcase=True)
    assert PromptBatch.objects.count() == 1
    assert callbacks == []
    assert Study.objects.count() == 1
