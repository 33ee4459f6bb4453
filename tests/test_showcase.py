"""The showcase study of `make demo`: planted structure, labelled by the demo setup itself."""

from __future__ import annotations

from django.core.management import call_command

from ratings.models import ScoreRun, Study
from ratings.results.dashboard import dashboard_for_study


def _labels(board) -> dict[str, dict[str, str]]:
    """cohort path -> criterion key -> label, as the dashboard shows them."""
    return {
        section.path: {row.key: row.label for panel in section.panels for row in panel.rows}
        for section in board.sections
    }


def test_demo_setup_scores_the_showcase_with_the_planted_split_and_consensus(
    db, settings, tmp_path
):
    settings.POLYPHONY_TINY_MODEL_DIR = tmp_path / "tiny"
    call_command("demo_setup", seeds=1)

    study = Study.objects.get(slug="showcase")
    run = ScoreRun.objects.get(study=study)
    assert run.status == ScoreRun.Status.DONE
    assert run.votes_covered == study.votes.count() > 1000
    # Its pairs are real renders of the tiny model.
    assert study.pairs.filter(image_a__status="done", image_b__status="done").count() == 16

    top = _labels(dashboard_for_study(study=study))
    # India: one faction finds the stereotypical image the better representation.
    assert top["india"]["representation"] == "split"
    assert top["india"]["stereotype"] == "consensus"
    assert top["china"]["representation"] == "consensus"
    assert top["korea"]["representation"] == "consensus"
    assert top["mexico"]["representation"] == "contested"
    assert "split" not in top["mexico"].values()
    assert set(top["nigeria"].values()) == {"insufficient"}
    # The split holds in each subculture, where half of each faction lives.
    india = _labels(dashboard_for_study(study=study, cohort_path="india"))
    assert india["india:kerala"]["representation"] == "split"
    assert india["india:tamil"]["representation"] == "split"

    # The researcher sees it; a second setup leaves it as it was.
    assert study.grants.filter(user__username="researcher").exists()
    call_command("demo_setup", seeds=1)
    assert ScoreRun.objects.filter(study=study).count() == 1
