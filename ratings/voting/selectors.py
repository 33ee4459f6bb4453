"""Selectors of the rating page: the prompt, two blind images, the questions, what follows."""

from __future__ import annotations

import secrets
from collections.abc import Iterable

from django.conf import settings
from django.core.files.storage import default_storage
from django.utils.translation import gettext

from ratings.assignment.state import RatingNext, RatingState, ServedPair, shown_names
from ratings.cohorts import cohort_path_contains


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


def _urls(names: Iterable[str]) -> list[str]:
    return [default_storage.url(name) for name in names]


def _questions(state: RatingState, served: ServedPair) -> list[dict[str, str]]:
    rater_cohorts = {path: name for _, path, name in state.cohorts}
    culture_path = shared_culture_path(
        prompt_cohort_path=served.prompt_cohort_path, rater_cohort_paths=list(rater_cohorts)
    )
    culture = rater_cohorts.get(culture_path) or served.prompt_cohort_name
    return [
        # In the rater's language where the study translated it (the state reads it so); the
        # default wording, untranslated, from the interface's catalogue; else as written.
        {"key": criterion.key, "text": gettext(criterion.question).replace("{culture}", culture)}
        for criterion in state.study.criteria
    ]


def _prefetch_urls(upcoming: ServedPair | None) -> list[str]:
    if upcoming is None:
        return []
    # Listed in random order, so neither their order nor anything else about them says which
    # side they will be shown on (an identical check lists its one image once).
    urls = list(dict.fromkeys(_urls(shown_names(upcoming.image_a, upcoming.image_b))))
    secrets.SystemRandom().shuffle(urls)
    return urls


def rating_page_context(*, state: RatingState, following: RatingNext) -> dict:
    """Return what the rating page shows: the prompt, two images in screen order, the questions.

    Nothing here names a variant: the images go out as 'Image 1' and 'Image 2' only, and the
    upcoming assignment's images are listed for prefetching in random order.
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
        "image_urls": _urls(current.screen_names()),
        "questions": _questions(state, current),
        "prefetch_urls": _prefetch_urls(following.upcoming),
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
