"""The rater's state in a study, read in one statement: the study's rules, what was served.

The services that serve pairs (ratings.assignment) and store votes (ratings.voting) take it
and keep it current as they change things.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.conf import settings
from django.utils import timezone

from ratings.cohorts import cohort_path_contains
from ratings.models import AssignmentKind, Rater, Study, Vote
from ratings.sql import (
    db_datetime,
    db_tables,
    localized,
    sql_fetchone,
    sql_json_array,
    sql_json_rows,
)
from ratings.texts import language_active

# The rating page and the vote read everything they need about one rater in one study in one
# statement (RatingState): the study's rules, criteria and cohorts, the user row the session is
# checked against, the rater, their participation and cohorts, what they were served and what
# is still open. Nothing is cached between requests, so nothing can be stale: a study closed or
# a criterion reworded shows at the next request. The parts are small index reads.


@dataclass(frozen=True)
class CriterionText:
    pk: int
    key: str
    question: str


@dataclass(frozen=True)
class StudyRules:
    """The settings of a study that serving pairs and storing votes obey."""

    pk: int
    slug: str
    name: str
    active: bool
    raters_per_pair: int
    pairs_per_rater: int
    outgroup_share: float
    attention_check_rate: float
    max_failed_checks: int
    min_seconds_per_pair: float
    # (pk, path) of the study's cohorts, and of every root culture (for out-group pools).
    cohorts: tuple[tuple[int, str], ...]
    roots: tuple[tuple[int, str], ...]
    criteria: tuple[CriterionText, ...]


@dataclass(frozen=True)
class ServedPair:
    """An assignment with what showing it takes: the prompt and the two images' stored names.

    `image_a`/`image_b` are (file, preview) in variant terms; a rater sees them only through
    per-impression URLs (ratings.voting.images), in the order the coin toss put `a` on.
    """

    pk: uuid.UUID
    pair_id: int
    kind: str
    cohort_id: int | None
    shown_left: str
    served_at: datetime
    expires_at: datetime
    repeat_of_id: uuid.UUID | None
    prompt_text: str
    prompt_original: str
    prompt_cohort_path: str
    prompt_cohort_name: str
    image_a: tuple[str, str]
    image_b: tuple[str, str]

    @classmethod
    def from_row(cls, row: Sequence) -> ServedPair:
        """Build from served_columns(), as a cursor row or as the JSON array of the state read."""
        pk, pair_id, kind, cohort_id, shown_left, served_at, expires_at, repeat_of_id, *rest = row
        text, original, cohort_path, cohort_name, file_a, preview_a, file_b, preview_b = rest
        return cls(
            pk=_uuid(pk),
            pair_id=pair_id,
            kind=kind,
            cohort_id=cohort_id,
            shown_left=shown_left,
            served_at=_datetime(served_at),
            expires_at=_datetime(expires_at),
            repeat_of_id=None if repeat_of_id is None else _uuid(repeat_of_id),
            prompt_text=text,
            prompt_original=original,
            prompt_cohort_path=cohort_path,
            prompt_cohort_name=cohort_name,
            image_a=(file_a, preview_a),
            image_b=(file_b, preview_b),
        )


def _uuid(value: uuid.UUID | str) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(value)


def _datetime(value: datetime | str) -> datetime:
    # JSON brings datetimes as ISO 8601 text.
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def shown_names(first: tuple[str, str], second: tuple[str, str]) -> list[str]:
    """Return the stored names of a pair's two images, both in the same format."""
    # The WebP rendition is lighter on a phone; older images may have only the PNG. Both images
    # of a pair go out in the same format, or a format would tell the two apart.
    if first[1] and second[1]:
        return [first[1], second[1]]
    return [first[0], second[0]]


