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

import csv
import re
import secrets
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from generation.models import ModelVariant, Prompt, PromptBatch
from ratings.cohorts import CohortPathError, cohort_path_ancestors, cohort_path_normalize
from ratings.models import (
    DEFAULT_CRITERIA,
    Answer,
    AssignmentKind,
    Choice,
    Cohort,
    Pair,
    PairCoverage,
    Participation,
    Rater,
    Study,
    Vote,
    VoteSource,
)
from ratings.privacy import rater_pseudonym
from ratings.services import cohort_ensure, criteria_ensure_defaults, study_create

REQUIRED_COLUMNS = (
    "rater_id",
    "cohort",
    "item_id",
    "variant_a",
    "variant_b",
    "criterion",
    "choice",
)
OPTIONAL_COLUMNS = ("prompt", "category", "created_at")
# The cohort cell may be empty: the export drops labels held by fewer than k raters.
NON_EMPTY_COLUMNS = tuple(name for name in REQUIRED_COLUMNS if name != "cohort")
DEFAULT_CRITERION_KEYS = tuple(key for key, _ in DEFAULT_CRITERIA)
CHOICES = tuple(Choice.values)
COHORT_SEPARATOR = ";"
PANEL_ID_PREFIX = "import"
PANEL_ID_MAX_LENGTH = Rater._meta.get_field("panel_id").max_length
ITEM_ID_MAX_LENGTH = 200
CATEGORY_MAX_LENGTH = 40
VARIANT_NAME = re.compile(r"^[-a-zA-Z0-9_]{1,80}$")
FLAG_VALUES = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
CHUNK_SIZE = 2000


@dataclass(frozen=True)
class RowError:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line else self.message


class VoteFileError(Exception):
    """A vote file with bad rows; nothing of it may be imported."""

    def __init__(self, errors: Sequence[RowError]) -> None:
        self.errors = sorted(errors, key=lambda error: error.line)
        super().__init__("\n".join(str(error) for error in self.errors))


@dataclass
class VoteDraft:
    """One rater's answers on one item and variant pair, as the file gives them."""

    line: int
    cohort_paths: tuple[str, ...]
    created_at: datetime | None
    # criterion key -> (choice, line)
    answers: dict[str, tuple[str, int]] = field(default_factory=dict)


@dataclass
class ItemDraft:
    """An item (a prompt and seed) of the earlier survey and the variant pairs it was shown as."""

    line: int
    prompt: str = ""
    prompt_line: int = 0
    category: str = ""
    category_line: int = 0
    prompt_cohort: str = ""
    prompt_cohort_line: int = 0
    first_cohort: str = ""
    # (variant_a, variant_b) -> first line
    variant_pairs: dict[tuple[str, str], int] = field(default_factory=dict)

    @property
    def target_cohort(self) -> str:
        return self.prompt_cohort or self.first_cohort


@dataclass
class RaterDraft:
    line: int
    flagged: bool = False


VoteKey = tuple[str, str, str, str]  # rater_id, item_id, variant_a, variant_b


@dataclass
class VoteFile:
    """What a valid vote file says, grouped into raters, items and votes."""

    raters: dict[str, RaterDraft] = field(default_factory=dict)
    items: dict[str, ItemDraft] = field(default_factory=dict)
    votes: dict[VoteKey, VoteDraft] = field(default_factory=dict)
    rows: int = 0
    checks_skipped: int = 0

    def cohort_paths(self) -> set[str]:
        """Return every cohort label the file uses, on votes or as a prompt's target."""
        paths = {path for vote in self.votes.values() for path in vote.cohort_paths}
        paths.update(item.target_cohort for item in self.items.values())
        return paths

    def variant_names(self) -> set[str]:
        return {name for _, _, a, b in self.votes for name in (a, b)}


# Parsing: pure, no database.


