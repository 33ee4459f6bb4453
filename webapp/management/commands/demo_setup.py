"""Set up the demo: tiny model, variants, cohorts, the live study, three people, a queued batch
and the showcase study, whose simulated votes are scored here (`webapp.showcase`)."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import transaction

from generation import services as generation_services
from generation.batch_files import prompt_rows_parse
from generation.models import ModelVariant
from ratings import studies
from ratings.access import study_grant
from ratings.entry import services as entry_services
from ratings.models import Study
from webapp import showcase

DEMO_PROMPTS = Path(__file__).resolve().parents[3] / "generation" / "data" / "demo_prompts.csv"
DEMO_COHORTS = {
    "china": "China",
    "china:sichuan": "Sichuan",
    "india": "India",
    "india:kerala": "Kerala",
    "india:tamil": "Tamil",
    "korea": "Korea",
    "mexico": "Mexico",
    "mexico:oaxaca": "Oaxaca",
    "nigeria": "Nigeria",
    "nigeria:yoruba": "Yoruba",
}
DEMO_PEOPLE = {
    # user name: (password, role)
    "admin": ("polyphony-admin", "admin"),
    "researcher": ("polyphony-research", "researcher"),
    "rater": ("polyphony-rater", "rater"),
}
CONSENT = (
    "Polyphony asks people of a culture how text-to-image models show it. You will see two "
    "images made for the same description and answer a few questions about them.\n\n"
    "Your votes are stored with the cultures you choose, under a pseudonym. Nothing else about "
    "you is published."
)
# The live study's settings are for one person trying it: a real study keeps the defaults
# (k = 5, 3 s per pair, flagged after more than one failed check). Here the person's own votes
# must show in the scores (k = 1), rating briskly with the keyboard must not flag them, and a
# recompute must land within seconds on two cores (fewer resamples).
DEMO_STUDY_SETTINGS = {
    # The demo invites anyone who signs up to rate.
    "open_to_signups": True,
    "min_cohort_size": 1,
    "min_seconds_per_pair": 0.5,
    "max_failed_checks": 20,
    "score_permutations": 200,
    "score_bootstrap": 200,
}


class Command(BaseCommand):
    help = "Create (or reuse) the demo study, tiny model, people and a queued prompt batch."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--seeds", type=int, default=2, help="seeds per demo prompt")
        # The tiny model's weights are random, so more steps or pixels show nothing more: small
        # and few steps make a pair in well under a second on two cores.
        parser.add_argument(
            "--steps", type=int, default=8, help="denoising steps of the demo variants"
        )
        parser.add_argument("--size", type=int, default=64, help="image width and height")
        parser.add_argument("--no-showcase", action="store_true", help="skip the showcase study")

    def handle(
        self, *args, seeds: int, steps: int, size: int, no_showcase: bool = False, **options
    ) -> None:
        model_dir = Path(settings.POLYPHONY_TINY_MODEL_DIR)
        call_command("make_tiny_model", str(model_dir), stdout=self.stdout)
        with transaction.atomic():
            study, created = self._study()
            variants = self._variants(model_dir, steps=steps, size=size)
            study.variants.add(*variants)
            self._people(study)
        if created or not study.batches.exists():
            rows = prompt_rows_parse(
                DEMO_PROMPTS.read_bytes(), filename=DEMO_PROMPTS.name, known_cohorts=DEMO_COHORTS
            )
            batch = generation_services.batch_queue(
                study=study,
                rows=rows,
                variants=variants,
                seeds_per_prompt=seeds,
                source_name=DEMO_PROMPTS.name,
            )
            self.stdout.write(f"Queued demo batch {batch.pk} ({len(rows)} prompts).")
        else:
            self.stdout.write("The demo study already has a batch; reusing it.")
        if not no_showcase and not showcase.showcase_exists():
            self._showcase(variants)
        elif not no_showcase and not showcase.showcase_scored():
            self.stderr.write(
                "The showcase study was left half-built by an interrupted setup; "
                "`make clean-demo` and `make demo` build it again."
            )

    def _showcase(self, variants: list[ModelVariant]) -> None:
        from generation.pipeline import Renderer

        self.stdout.write("Building the showcase study (simulated raters, scored now)...")
        renderer = Renderer(device=settings.POLYPHONY_RENDER_DEVICE or None)
        study = showcase.showcase_build(variants=variants, renderer=renderer)
        for user in get_user_model().objects.filter(username="researcher"):
            study_grant(study=study, user=user)
        self.stdout.write(f"Showcase study ready: {study.votes.count()} simulated votes scored.")

    def _study(self) -> tuple[Study, bool]:
        existing = Study.objects.filter(slug="demo").first()
        if existing:
            # A demo set up by an older version gets the demo's settings too.
            Study.objects.filter(pk=existing.pk).update(**DEMO_STUDY_SETTINGS)
            return existing, False
        for path, name in DEMO_COHORTS.items():
            studies.cohort_ensure(path=path, name=name)
        study = studies.study_create(
            name="Polyphony demo",
            slug="demo",
            description="Five cultures, a tiny random model and its LoRA: a demo of the workflow.",
            consent_text=CONSENT,
            cohort_paths=list(DEMO_COHORTS),
            raters_per_pair=3,
            **DEMO_STUDY_SETTINGS,
        )
        return study, True

    def _variants(self, model_dir: Path, *, steps: int, size: int) -> list[ModelVariant]:
        common = {"steps": steps, "width": size, "height": size, "guidance": 4.5}
        base, _ = ModelVariant.objects.update_or_create(
            name="tiny-base",
            defaults={
                "role": ModelVariant.Role.BASE,
                "base_checkpoint": str(model_dir / "base"),
                **common,
            },
        )
        tuned, _ = ModelVariant.objects.update_or_create(
            name="tiny-lora",
            defaults={
                "role": ModelVariant.Role.FINETUNED,
                "base_checkpoint": str(model_dir / "base"),
                "lora_path": str(model_dir / "lora"),
                **common,
            },
        )
        return [base, tuned]

    def _people(self, study: Study) -> None:
        users = get_user_model()
        researchers, _ = Group.objects.get_or_create(name="researchers")
        researchers.permissions.add(
            Permission.objects.get(content_type__app_label="ratings", codename="export_study")
        )
        for username, (password, role) in DEMO_PEOPLE.items():
            user = users.objects.filter(username=username).first()
            if user is None:
                user = users.objects.create_user(username=username, password=password)
            if role == "admin":
                user.is_staff = user.is_superuser = True
                user.save(update_fields=["is_staff", "is_superuser"])
            if role == "researcher":
                user.groups.add(researchers)
                study_grant(study=study, user=user)
            if role == "rater":
                entry_services.rater_ensure(user=user)