@dataclass
class ServedCounts:
    """What a rater was served in a study, kept up to date as a request serves more."""

    total: int = 0
    regular: int = 0
    outgroup: int = 0
    identical: int = 0
    repeats: int = 0
    last_kind: str | None = None
    last_pair_id: int | None = None

    @property
    def checks(self) -> int:
        return self.identical + self.repeats

    def add(self, served: ServedPair) -> None:
        self.total += 1
        if served.kind == AssignmentKind.PAIR:
            self.regular += 1
            self.outgroup += served.cohort_id is None
        elif served.kind == AssignmentKind.IDENTICAL_CHECK:
            self.identical += 1
        else:
            self.repeats += 1
        self.shown(served)

    def shown(self, served: ServedPair) -> None:
        """Note the assignment as the one served last (its clock started now)."""
        self.last_kind, self.last_pair_id = served.kind, served.pair_id


@dataclass
class RatingState:
    """One rater in one study, as a rating request needs them, read in one statement.

    The services that serve pairs and store votes take it and keep it current as they change
    things (`open`, `served`, `regular_votes`), so a request never reads the same thing twice.
    """

    study: StudyRules
    user_id: int
    # The user row the session's auth hash is checked against (see ratings.voting.views).
    password: str
    user_active: bool
    rater_id: int | None
    participation_id: int | None
    consented: bool
    completed: bool
    # (pk, path, name) of the rater's cohorts, by path.
    cohorts: tuple[tuple[int, str, str], ...]
    regular_votes: int
    served: ServedCounts
    # Live reservations (neither voted on, skipped nor expired), oldest clock first: the one
    # on screen, then the one reserved after it.
    open: list[ServedPair] = field(default_factory=list)

    @property
    def cohort_paths(self) -> list[str]:
        return [path for _, path, _ in self.cohorts]

    @property
    def holds_study_cohort(self) -> bool:
        """Tell whether the rater holds a study cohort or one below it (rater_has_study_cohort)."""
        study_paths = [path for _, path in self.study.cohorts]
        return any(
            cohort_path_contains(study_path, path)
            for path in self.cohort_paths
            for study_path in study_paths
        )

    @property
    def ready(self) -> bool:
        """Tell whether the rater has taken the steps before the pairs: consent, a cohort."""
        return self.rater_id is not None and self.consented and self.holds_study_cohort

    @property
    def progress(self) -> RaterProgress:
        return RaterProgress(done=self.regular_votes, quota=self.study.pairs_per_rater)


def served_columns() -> str:
    """Return what a ServedPair is built from; `new` is an assignment row (a table or a CTE).

    The prompt in the active language (else as written), and as written, the one the images
    were rendered from; its cohort's name in the active language, else the study's own.
    """
    return f"""
    new.id, new.pair_id, new.kind, new.cohort_id, new.shown_left, new.served_at, new.expires_at,
    new.repeat_of_id, {localized("prompt.text")},
    {localized("prompt.text", settings.LANGUAGE_CODE)},
    prompt_cohort.path, {localized("prompt_cohort.name", study_language="pair_study.language")},
    image_a.file, image_a.preview, image_b.file, image_b.preview
    """


def served_joins() -> str:
    """Return the joins served_columns() reads, from an assignment row called `new`."""
    t = db_tables()
    return f"""
        JOIN {t["pair"]} pair ON pair.id = new.pair_id
        JOIN {t["study"]} pair_study ON pair_study.id = pair.study_id
        JOIN {t["prompt"]} prompt ON prompt.id = pair.prompt_id
        JOIN {t["cohort"]} prompt_cohort ON prompt_cohort.id = prompt.cohort_id
        JOIN {t["image"]} image_a ON image_a.id = pair.image_a_id
        JOIN {t["image"]} image_b ON image_b.id = pair.image_b_id
    """