def votes_file_parse(
    lines: Iterable[bytes],
    *,
    criteria: Collection[str] = DEFAULT_CRITERION_KEYS,
    max_rater_id_length: int = 64,
) -> VoteFile:
    """Return what a long-form vote file says, or raise VoteFileError naming every bad line.

    `lines` are the file's raw lines (a file opened in binary mode will do), read once, so a
    large file is never held whole. Lines are 1-based and count the header.
    """
    criteria = tuple(criteria)
    errors: list[RowError] = []
    undecodable: dict[int, int] = {}
    reader = csv.reader(_lines_decode(lines, undecodable))
    header: list[str] | None = None
    vote_file = VoteFile()
    last_line = 0
    while True:
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            errors.append(RowError(reader.line_num, f"not readable as CSV: {exc}"))
            last_line = reader.line_num
            continue
        first_line, last_line = last_line + 1, reader.line_num
        bad_bytes = [n for n in range(first_line, last_line + 1) if n in undecodable]
        for number in bad_bytes:
            errors.append(
                RowError(number, f"undecodable bytes (not UTF-8) at byte {undecodable[number]}")
            )
        if header is None:
            if not record:
                continue
            header, problem = _header_check(record)
            if problem:
                errors.append(RowError(first_line, problem))
                break
            continue
        if bad_bytes or not any(value.strip() for value in record):
            continue
        if len(record) != len(header):
            errors.append(
                RowError(first_line, f"{len(record)} fields, the header has {len(header)}")
            )
            continue
        fields = dict(zip(header, record, strict=True))
        if fields.get("attention_check", "").strip():
            # An attention check's answers test the rater; they are no votes on the survey.
            vote_file.checks_skipped += 1
            continue
        vote_file.rows += 1
        problems = _row_add(vote_file, first_line, fields, criteria, max_rater_id_length)
        errors.extend(RowError(first_line, problem) for problem in problems)
    if header is None and not errors:
        errors.append(RowError(0, "The file is empty: it needs a header and rows."))
    elif not errors and not vote_file.votes and not vote_file.checks_skipped:
        errors.append(RowError(0, "The file holds no votes."))
    errors.extend(_items_check(vote_file) if not errors else ())
    if errors:
        raise VoteFileError(errors)
    return vote_file


def _lines_decode(lines: Iterable[bytes], undecodable: dict[int, int]) -> Iterator[str]:
    # Line by line, so a bad byte is reported on its own line and the rest still parse.
    for number, raw in enumerate(lines, start=1):
        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            undecodable[number] = exc.start
            yield raw.decode("utf-8", errors="replace")


def _header_check(record: list[str]) -> tuple[list[str], str]:
    header = [name.strip().lower() for name in record]
    missing = [name for name in REQUIRED_COLUMNS if name not in header]
    doubled = sorted({name for name in header if name and header.count(name) > 1})
    problems = []
    if missing:
        problems.append(f"missing column(s) {', '.join(missing)}")
    if doubled:
        problems.append(f"column(s) given twice: {', '.join(doubled)}")
    if problems:
        expected = ",".join(REQUIRED_COLUMNS) + "[," + ",".join(OPTIONAL_COLUMNS) + "]"
        return header, f"bad header: {'; '.join(problems)} (expected {expected})"
    return header, ""


