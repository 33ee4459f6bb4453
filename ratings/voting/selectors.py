"""Selectors of the rating page: the prompt, two blind images, the questions, what follows."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.utils.translation import gettext

from ratings.assignment.state import RatingNext, RatingState, ServedPair
from ratings.cohorts import cohort_path_contains
from ratings.models import Side
from ratings.voting.images import impression_url


def shared_culture_path(*, prompt_cohort_path: str, rater_cohort_paths: list[str]) -> str:
    """Return the culture a rater shares with a prompt: the shallower of two related labels.

    A rater of india:tamil judging a prompt about india is asked about India; a rater of india
    judging a prompt about india:kerala too. An out-group prompt keeps its own label.
    """
    for path in sorted(rater_cohort_paths, key=lambda path: path.count(":")):
        if cohort_path_contains(path, prompt_cohort_path):
            return path
        if cohort_path_contains(prompt_cohort_path, path):
            return prompt_cohort_path
    return prompt_cohort_path


def _questions(state: RatingState, served: ServedPair) -> list[dict[str, str]]:
    rater_cohorts = {path: name for _, path, name in state.cohorts}
    culture_path = shared_culture_path(
        prompt_cohort_path=served.prompt_cohort_path, rater_cohort_paths=list(rater_cohorts)
    )
    culture = rater_cohorts.get(culture_path) or served.prompt_cohort_name
    return [
        # In the rater's language where the study translated it, else the study's own (the
        # state reads it so); the default wording, untranslated, from the interface's
        # catalogue; else as written.
        {
            "key": criterion.key,
            "text": _catalogued(criterion.question).replace("{culture}", culture),
        }
        for criterion in state.study.criteria
    ]


def _catalogued(text: str) -> str:
    # gettext("") is the catalogue's header, not an empty text.
    return gettext(text) if text else text


def _screen_urls(slug: str, served: ServedPair) -> list[str]:
    """Return the impression URLs of the pair's images as shown: left, then right."""
    sides = [Side.A, Side.B] if served.shown_left == Side.A else [Side.B, Side.A]
    return [impression_url(slug, served.pk, side) for side in sides]


def _prefetch_urls(slug: str, upcoming: ServedPair | None) -> list[str]:
    if upcoming is None:
        return []
    # Two URLs of this impression alone (an identical check's too), in random order, so
    # neither their order nor anything else about them says which side they will be shown on.
    urls = [impression_url(slug, upcoming.pk, side) for side in Side.values]
    secrets.SystemRandom().shuffle(urls)
    return urls


def rating_page_context(*, state: RatingState, following: RatingNext) -> dict:
    """Return what the rating page shows: the prompt, two images in screen order, the questions.

    Nothing here names a variant or a stored file: the images go out as 'Image 1' and
    'Image 2' under per-impression URLs, and the upcoming assignment's two URLs are listed for
    prefetching in random order.
    """
    current = following.current
    assert current is not None
    return {
        "assignment_id": current.pk,
        "prompt_text": current.prompt_text,
        # The prompt the images were rendered from, when the rater reads a translation.
        "prompt_original": (
            current.prompt_original if current.prompt_original != current.prompt_text else ""
        ),
        "prompt_language": settings.LANGUAGE_CODE,
        "image_urls": _screen_urls(state.study.slug, current),
        "questions": _questions(state, current),
        "prefetch_urls": _prefetch_urls(state.study.slug, following.upcoming),
        "progress": following.progress,
    }


def rating_payload(*, state: RatingState, following: RatingNext, redirect_to: str = "") -> dict:
    """Return the JSON answer to a vote or skip from rate.js: the next pair, or where to go.

    The same blinding as the page: an opaque assignment id, the prompt, image URLs in screen
    order, the questions, prefetch URLs in random order, and progress; no model, role, seed,
    variant or side in model terms.
    """
    progress = following.progress
    payload: dict = {
        "progress": {
            "done": progress.done,
            "quota": progress.quota,
            "text": gettext("%(done)s of %(quota)s pairs rated")
            % {"done": progress.done, "quota": progress.quota},
        }
    }
    if following.current is None:
        payload["redirect"] = redirect_to
        return payload
    context = rating_page_context(state=state, following=following)
    payload.update(
        assignment=str(context["assignment_id"]),
        prompt=context["prompt_text"],
        prompt_original=context["prompt_original"],
        images=context["image_urls"],
        questions=context["questions"],
        prefetch=context["prefetch_urls"],
    )
    return payload


def pairs_being_made(*, study) -> int:
    """How many pairs of the study are still being rendered: prompt and seed combinations of
    its open batches with an image queued or running."""
    from generation.models import Image, PromptBatch

    return (
        Image.objects.filter(
            prompt__batch__study_id=study.pk,
            prompt__batch__status__in=[PromptBatch.Status.QUEUED, PromptBatch.Status.RUNNING],
            status__in=[Image.Status.QUEUED, Image.Status.RUNNING],
        )
        .values("prompt_id", "seed")
        .distinct()
        .count()
    )