def _state_sql(study_by: str) -> str:
    t = db_tables()
    pair_kind = AssignmentKind.PAIR.value
    repeat = AssignmentKind.REPEAT_CHECK.value
    identical = AssignmentKind.IDENTICAL_CHECK.value
    # A repeat check is answered by the one repeat vote on its pair, anything else by the
    # rater's first vote on it: each probe matches one of the two unique indexes of votes.
    # Only live reservations are probed: a vote or skip ends the reservation, so whatever is
    # not live is done (or was left so long that it went back to the pool). The study of each
    # assignment is a subquery by key, not a join: a plan made once for any parameters
    # otherwise merged the rater's assignments with every pair of the study.
    served_cte = f"""
        SELECT a.id, a.pair_id, a.kind, a.cohort_id, a.shown_left, a.served_at, a.expires_at,
            a.repeat_of_id,
            CASE WHEN a.expires_at > %(now)s AND a.skipped_at IS NULL THEN
                CASE WHEN a.kind = '{repeat}' THEN NOT EXISTS (
                    SELECT 1 FROM {t["vote"]} v WHERE v.rater_id = a.rater_id
                        AND v.pair_id = a.pair_id AND v.kind = '{repeat}')
                ELSE NOT EXISTS (
                    SELECT 1 FROM {t["vote"]} v WHERE v.rater_id = a.rater_id
                        AND v.pair_id = a.pair_id AND v.kind <> '{repeat}')
                END
            ELSE 0 = 1 END AS live
        FROM {t["assignment"]} a
        WHERE a.rater_id = (SELECT id FROM rater)
            AND (SELECT p.study_id FROM {t["pair"]} p WHERE p.id = a.pair_id)
                = (SELECT id FROM study)
    """
    counts = sql_json_array(
        f"""count(*), count(*) FILTER (WHERE kind = '{pair_kind}'),
        count(*) FILTER (WHERE kind = '{pair_kind}' AND cohort_id IS NULL),
        count(*) FILTER (WHERE kind = '{identical}'), count(*) FILTER (WHERE kind = '{repeat}')"""
    )
    return f"""
    WITH study AS (
        SELECT id, slug, {localized("name", study_language="language")} AS name, language,
            active, raters_per_pair, pairs_per_rater, outgroup_share, attention_check_rate,
            max_failed_checks, min_seconds_per_pair
        FROM {t["study"]} WHERE {study_by} = %(study)s
    ), rater AS (
        SELECT id FROM {t["rater"]} WHERE user_id = %(user)s
    ), served AS ({served_cte})
    SELECT study.id, study.slug, study.name, study.active, study.raters_per_pair,
        study.pairs_per_rater, study.outgroup_share, study.attention_check_rate,
        study.max_failed_checks, study.min_seconds_per_pair,
        {
        sql_json_rows(
            "c.id, c.path",
            f"FROM {t['study_cohorts']} sc JOIN {t['cohort']} c ON c.id = sc.cohort_id "
            "WHERE sc.study_id = study.id",
            "c.path",
        )
    },
        {sql_json_rows("c.id, c.path", f"FROM {t['cohort']} c WHERE c.depth = 1", "c.path")},
        {
        sql_json_rows(
            f"c.id, c.key, {localized('c.question', study_language='study.language')}",
            f"FROM {t['criterion']} c WHERE c.study_id = study.id",
            "c.position, c.id",
        )
    },
        u.password, u.is_active, rater.id, part.id, part.consented_at IS NOT NULL,
        part.completed_at IS NOT NULL,
        {
        sql_json_rows(
            f"c.id, c.path, {localized('c.name', study_language='study.language')}",
            f"FROM {t['rater_cohorts']} rc JOIN {t['cohort']} c ON c.id = rc.cohort_id "
            "WHERE rc.rater_id = rater.id",
            "c.path",
        )
    },
        (SELECT count(*) FROM {t["vote"]} v
            WHERE v.rater_id = rater.id AND v.study_id = study.id AND v.kind = '{pair_kind}'),
        (SELECT {counts} FROM served),
        (SELECT {sql_json_array("kind, pair_id")} FROM served
            ORDER BY served_at DESC LIMIT 1),
        {
        sql_json_rows(
            served_columns(),
            f"FROM served new {served_joins()} WHERE new.live",
            "new.served_at, new.id",
        )
    }
    FROM study
    JOIN {t["user"]} u ON u.id = %(user)s
    LEFT JOIN rater ON 1 = 1
    LEFT JOIN {t["participation"]} part ON part.study_id = study.id AND part.rater_id = rater.id
    """


_STATE_SQL: dict[tuple[str, str], str] = {}


def _json(value):
    # psycopg parses `json` columns itself; a value built as text arrives as text.
    if value is None:
        return None
    return json.loads(value) if isinstance(value, str) else value