def _row_add(
    vote_file: VoteFile,
    line: int,
    fields: dict[str, str],
    criteria: tuple[str, ...],
    max_rater_id_length: int,
) -> list[str]:
    """Validate one row and fold it into the file's votes; return what is wrong with it."""
    values = {name: fields.get(name, "").strip() for name in fields}
    problems = [f"empty {name}" for name in NON_EMPTY_COLUMNS if not values[name]]
    rater_id, item_id = values["rater_id"], values["item_id"]
    variant_a, variant_b = values["variant_a"], values["variant_b"]
    if len(rater_id) > max_rater_id_length:
        problems.append(f"rater_id is longer than {max_rater_id_length} characters")
    if len(item_id) > ITEM_ID_MAX_LENGTH:
        problems.append(f"item_id is longer than {ITEM_ID_MAX_LENGTH} characters")
    for name in ("variant_a", "variant_b"):
        if values[name] and not VARIANT_NAME.match(values[name]):
            problems.append(
                f"bad {name} {values[name]!r}: a variant name is letters, digits, '-' or '_', "
                "at most 80 characters"
            )
    if variant_a and variant_a == variant_b:
        problems.append("variant_a and variant_b are the same variant")
    # Keys are matched without regard to case, and stored as the study writes them.
    criterion = next(
        (key for key in criteria if key.lower() == values["criterion"].lower()),
        values["criterion"],
    )
    if criterion and criterion not in criteria:
        problems.append(f"unknown criterion {values['criterion']!r}: use {', '.join(criteria)}")
    choice = values["choice"].lower()
    if choice and choice not in CHOICES:
        problems.append(f"bad choice {values['choice']!r}: use {', '.join(CHOICES)}")
    cohort_paths, cohort_problems = _cohorts_parse(values["cohort"])
    problems += cohort_problems
    prompt_cohort = ""
    if values.get("prompt_cohort"):
        try:
            prompt_cohort = cohort_path_normalize(values["prompt_cohort"])
        except CohortPathError as exc:
            problems.append(f"bad prompt_cohort: {exc}")
    created_at, created_problem = _created_at_parse(values.get("created_at", ""))
    if created_problem:
        problems.append(created_problem)
    category = values.get("category", "").lower()
    if len(category) > CATEGORY_MAX_LENGTH:
        problems.append(f"category is longer than {CATEGORY_MAX_LENGTH} characters")
    flagged = FLAG_VALUES.get(values.get("rater_flagged", "").lower() or "false")
    if flagged is None:
        problems.append(f"bad rater_flagged {values['rater_flagged']!r}: use true or false")
    if problems:
        return problems

    rater = vote_file.raters.setdefault(rater_id, RaterDraft(line))
    rater.flagged = rater.flagged or bool(flagged)
    item = vote_file.items.setdefault(item_id, ItemDraft(line))
    problems += _item_fold(item, line, item_id, values.get("prompt", ""), category, prompt_cohort)
    if not item.first_cohort and cohort_paths:
        item.first_cohort = cohort_paths[0]
    pair = (variant_a, variant_b)
    if pair not in item.variant_pairs:
        reversed_line = item.variant_pairs.get((variant_b, variant_a))
        if reversed_line is not None:
            problems.append(
                f"variant pair {variant_a}/{variant_b} of item {item_id!r} is given the other "
                f"way round, {variant_b}/{variant_a}, on line {reversed_line}"
            )
            return problems
        item.variant_pairs[pair] = line

    labels = tuple(sorted(set(cohort_paths)))
    vote = vote_file.votes.setdefault(
        (rater_id, item_id, variant_a, variant_b), VoteDraft(line, labels, created_at)
    )
    if vote.cohort_paths != labels:
        problems.append(
            f"cohort {';'.join(labels)!r} differs from {';'.join(vote.cohort_paths)!r} on line "
            f"{vote.line}, the same rater's vote on the same item and variant pair"
        )
    earlier = vote.answers.get(criterion)
    if earlier is not None and earlier[0] != choice:
        problems.append(
            f"{criterion} is {choice!r} here and {earlier[0]!r} on line {earlier[1]} for the "
            "same rater, item and variant pair"
        )
    if problems:
        return problems
    if earlier is None:
        vote.answers[criterion] = (choice, line)
    # An earlier survey may time each answer; the vote is as old as its first.
    if created_at is not None and (vote.created_at is None or created_at < vote.created_at):
        vote.created_at = created_at
    return []


def _item_fold(
    item: ItemDraft, line: int, item_id: str, prompt: str, category: str, prompt_cohort: str
) -> list[str]:
    """Record an item's prompt, category and target from a row; say where rows disagree."""
    problems = []
    for name, value in (
        ("prompt", prompt),
        ("category", category),
        ("prompt_cohort", prompt_cohort),
    ):
        if not value:
            continue
        known = getattr(item, name)
        if not known:
            setattr(item, name, value)
            setattr(item, f"{name}_line", line)
        elif known != value:
            problems.append(
                f"{name} differs from line {getattr(item, f'{name}_line')} for item {item_id!r}"
            )
    return problems


def _cohorts_parse(cell: str) -> tuple[list[str], list[str]]:
    """Return the cohort paths of a cell (labels separated by ';'), in order, and problems."""
    paths: list[str] = []
    problems: list[str] = []
    for label in cell.split(COHORT_SEPARATOR):
        if not label.strip():
            continue
        try:
            paths.append(cohort_path_normalize(label))
        except CohortPathError as exc:
            problems.append(f"bad cohort: {exc}")
    return paths, problems


def _created_at_parse(raw: str) -> tuple[datetime | None, str]:
    if not raw:
        return None, ""
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        return None, (f"bad created_at {raw!r}: use ISO 8601, for example 2024-03-01T12:30:00Z")
    # A time without a zone is taken as UTC, the zone the export writes.
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)), ""


def _items_check(vote_file: VoteFile) -> list[RowError]:
    """Say which items have no culture to aim their prompt at."""
    return [
        RowError(
            item.line,
            f"item {item_id!r} has no cohort on any row and no prompt_cohort: its prompt needs "
            "the culture it was aimed at",
        )
        for item_id, item in vote_file.items.items()
        if not item.target_cohort
    ]


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
    if result.votes or result.answers:
        _scores_mark_stale(study_id=study.pk)
    return result


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
        from ratings.scores import scores_mark_stale
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
