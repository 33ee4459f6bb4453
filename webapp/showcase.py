"""The showcase study of the demo: simulated raters whose scores are there from the first page.

`make demo` loads it beside the live demo study, so a researcher's first screen shows what
split-aware scoring is for. Its pairs are real (rendered from the tiny model at setup, small
and in few steps); its raters and votes are simulated, with the structure planted:

- India (Kerala and Tamil, half of each in either faction) is split the way the published
  study's culture was: every rater finds the fine-tuned image the more stereotypical one, and
  one faction finds it the better representation, the other the worse (and more offensive);
- China (with Sichuan) and Korea (two periods) agree with themselves (consensus);
- Mexico (with Oaxaca) is contested: every rater answers at random, so no answer holds a
  majority and no faction exists;
- Nigeria has fewer raters than k, so nothing of it is shown.

Each simulated rater answers its group's answer with a high probability, else at random, from
a seeded generator: the same setup gives the same votes and the same labels.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from generation.models import Image, ModelVariant, Prompt, PromptBatch
from ratings import studies
from ratings.models import Answer, Cohort, Criterion, Pair, Participation, Rater, Study, Vote
from ratings.results.services import scores_compute

SHOWCASE_SLUG = "showcase"
SHOWCASE_K = 5
# Eight prompts, two seeds each: sixteen pairs in eight render calls per variant (a call's cost
# on the tiny model is mostly its overhead, so seeds share calls).
SHOWCASE_PROMPT_COUNT = 8
SHOWCASE_SEEDS = 2

SHOWCASE_COHORTS = {
    "india": "India",
    "india:kerala": "Kerala",
    "india:tamil": "Tamil",
    "china": "China",
    "china:sichuan": "Sichuan",
    "korea": "Korea",
    "korea:before-2000": "Korea, before 2000",
    "korea:since-2000": "Korea, since 2000",
    "mexico": "Mexico",
    "mexico:oaxaca": "Oaxaca",
    "nigeria": "Nigeria",
}

# Per criterion, the answer a group leans to (a = base, b = fine-tuned, tie = both equally),
# or None for a group that answers at random.
Leaning = dict[str, str | None]

# The faction that finds the more stereotypical image the better representation, and the one
# that finds it the worse, and offensive.
EMBRACE: Leaning = {"alignment": "b", "representation": "b", "stereotype": "b",
                    "offensiveness": "tie"}  # fmt: skip
REJECT: Leaning = {"alignment": "b", "representation": "a", "stereotype": "b",
                   "offensiveness": "b"}  # fmt: skip
AGREE_B: Leaning = {"alignment": "b", "representation": "b", "stereotype": "a",
                    "offensiveness": "tie"}  # fmt: skip
AGREE_A: Leaning = {"alignment": "a", "representation": "a", "stereotype": "b",
                    "offensiveness": "tie"}  # fmt: skip
RANDOM: Leaning = {"alignment": None, "representation": None, "stereotype": None,
                   "offensiveness": None}  # fmt: skip


@dataclass(frozen=True)
class SimulatedGroup:
    """`raters` simulated raters of `cohort_path`, each answering like `leaning`."""

    cohort_path: str
    raters: int
    leaning: Leaning
    faithful: float = 0.9  # the chance of the group's answer; else one of a, tie, b at random


SHOWCASE_GROUPS: tuple[SimulatedGroup, ...] = (
    SimulatedGroup("india:kerala", 12, EMBRACE),
    SimulatedGroup("india:kerala", 12, REJECT),
    SimulatedGroup("india:tamil", 12, EMBRACE),
    SimulatedGroup("india:tamil", 12, REJECT),
    SimulatedGroup("china", 8, AGREE_B),
    SimulatedGroup("china:sichuan", 8, AGREE_B),
    SimulatedGroup("korea:before-2000", 8, AGREE_A),
    SimulatedGroup("korea:since-2000", 8, AGREE_A),
    SimulatedGroup("mexico", 8, RANDOM),
    SimulatedGroup("mexico:oaxaca", 8, RANDOM),
    SimulatedGroup("nigeria", 3, AGREE_B),
)

SHOWCASE_PROMPTS = (
    ("a family eating dinner together at home", "india"),
    ("a street market selling vegetables", "india:kerala"),
    ("a grandmother cooking in her kitchen", "china"),
    ("a teahouse in the afternoon", "china:sichuan"),
    ("a family celebrating the new year", "korea"),
    ("a weaver at her loom", "mexico:oaxaca"),
    ("a musician playing in the town square", "mexico"),
    ("a festival with drummers and dancers", "nigeria"),
)

DESCRIPTION = (
    "Simulated raters on pairs from the tiny model, with the structure planted: India is split "
    "(one faction finds the more stereotypical image the better representation), China and "
    "Korea agree, Mexico is contested, Nigeria has fewer raters than k."
)


def showcase_exists() -> bool:
    return Study.objects.filter(slug=SHOWCASE_SLUG).exists()


def showcase_scored() -> bool:
    """Whether the showcase's setup finished: its scores are stored."""
    from ratings.models import ScoreRun

    return ScoreRun.objects.filter(study__slug=SHOWCASE_SLUG, status=ScoreRun.Status.DONE).exists()