def rating_state(
    *,
    user_id: int,
    study_slug: str | None = None,
    study_id: int | None = None,
    now: datetime | None = None,
) -> RatingState | None:
    """Return the RatingState of a user in a study (by slug or id), or None if either is missing.

    One statement, whatever the rater's history: a study's rules, criteria and cohorts, the
    user row, the rater and participation, counts of votes and assignments, and the live
    reservations with their prompts and images.
    """
    study_by, key = ("slug", study_slug) if study_id is None else ("id", study_id)
    sql_key = (study_by, language_active())  # the texts are read in the rater's language
    sql = _STATE_SQL.get(sql_key)
    if sql is None:
        sql = _STATE_SQL[sql_key] = _state_sql(study_by)
    params = {"study": key, "user": user_id, "now": db_datetime(now or timezone.now())}
    row = sql_fetchone(sql, params)
    if row is None:
        return None
    (study_pk, slug, name, active, raters_per_pair, pairs_per_rater, outgroup_share) = row[:7]
    (check_rate, max_failed, min_seconds, study_cohorts, roots, criteria) = row[7:13]
    (password, user_active, rater_id, participation_id, consented, completed) = row[13:19]
    (rater_cohorts, regular_votes, counts, last, live) = row[19:]
    study = StudyRules(
        pk=study_pk,
        slug=slug,
        name=name,
        active=bool(active),
        raters_per_pair=raters_per_pair,
        pairs_per_rater=pairs_per_rater,
        outgroup_share=outgroup_share,
        attention_check_rate=check_rate,
        max_failed_checks=max_failed,
        min_seconds_per_pair=min_seconds,
        cohorts=tuple(tuple(cohort) for cohort in _json(study_cohorts) or ()),
        roots=tuple(tuple(cohort) for cohort in _json(roots) or ()),
        criteria=tuple(CriterionText(*criterion) for criterion in _json(criteria) or ()),
    )
    total, regular, outgroup, identical, repeats = _json(counts)
    last_kind, last_pair_id = _json(last) or (None, None)
    return RatingState(
        study=study,
        user_id=user_id,
        password=password,
        user_active=bool(user_active),
        rater_id=rater_id,
        participation_id=participation_id,
        consented=bool(consented),
        completed=bool(completed),
        cohorts=tuple(tuple(cohort) for cohort in _json(rater_cohorts) or ()),
        regular_votes=regular_votes,
        served=ServedCounts(
            total=total,
            regular=regular,
            outgroup=outgroup,
            identical=identical,
            repeats=repeats,
            last_kind=last_kind,
            last_pair_id=last_pair_id,
        ),
        open=[ServedPair.from_row(served) for served in _json(live) or ()],
    )


def rating_state_of(*, study: Study, rater: Rater, now: datetime | None = None) -> RatingState:
    """Return the RatingState of a rater in a study, for callers that hold both already."""
    state = rating_state(user_id=rater.user_id, study_id=study.pk, now=now)
    assert state is not None, "the rater's user and the study exist"
    return state


@dataclass(frozen=True)
class RatingNext:
    """What a rater is shown now and what is fetched ahead; no `current` means nothing to show.

    `done` says the quota is met (the completion page follows), otherwise nothing is left
    for now (the "no work" page follows).
    """

    current: ServedPair | None
    upcoming: ServedPair | None
    progress: RaterProgress

    @property
    def done(self) -> bool:
        return self.progress.quota_met


# A rater's progress toward the study's quota.


@dataclass(frozen=True)
class RaterProgress:
    """Regular pairs a rater has voted on, against the study's quota."""

    done: int
    quota: int

    @property
    def quota_met(self) -> bool:
        return self.done >= self.quota


def rater_progress(*, study: Study, rater: Rater) -> RaterProgress:
    """Return how many of the study's quota of regular pairs the rater has voted on."""
    done = Vote.objects.filter(study=study, rater=rater, kind=AssignmentKind.PAIR).count()
    return RaterProgress(done=done, quota=study.pairs_per_rater)
