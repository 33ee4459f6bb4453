"""Import long-form votes from earlier surveys: `import_votes FILE.csv --study SLUG`.

The file has one row per vote and criterion, columns
`rater_id,cohort,item_id,variant_a,variant_b,criterion,choice` and optionally
`prompt,category,created_at`; other columns are ignored, so the long-form export imports as it
is. Three of the export's columns are read when present, because ignoring them would make an
export import as something it was not: `attention_check` (an attention check's answers are no
survey votes: such rows are skipped), `rater_flagged` (a rater flagged there stays flagged
here, so scores leave them out in both studies) and `prompt_cohort` (the culture the item's
prompt was aimed at, otherwise taken from the first cohort label seen for the item).

Parsing and validation (`votes_file_parse`) are pure: they read bytes and return what the file
says, or every bad row by its line. `votes_import` then checks the file against what earlier
imports stored and writes everything in one transaction, or nothing.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from itertools import islice

from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.utils import timezone

from generation.models import ModelVariant, Prompt, PromptBatch
from ratings.cohorts import cohort_path_ancestors
from ratings.exports.privacy import rater_pseudonym
from ratings.exports.vote_files import (
    DEFAULT_CRITERION_KEYS,
    PANEL_ID_MAX_LENGTH,
    PANEL_ID_PREFIX,
    RowError,
    VoteDraft,
    VoteFile,
    VoteFileError,
    votes_file_parse,
)
from ratings.models import (
    Answer,
    AssignmentKind,
    Cohort,
    Pair,
    PairCoverage,
    Participation,
    Rater,
    Study,
    Vote,
    VoteSource,
)
from ratings.studies import cohort_ensure, criteria_ensure_defaults, study_create

CHUNK_SIZE = 2000


# The import service.


@dataclass(frozen=True)
class ImportResult:
    """What an import created, and what it found already there."""

    study: Study
    study_created: bool
    rows: int
    checks_skipped: int
    raters: int
    pairs: int
    votes: int
    answers: int
    votes_present: int


def panel_id_for(*, study_slug: str, rater_id: str) -> str:
    """Return the panel id of an imported rater, so a second import finds the same rater."""
    return f"{PANEL_ID_PREFIX}:{study_slug}:{rater_id}"


def votes_import(
    *,
    study_slug: str,
    lines: Iterable[bytes],
    source_name: str = "",
    now: datetime | None = None,
) -> ImportResult:
    """Import a long-form vote file into the study, creating what it needs, all or nothing.

    Raise VoteFileError naming every bad line, in the file itself or against votes an earlier
    import stored; then nothing is written, not even a new study. What is already there is
    found again, not duplicated: importing the same file twice adds nothing.
    """
    now = now or timezone.now()
    existing = Study.objects.filter(slug=study_slug).first()
    criteria = _criterion_keys(existing)
    max_rater_id = PANEL_ID_MAX_LENGTH - len(panel_id_for(study_slug=study_slug, rater_id=""))
    vote_file = votes_file_parse(lines, criteria=criteria, max_rater_id_length=max_rater_id)
    with transaction.atomic():
        if existing is None:
            study, created = _study_create(slug=study_slug, source_name=source_name), True
        else:
            # One import into a study at a time: a second waits, then finds the first's rows.
            study, created = Study.objects.select_for_update().get(pk=existing.pk), False
            criteria_ensure_defaults(study=study)
        writer = _ImportWriter(study=study, vote_file=vote_file, now=now, source_name=source_name)
        errors = writer.conflicts()
        if errors:
            raise VoteFileError(errors)
        result = writer.write(study_created=created)
        if result.votes >= ANALYZE_AFTER_VOTES:
            _tables_analyze()
    if result.votes or result.answers:
        _scores_mark_stale(study_id=study.pk)
    return result


# A large import refreshes the planner's statistics itself: an export or a recompute right
# after it would otherwise be planned for the tables as they were (perhaps empty), with nested
# loops over every vote, until autovacuum analyzes them.
ANALYZE_AFTER_VOTES = 1_000


def _tables_analyze() -> None:
    tables = [model._meta.db_table for model in (Rater, Participation, Pair, Vote, Answer)]
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {', '.join(tables)}")


def _criterion_keys(study: Study | None) -> tuple[str, ...]:
    # A study's own keys only: a key it lacks would add a question to its live rating form.
    if study is None:
        return DEFAULT_CRITERION_KEYS
    keys = tuple(study.criteria.values_list("key", flat=True))
    return keys or DEFAULT_CRITERION_KEYS


def _study_create(*, slug: str, source_name: str) -> Study:
    # Closed for rating: it holds only imported pairs, which have no images to show.
    return study_create(
        name=slug,
        slug=slug,
        active=False,
        description=f"Votes imported by import_votes from {source_name or 'a file'}.",
    )


def _scores_mark_stale(*, study_id: int) -> None:
    # Scores are another module's work, and may not be there yet.
    try:
        from ratings.results.stale import scores_mark_stale
    except ImportError:
        return
    scores_mark_stale(study_id=study_id)


def _chunks(items: Iterable, size: int = CHUNK_SIZE) -> Iterator[list]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


class _ImportWriter:
    """Check a parsed file against a study's stored imports, then write what is new."""

    def __init__(self, *, study: Study, vote_file: VoteFile, now: datetime, source_name: str):
        self.study = study
        self.file = vote_file
        self.now = now
        self.source_name = source_name
        self.criteria = {criterion.key: criterion for criterion in study.criteria.all()}
        self.pairs = self._stored_pairs()
        self.raters = self._stored_raters()
        self.votes = self._stored_votes()
        self.answers = self._stored_answers()

    def _stored_pairs(self) -> dict[tuple[str, str, str], tuple[int, int]]:
        """(item_id, variant_a, variant_b) -> (pair id, prompt id) of the study's imports."""
        rows = (
            Pair.objects.filter(study=self.study)
            .exclude(external_id="")
            .values_list("external_id", "variant_a__name", "variant_b__name", "pk", "prompt_id")
        )
        return {(item, a, b): (pair_id, prompt_id) for item, a, b, pair_id, prompt_id in rows}

    def _stored_raters(self) -> dict[str, tuple[int, bool]]:
        """rater_id -> (rater id, whether the user is active) of raters imported before."""
        prefix = panel_id_for(study_slug=self.study.slug, rater_id="")
        rows = Rater.objects.filter(panel_id__startswith=prefix).values_list(
            "panel_id", "pk", "user__is_active"
        )
        return {panel_id.removeprefix(prefix): (pk, active) for panel_id, pk, active in rows}

    def _stored_votes(self) -> dict[tuple[int, int], tuple[int, tuple[str, ...]]]:
        """(rater id, pair id) -> (vote id, cohort labels) of the study's imported votes."""
        rows = Vote.objects.filter(study=self.study, source=VoteSource.IMPORT).values_list(
            "rater_id", "pair_id", "pk", "cohort_paths"
        )
        return {
            (rater_id, pair_id): (pk, tuple(sorted(paths)))
            for rater_id, pair_id, pk, paths in rows.iterator(chunk_size=CHUNK_SIZE)
        }

    def _stored_answers(self) -> dict[tuple[int, str], str]:
        """(vote id, criterion key) -> choice of the study's imported votes."""
        rows = Answer.objects.filter(
            vote__study=self.study, vote__source=VoteSource.IMPORT
        ).values_list("vote_id", "criterion__key", "choice")
        return {
            (vote_id, key): choice for vote_id, key, choice in rows.iterator(chunk_size=CHUNK_SIZE)
        }

    def conflicts(self) -> list[RowError]:
        """Return the rows that contradict what is stored, each by its line."""
        errors: list[RowError] = []
        own = {
            rater_pseudonym(salt=self.study.pseudonym_salt, rater_id=rater_id)
            for rater_id in Vote.objects.filter(study=self.study)
            .values_list("rater_id", flat=True)
            .distinct()
        }
        for rater_id, rater in self.file.raters.items():
            if rater_id in own:
                errors.append(
                    RowError(
                        rater.line,
                        f"rater_id {rater_id!r} is this study's own pseudonym of one of its "
                        "raters: the file is an export of this study and would count its votes "
                        "twice",
                    )
                )
            stored = self.raters.get(rater_id)
            if stored is not None and stored[1]:
                errors.append(
                    RowError(
                        rater.line,
                        f"rater_id {rater_id!r} names a rater who can sign in, not one imported "
                        "before",
                    )
                )
        for item_id, item in self.file.items.items():
            for (a, b), line in item.variant_pairs.items():
                if (item_id, b, a) in self.pairs:
                    errors.append(
                        RowError(
                            line,
                            f"variant pair {a}/{b} of item {item_id!r} was imported before the "
                            f"other way round, {b}/{a}",
                        )
                    )
        for (rater_id, item_id, a, b), vote in self.file.votes.items():
            errors += self._vote_conflicts(rater_id, (item_id, a, b), vote)
        return errors

    def _vote_conflicts(
        self, rater_id: str, pair_key: tuple[str, str, str], vote: VoteDraft
    ) -> list[RowError]:
        rater = self.raters.get(rater_id)
        pair = self.pairs.get(pair_key)
        stored = self.votes.get((rater[0], pair[0])) if rater and pair else None
        if stored is None:
            return []
        vote_id, cohort_paths = stored
        errors = []
        if cohort_paths != vote.cohort_paths:
            errors.append(
                RowError(
                    vote.line,
                    f"cohort {';'.join(vote.cohort_paths)!r} contradicts the vote imported "
                    f"before, with cohort {';'.join(cohort_paths)!r}",
                )
            )
        for key, (choice, line) in vote.answers.items():
            earlier = self.answers.get((vote_id, key))
            if earlier is not None and earlier != choice:
                errors.append(
                    RowError(
                        line,
                        f"{key} is {choice!r} here but {earlier!r} in the vote imported before",
                    )
                )
        return errors

    def write(self, *, study_created: bool) -> ImportResult:
        cohorts = self._cohorts_ensure()
        variants = self._variants_ensure()
        raters_created = self._raters_ensure(cohorts)
        pairs_created = self._pairs_ensure(cohorts, variants)
        votes_created, answers_created, votes_present = self._votes_write()
        return ImportResult(
            study=self.study,
            study_created=study_created,
            rows=self.file.rows,
            checks_skipped=self.file.checks_skipped,
            raters=raters_created,
            pairs=pairs_created,
            votes=votes_created,
            answers=answers_created,
            votes_present=votes_present,
        )

    def _cohorts_ensure(self) -> dict[str, int]:
        paths = {
            ancestor
            for path in self.file.cohort_paths()
            for ancestor in cohort_path_ancestors(path)
        }
        known = dict(Cohort.objects.filter(path__in=paths).values_list("path", "pk"))
        for path in sorted(paths - set(known)):
            known[path] = cohort_ensure(path=path).pk
        in_study = set(
            self.study.cohorts.filter(pk__in=known.values()).values_list("pk", flat=True)
        )
        # Every label of the file becomes one the study lists; adding them backfills coverage
        # rows for the study's pairs (a signal), before this import's pairs exist.
        self.study.cohorts.add(*(pk for pk in known.values() if pk not in in_study))
        # Coverage rows are what assignment serves from; an imported pair has no images, so any
        # row an earlier import's pair got from that backfill must go.
        PairCoverage.objects.filter(study=self.study, pair__image_a__isnull=True).delete()
        return known

    def _variants_ensure(self) -> dict[str, int]:
        names = self.file.variant_names()
        known = dict(ModelVariant.objects.filter(name__in=names).values_list("name", "pk"))
        # Known by name only; never rendered, so no checkpoint.
        made = ModelVariant.objects.bulk_create(
            ModelVariant(name=name, role=ModelVariant.Role.IMPORTED)
            for name in sorted(names - set(known))
        )
        known.update((variant.name, variant.pk) for variant in made)
        return known

    def _raters_ensure(self, cohorts: dict[str, int]) -> int:
        users = get_user_model()
        new = [rater_id for rater_id in self.file.raters if rater_id not in self.raters]
        for chunk in _chunks(new):
            accounts = []
            for _ in chunk:
                # An opaque name and no way to sign in: the rater voted elsewhere, long ago.
                account = users(username=f"import-{secrets.token_hex(10)}", is_active=False)
                account.set_unusable_password()
                accounts.append(account)
            accounts = users.objects.bulk_create(accounts)
            made = Rater.objects.bulk_create(
                Rater(
                    user=account,
                    panel_id=panel_id_for(study_slug=self.study.slug, rater_id=rater_id),
                )
                for account, rater_id in zip(accounts, chunk, strict=True)
            )
            for rater, rater_id in zip(made, chunk, strict=True):
                self.raters[rater_id] = (rater.pk, False)
        rater_ids = {rater_id: self.raters[rater_id][0] for rater_id in self.file.raters}
        Participation.objects.bulk_create(
            (Participation(study=self.study, rater_id=pk) for pk in rater_ids.values()),
            ignore_conflicts=True,
        )
        flagged = [rater_ids[r] for r, draft in self.file.raters.items() if draft.flagged]
        for chunk in _chunks(flagged):
            Participation.objects.filter(study=self.study, rater_id__in=chunk).update(flagged=True)
        # The rater's profile holds every culture they voted as, like a rater who chose them.
        memberships = {
            (rater_ids[rater_id], cohorts[path])
            for (rater_id, *_), vote in self.file.votes.items()
            for path in vote.cohort_paths
        }
        through = Rater.cohorts.through
        for chunk in _chunks(sorted(memberships)):
            through.objects.bulk_create(
                (through(rater_id=rater, cohort_id=cohort) for rater, cohort in chunk),
                ignore_conflicts=True,
            )
        return len(new)

    def _pairs_ensure(self, cohorts: dict[str, int], variants: dict[str, int]) -> int:
        prompts = {item_id: prompt_id for (item_id, _, _), (_, prompt_id) in self.pairs.items()}
        new_items = [item_id for item_id in self.file.items if item_id not in prompts]
        if new_items:
            batch = PromptBatch.objects.create(
                study=self.study,
                status=PromptBatch.Status.DONE,
                seeds_per_prompt=1,
                source_name=f"import_votes: {self.source_name}"[:200],
                finished_at=self.now,
            )
            for chunk in _chunks(new_items):
                made = Prompt.objects.bulk_create(
                    Prompt(
                        batch=batch,
                        # An earlier survey may give only the item's id; it stands in honestly.
                        text=self.file.items[item_id].prompt or item_id,
                        cohort_id=cohorts[self.file.items[item_id].target_cohort],
                        category=self.file.items[item_id].category,
                        source_line=self.file.items[item_id].line,
                    )
                    for item_id in chunk
                )
                prompts.update(
                    (item_id, prompt.pk) for item_id, prompt in zip(chunk, made, strict=True)
                )
        new_pairs = [
            (item_id, a, b)
            for item_id, item in self.file.items.items()
            for a, b in item.variant_pairs
            if (item_id, a, b) not in self.pairs
        ]
        for chunk in _chunks(new_pairs):
            made = Pair.objects.bulk_create(
                Pair(
                    study=self.study,
                    prompt_id=prompts[item_id],
                    external_id=item_id,
                    variant_a_id=variants[a],
                    variant_b_id=variants[b],
                )
                for item_id, a, b in chunk
            )
            for key, pair in zip(chunk, made, strict=True):
                self.pairs[key] = (pair.pk, prompts[key[0]])
        return len(new_pairs)

    def _votes_write(self) -> tuple[int, int, int]:
        votes_created = answers_created = votes_present = 0
        for chunk in _chunks(self.file.votes.items()):
            new: list[tuple[VoteDraft, Vote]] = []
            answers: list[Answer] = []
            for (rater_id, item_id, a, b), draft in chunk:
                rater_pk = self.raters[rater_id][0]
                pair_pk = self.pairs[(item_id, a, b)][0]
                stored = self.votes.get((rater_pk, pair_pk))
                if stored is None:
                    new.append((draft, self._vote_new(draft, rater_pk, pair_pk)))
                    continue
                votes_present += 1
                answers += self._answers_new(draft, stored[0])
            made = Vote.objects.bulk_create(vote for _, vote in new)
            for (draft, _), vote in zip(new, made, strict=True):
                answers += self._answers_new(draft, vote.pk)
            Answer.objects.bulk_create(answers)
            votes_created += len(made)
            answers_created += len(answers)
        return votes_created, answers_created, votes_present

    def _vote_new(self, draft: VoteDraft, rater_pk: int, pair_pk: int) -> Vote:
        return Vote(
            study=self.study,
            pair_id=pair_pk,
            rater_id=rater_pk,
            # Screen sides and time on task were not recorded, or not here.
            shown_left="",
            source=VoteSource.IMPORT,
            cohort_paths=list(draft.cohort_paths),
            time_on_task_ms=0,
            kind=AssignmentKind.PAIR,
            created_at=draft.created_at or self.now,
        )

    def _answers_new(self, draft: VoteDraft, vote_pk: int) -> list[Answer]:
        return [
            Answer(vote_id=vote_pk, criterion=self.criteria[key], choice=choice)
            for key, (choice, _) in draft.answers.items()
            if (vote_pk, key) not in self.answers
        ]