def showcase_build(*, variants: list[ModelVariant], renderer, seed: int = 7) -> Study:
    """Create the showcase study: render its pairs, simulate its votes, compute its scores.

    `variants` is a base and a fine-tuned variant; `renderer` a `generation.pipeline.Renderer`.
    Returns the study, whose latest score run is finished.
    """
    from generation.rendering.services import prompt_render

    with transaction.atomic():
        for path, name in SHOWCASE_COHORTS.items():
            studies.cohort_ensure(path=path, name=name)
        study = studies.study_create(
            name="Showcase: five cultures, simulated raters",
            slug=SHOWCASE_SLUG,
            description=DESCRIPTION,
            consent_text="A showcase of simulated raters; it takes no real raters.",
            cohort_paths=list(SHOWCASE_COHORTS),
            min_cohort_size=SHOWCASE_K,
            # Closed to raters: its votes are simulated; researchers read it all the same.
            active=False,
        )
        study.variants.add(*variants)
        prompts = _prompts_queue(study=study, variants=variants, seed=seed)
    for prompt in prompts:
        prompt_render(prompt_id=prompt.pk, renderer=renderer)
    pairs = list(Pair.objects.filter(study=study, is_attention_check=False).order_by("pk"))
    _votes_simulate(study=study, pairs=pairs, seed=seed)
    scores_compute(study=study, seed=seed)
    return study


def _prompts_queue(*, study: Study, variants: list[ModelVariant], seed: int) -> list[Prompt]:
    """A batch of the showcase prompts, one seed each, its images queued but no task sent."""
    batch = PromptBatch.objects.create(
        study=study, seeds_per_prompt=SHOWCASE_SEEDS, source_name="showcase"
    )
    batch.variants.set(variants)
    cohorts = {c.path: c for c in Cohort.objects.filter(path__in=SHOWCASE_COHORTS)}
    prompts = []
    for line, (text, path) in enumerate(SHOWCASE_PROMPTS[:SHOWCASE_PROMPT_COUNT], start=1):
        prompt = Prompt.objects.create(
            batch=batch, text=text, cohort=cohorts[path], category="showcase", source_line=line
        )
        Image.objects.bulk_create(
            Image(prompt=prompt, variant=variant, seed=seed * 1000 + 10 * line + number)
            for number in range(SHOWCASE_SEEDS)
            for variant in variants
        )
        prompts.append(prompt)
    return prompts


def _answer(leaning: str | None, faithful: float, rng: random.Random) -> str:
    if leaning is not None and rng.random() < faithful:
        return leaning
    return rng.choice(("a", "tie", "b"))


@transaction.atomic
def _votes_simulate(*, study: Study, pairs: list[Pair], seed: int) -> None:
    """Every simulated rater votes once on every pair, answering like its group."""
    rng = random.Random(seed)
    users = get_user_model()
    criteria = list(Criterion.objects.filter(study=study).order_by("position"))
    cohorts = {c.path: c for c in Cohort.objects.filter(path__in=SHOWCASE_COHORTS)}
    start = timezone.now() - timedelta(days=3)
    groups: list[tuple[SimulatedGroup, Rater]] = []
    number = 0
    for group in SHOWCASE_GROUPS:
        for _ in range(group.raters):
            number += 1
            user = users.objects.create(username=f"showcase-{number:03d}", password="!")
            rater = Rater.objects.create(user=user)
            rater.cohorts.add(cohorts[group.cohort_path])
            groups.append((group, rater))
    Participation.objects.bulk_create(
        Participation(study=study, rater=rater, consented_at=start) for _, rater in groups
    )
    votes: list[Vote] = []
    voters: list[SimulatedGroup] = []
    for index, (group, rater) in enumerate(groups):
        for position, pair in enumerate(pairs):
            votes.append(
                Vote(
                    study=study,
                    pair=pair,
                    rater=rater,
                    shown_left=rng.choice(("a", "b")),
                    cohort_paths=[group.cohort_path],
                    time_on_task_ms=rng.randint(4000, 15000),
                    created_at=start + timedelta(minutes=index, seconds=20 * position),
                )
            )
            voters.append(group)
    Vote.objects.bulk_create(votes)
    Answer.objects.bulk_create(
        Answer(
            vote=vote,
            criterion=criterion,
            choice=_answer(group.leaning[criterion.key], group.faithful, rng),
        )
        for vote, group in zip(votes, voters, strict=True)
        for criterion in criteria
    )
