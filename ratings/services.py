"""Services that change rating state: studies, cohorts, raters, assignments and votes."""

from __future__ import annotations

import json
import random
import secrets
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import cache
from typing import TYPE_CHECKING

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q
from django.db.models.signals import post_save
from django.utils import timezone
from django.utils.translation import gettext

from ratings import selectors
from ratings.cohorts import cohort_path_ancestors, cohort_path_contains, cohort_path_normalize
from ratings.models import (
    DEFAULT_CRITERIA,
    Answer,
    Assignment,
    AssignmentKind,
    Choice,
    Cohort,
    CohortProposal,
    ConsentDecline,
    Criterion,
    Pair,
    PairCoverage,
    Participation,
    Rater,
    Side,
    Study,
    StudyInvite,
    Vote,
    VoteSource,
)
from ratings.selectors import (
    SERVED_COLUMNS,
    RatingNext,
    RatingState,
    ServedPair,
    db_datetime,
    db_uuid,
)

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

# What a rater's form says, in screen terms; the vote is stored in variant terms.
SCREEN_ANSWERS = ("1", "2", "tie", "skip")
MAX_TIME_ON_TASK_MS = 2**31 - 1


class VoteRefused(Exception):
    """A vote that cannot be stored; `status` is the HTTP status that says why."""

    def __init__(self, reason: str, *, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


def study_create(
    *, name: str, slug: str, cohort_paths: Iterable[str] = (), **fields: object
) -> Study:
    """Create a study with the default criteria and the given cohorts (made if missing)."""
    with transaction.atomic():
        study = Study.objects.create(name=name, slug=slug, **fields)
        criteria_ensure_defaults(study=study)
        study.cohorts.set([cohort_ensure(path=path) for path in cohort_paths])
    return study


def criteria_ensure_defaults(*, study: Study) -> None:
    """Give a study with no criteria the four default questions."""
    if study.criteria.exists():
        return
    Criterion.objects.bulk_create(
        Criterion(study=study, key=key, question=question, position=position)
        for position, (key, question) in enumerate(DEFAULT_CRITERIA)
    )


def cohort_ensure(*, path: str, name: str = "") -> Cohort:
    """Return the cohort at `path`, creating it and any missing ancestors."""
    path = cohort_path_normalize(path)
    cohort = None
    for ancestor in cohort_path_ancestors(path):
        default_name = ancestor.rsplit(":", 1)[-1].replace("_", " ").replace("-", " ").title()
        cohort, _ = Cohort.objects.get_or_create(
            path=ancestor,
            defaults={"name": name if ancestor == path and name else default_name},
        )
    assert cohort is not None
    return cohort


def rater_ensure(*, user: AbstractBaseUser) -> Rater:
    """Return the user's rater profile, creating an empty one on first use."""
    rater, _ = Rater.objects.get_or_create(user=user)
    return rater


def participation_ensure(*, study: Study, rater: Rater) -> Participation:
    """Return the rater's participation in the study, creating it on first use."""
    participation, _ = Participation.objects.get_or_create(study=study, rater=rater)
    return participation


def participation_consent(*, study: Study, rater: Rater) -> Participation:
    """Record that the rater accepted the study's consent text, once."""
    participation = participation_ensure(study=study, rater=rater)
    Participation.objects.filter(pk=participation.pk, consented_at__isnull=True).update(
        consented_at=timezone.now()
    )
    participation.refresh_from_db(fields=["consented_at"])
    return participation


def consent_decline(*, study: Study, rater: Rater | None = None) -> bool:
    """Record that someone declined the study's consent; nothing about who.

    What entering the study left behind goes: the rater's participation, not yet consented,
    and a panel rater made for this visit who has nothing else. Tell whether the rater went.
    """
    with transaction.atomic():
        ConsentDecline.objects.create(study=study)
        if rater is None:
            return False
        Participation.objects.filter(study=study, rater=rater, consented_at__isnull=True).delete()
        if (
            rater.panel_id is not None
            and not rater.participations.exists()
            and not rater.votes.exists()
        ):
            rater.user.delete()
            return True
    return False


def rater_cohorts_set(*, rater: Rater, cohorts: Sequence[Cohort]) -> None:
    """Replace the rater's cohorts; votes already cast keep the labels they were cast with."""
    if not cohorts:
        raise ValueError("A rater needs at least one cohort.")
    rater.cohorts.set(cohorts)


# Rating in the browser: what a rater is served, their votes and skips, and the quality checks.
#
# A request reads one RatingState (selectors.rating_state, one statement) and calls one service
# with it; the services keep the state current as they change things, so nothing is read twice.
# Their statements are written by hand (see selectors.sql_cursor), and a write the ORM would
# spread over several statements is one: a vote, with its answers, the pair's coverage, the end
# of its reservation, the participation's counts and the clock of the pair after it, is one
# INSERT … WITH on PostgreSQL. The functions that take a study and a rater
# (assignment_for_rater, vote_cast, assignment_skip, pair_assign) read the state themselves,
# for callers outside a request, and run the same code.

# Why a rater may skip a pair, as the skip form offers them; "other" may carry the rater's words.
SKIP_REASONS = ("cant_see", "unfamiliar", "other")
SKIP_NOTE_MAX = 160


def _expiry(now: datetime) -> datetime:
    return now + timedelta(minutes=settings.POLYPHONY_ASSIGNMENT_MINUTES)


@cache
def _db_tables() -> dict[str, str]:
    return {
        **selectors.db_tables(),
        "answer": Answer._meta.db_table,
        "coverage": PairCoverage._meta.db_table,
    }


def _served_at(state: RatingState, now: datetime) -> datetime:
    # Open assignments are shown oldest clock first: one reserved after another must not tie
    # with it, even when both are made in one request with the same `now`.
    latest = max((served.served_at for served in state.open), default=None)
    if latest is not None and latest >= now:
        return latest + timedelta(microseconds=1)
    return now


def _served_note(state: RatingState, served: ServedPair) -> ServedPair:
    state.served.add(served)
    state.open.append(served)
    return served


def _served_insert(insert: str, params: dict) -> ServedPair | None:
    """Insert an assignment (with id `%(new_id)s`) and return it as a ServedPair; None if not.

    `insert` is an INSERT … SELECT that may insert nothing (a condition, ON CONFLICT DO NOTHING).
    The insert and the read of its prompt and images are one statement.
    """
    joins = selectors.served_joins()
    sql = f"WITH new AS ({insert} RETURNING *) SELECT {SERVED_COLUMNS} FROM new {joins}"
    row = selectors.sql_fetchone(sql, params)
    return ServedPair.from_row(row) if row else None


_ASSIGNMENT_COLUMNS = (
    "id, rater_id, pair_id, kind, repeat_of_id, cohort_id, shown_left, served_at, expires_at, "
    "skipped_at, skip_reason"
)


def _assignment_instance(served: ServedPair, *, rater_id: int) -> Assignment:
    """Return the Assignment a ServedPair was stored as, for callers that want the model."""
    values = {
        "id": served.pk,
        "rater_id": rater_id,
        "pair_id": served.pair_id,
        "kind": served.kind,
        "repeat_of_id": served.repeat_of_id,
        "cohort_id": served.cohort_id,
        "shown_left": served.shown_left,
        "served_at": served.served_at,
        "expires_at": served.expires_at,
        "skipped_at": None,
        "skip_reason": "",
    }
    names = [field.attname for field in Assignment._meta.concrete_fields]
    return Assignment.from_db(connection.alias, names, [values[name] for name in names])


def _assignments_renew(ids: Iterable[uuid.UUID], *, now: datetime) -> None:
    # Still held for the rater who is looking at them, or about to.
    params: dict = {"expires_at": db_datetime(_expiry(now))}
    ids = selectors.sql_list("id", [db_uuid(pk) for pk in ids], params)
    if ids != "(NULL)":
        with selectors.sql_cursor() as cursor:
            cursor.execute(
                f"UPDATE {Assignment._meta.db_table} SET expires_at = %(expires_at)s "
                f"WHERE id IN {ids}",
                params,
            )


def rating_next(
    *, state: RatingState, now: datetime | None = None, renewed: Iterable[uuid.UUID] = ()
) -> RatingNext:
    """Return what the rater rates now and the assignment reserved after it, reserving as needed.

    The open assignment with the oldest clock is shown, so a reload shows the same pair; the
    one after it is the next open one, or a new one (a due check, else a pair) unless a vote
    on the current one may meet the quota. Reservations already held are renewed (but those in
    `renewed`), so a rater keeps the pair they look at and the one their browser fetched.
    """
    now = now or timezone.now()
    progress = state.progress
    if progress.quota_met:
        return RatingNext(current=None, upcoming=None, progress=progress)
    held = {served.pk for served in state.open} - set(renewed)
    current = state.open[0] if state.open else _assignment_new(state=state, now=now)
    if current is None:
        return RatingNext(current=None, upcoming=None, progress=progress)
    upcoming = next((served for served in state.open if served.pk != current.pk), None)
    if upcoming is None:
        regular_open = sum(served.kind == AssignmentKind.PAIR for served in state.open)
        if state.regular_votes + regular_open < state.study.pairs_per_rater:
            upcoming = _assignment_new(state=state, now=now)
    _assignments_renew(
        (served.pk for served in (current, upcoming) if served and served.pk in held), now=now
    )
    return RatingNext(current=current, upcoming=upcoming, progress=progress)


def _served_open(
    state: RatingState, assignment_id: object, *, skipping: bool = False
) -> ServedPair:
    """Return the open assignment the rater answers, or raise VoteRefused saying why not.

    Usually one of the state's live reservations; one that timed out while the rater looked
    at it is still theirs to answer, if nobody answered it.
    """
    try:
        assignment_pk = uuid.UUID(str(assignment_id))
    except ValueError as exc:
        raise VoteRefused(gettext("This pair was not served to you."), status=404) from exc
    served = next((served for served in state.open if served.pk == assignment_pk), None)
    if served is None and state.rater_id is not None:
        t = _db_tables()
        repeat = AssignmentKind.REPEAT_CHECK.value
        row = selectors.sql_fetchone(
            f"""SELECT {SERVED_COLUMNS}, new.skipped_at IS NOT NULL, EXISTS (
                    SELECT 1 FROM {t["vote"]} v WHERE v.rater_id = new.rater_id
                        AND v.pair_id = new.pair_id
                        AND (CASE WHEN new.kind = '{repeat}' THEN v.kind = '{repeat}'
                            ELSE v.kind <> '{repeat}' END))
                FROM {t["assignment"]} new {selectors.served_joins()}
                WHERE new.id = %(id)s AND new.rater_id = %(rater)s AND pair.study_id = %(study)s""",
            {"id": db_uuid(assignment_pk), "rater": state.rater_id, "study": state.study.pk},
        )
        if row is None:
            raise VoteRefused(gettext("This pair was not served to you."), status=404)
        if not state.study.active:
            raise VoteRefused(gettext("This study is closed."), status=409)
        *columns, skipped, voted = row
        if skipped:
            message = "You skipped this pair already." if skipping else "You skipped this pair."
            raise VoteRefused(gettext(message), status=409)
        if voted:
            raise VoteRefused(gettext("You have already voted on this pair."), status=409)
        served = ServedPair.from_row(columns)
    elif served is None:
        raise VoteRefused(gettext("This pair was not served to you."), status=404)
    if not state.study.active:
        raise VoteRefused(gettext("This study is closed."), status=409)
    return served


def _choices(state: RatingState, served: ServedPair, answers: Mapping[str, str]) -> dict[str, str]:
    """Translate a rater's screen answers into variant terms, or raise VoteRefused."""
    criteria = state.study.criteria
    keys = {criterion.key for criterion in criteria}
    missing = [criterion.key for criterion in criteria if criterion.key not in answers]
    unknown = sorted(set(answers) - keys)
    if missing:
        raise VoteRefused(
            gettext("Answer every question; missing: %(keys)s.") % {"keys": ", ".join(missing)}
        )
    if unknown:
        raise VoteRefused(gettext("Unknown question(s): %(keys)s.") % {"keys": ", ".join(unknown)})
    bad = {key: value for key, value in answers.items() if value not in SCREEN_ANSWERS}
    if bad:
        key, value = next(iter(bad.items()))
        raise VoteRefused(
            gettext("'%(value)s' is not an answer to %(key)s: use 1, 2, tie or skip.")
            % {"value": value, "key": key}
        )
    shown_right = Side.B if served.shown_left == Side.A else Side.A
    by_screen = {"1": served.shown_left, "2": shown_right, "tie": Choice.TIE, "skip": Choice.SKIP}
    return {criterion.key: by_screen[answers[criterion.key]] for criterion in criteria}


def _check_passed(
    state: RatingState, served: ServedPair, choices: Mapping[str, str]
) -> bool | None:
    """Say whether a check's answers are the ones it expects; None for a regular pair."""
    if served.kind == AssignmentKind.IDENTICAL_CHECK:
        # One image shown twice: every criterion must be "both equally". "Can't judge" fails:
        # two identical images can always be judged equal, and answering "can't judge"
        # everywhere must not be a way past the checks.
        return all(choice == Choice.TIE for choice in choices.values())
    if served.kind == AssignmentKind.REPEAT_CHECK:
        t = _db_tables()
        by_criterion = dict(
            selectors.sql_fetchall(
                f"""SELECT answer.criterion_id, answer.choice FROM {t["answer"]} answer
                    JOIN {t["vote"]} vote ON vote.id = answer.vote_id
                    WHERE vote.rater_id = %(rater)s AND vote.pair_id = %(pair)s
                        AND vote.kind <> %(repeat)s""",
                {
                    "rater": state.rater_id,
                    "pair": served.pair_id,
                    "repeat": AssignmentKind.REPEAT_CHECK.value,
                },
            )
        )
        earlier = {c.key: by_criterion.get(c.pk, Choice.SKIP) for c in state.study.criteria}
        # Same pair, sides swapped: every answer given both times must name the same variant
        # (or tie) again. "Can't judge" either time says nothing, so it is left out; a check
        # with nothing left to compare is inconclusive and counts neither way.
        compared = [
            choice == earlier[key]
            for key, choice in choices.items()
            if choice != Choice.SKIP and earlier[key] != Choice.SKIP
        ]
        return all(compared) if compared else None
    return None


def _coverage_paths(*, prompt_path: str, vote_paths: Iterable[str]) -> set[str]:
    # Every cohort that holds one of the vote's labels and can count toward the pair's prompt.
    return {
        ancestor
        for path in vote_paths
        for ancestor in cohort_path_ancestors(path)
        if cohort_path_contains(ancestor, prompt_path)
        or cohort_path_contains(prompt_path, ancestor)
    }


def _coverage_count(
    *, study_id: int, pair_id: int, target: int, prompt_path: str, vote_paths: Iterable[str]
) -> tuple[str, dict]:
    """Return the statement and parameters that count one regular vote in its pair's coverage.

    The vote adds one on the row of every cohort holding one of its labels, ancestors included,
    that is related to the prompt's cohort (made if missing); a vote with no such label is an
    out-group vote and adds one to `outgroup_votes` on the row of the prompt's root culture.
    Rows are taken in path order, so concurrent votes on a pair lock them in the same order.

    A row never counts past the target. A vote on a reservation that timed out while others
    filled the pair, or a sub-culture's vote on a pair its culture had filled (a Tamil vote
    counts in India too, and Tamil has a target of its own), is stored and scored like any
    other; it only fills no place that was not open. The rows count places filled, which is
    what assignment reads them for.
    """
    paths = _coverage_paths(prompt_path=prompt_path, vote_paths=vote_paths)
    in_group = 1 if paths else 0
    if not paths:
        paths = {cohort_path_ancestors(prompt_path)[0]}
    t = _db_tables()
    params = {
        "study": study_id,
        "pair": pair_id,
        "in_group": in_group,
        "out_group": 1 - in_group,
        "target": target,
    }
    paths_in = selectors.sql_list("path", sorted(paths), params)
    sql = f"""
        INSERT INTO {t["coverage"]} AS coverage
            (study_id, pair_id, cohort_id, votes, outgroup_votes)
        SELECT %(study)s, %(pair)s, cohort.id, %(in_group)s, %(out_group)s
        FROM {t["cohort"]} cohort WHERE cohort.path IN {paths_in} ORDER BY cohort.path
        ON CONFLICT (pair_id, cohort_id) DO UPDATE SET
            votes = CASE WHEN coverage.votes < %(target)s
                THEN coverage.votes + excluded.votes ELSE coverage.votes END,
            outgroup_votes = CASE WHEN coverage.outgroup_votes < %(target)s
                THEN coverage.outgroup_votes + excluded.outgroup_votes
                ELSE coverage.outgroup_votes END
    """
    return sql, params


def _vote_store(
    *,
    state: RatingState,
    served: ServedPair,
    answers: Mapping[str, str],
    comment: str,
    now: datetime,
) -> Vote:
    """Store a vote on an open assignment and return it. `state` is brought up to date.

    With it, in the same statement: a regular vote is counted in its pair's coverage, the
    reservation ends, the participation counts the vote's checks (a vote under the minimum
    time is a failed check whatever its answers) and flags the rater past the allowance, a met
    quota is marked (and whatever else was reserved goes back to the pool), and the clock of
    the pair reserved after this one starts: its images were fetched while this one was on
    screen, and its time on task starts now.
    """
    study = state.study
    choices = _choices(state, served, answers)
    if len(comment) > 2000:
        raise VoteRefused(gettext("The comment is longer than 2000 characters."))
    elapsed_ms = int((now - served.served_at).total_seconds() * 1000)
    time_on_task_ms = max(0, min(elapsed_ms, MAX_TIME_ON_TASK_MS))
    too_fast = time_on_task_ms < study.min_seconds_per_pair * 1000
    check_passed = _check_passed(state, served, choices)
    failed = too_fast or check_passed is False
    regular = served.kind == AssignmentKind.PAIR
    completed = regular and state.regular_votes + 1 >= study.pairs_per_rater
    others = [other for other in state.open if other.pk != served.pk]
    upcoming = None if completed or not others else others[0]
    ended = [served.pk, *(other.pk for other in others if completed or other is upcoming)]
    if state.participation_id is None:
        Participation.objects.get_or_create(study_id=study.pk, rater_id=state.rater_id)
    t = _db_tables()
    params = {
        "study": study.pk,
        "pair": served.pair_id,
        "rater": state.rater_id,
        "shown_left": served.shown_left,
        "source": VoteSource.BROWSER.value,
        "cohort_paths": json.dumps(state.cohort_paths),
        "time_on_task_ms": time_on_task_ms,
        "comment": comment.strip(),
        "kind": served.kind,
        "check_passed": check_passed,
        "too_fast": too_fast,
        "now": db_datetime(now),
        "upcoming": db_uuid(upcoming.pk) if upcoming else None,
        "renewed": db_datetime(_expiry(now)),
        "failed": int(failed),
        "passed": int(not failed and bool(check_passed)),
        "allowed": study.max_failed_checks,
        "completed": completed,
    }
    answer_rows = []
    for index, criterion in enumerate(study.criteria):
        params[f"criterion_{index}"] = criterion.pk
        params[f"choice_{index}"] = choices[criterion.key]
        answer_rows.append(f"({{first}}, %(criterion_{index})s, %(choice_{index})s)")
    ended_in = selectors.sql_list("ended", [db_uuid(pk) for pk in ended], params)
    then = [
        f"""INSERT INTO {t["answer"]} (vote_id, criterion_id, choice)
            VALUES {", ".join(answer_rows)}""",
        f"""UPDATE {t["assignment"]} SET
                served_at = CASE WHEN id = %(upcoming)s THEN %(now)s ELSE served_at END,
                expires_at = CASE WHEN id = %(upcoming)s THEN %(renewed)s ELSE %(now)s END
            WHERE id IN {ended_in}""",
        f"""UPDATE {t["participation"]} SET
                checks_failed = checks_failed + %(failed)s,
                checks_passed = checks_passed + %(passed)s,
                flagged = (flagged OR (%(failed)s > 0
                    AND checks_failed + %(failed)s > %(allowed)s)),
                completed_at = CASE WHEN %(completed)s AND completed_at IS NULL
                    THEN %(now)s ELSE completed_at END
            WHERE study_id = %(study)s AND rater_id = %(rater)s""",
    ]
    if regular:
        coverage, coverage_params = _coverage_count(
            study_id=study.pk,
            pair_id=served.pair_id,
            target=study.raters_per_pair,
            prompt_path=served.prompt_cohort_path,
            vote_paths=state.cohort_paths,
        )
        then.insert(1, coverage)
        params.update(coverage_params)
    first = f"""
        INSERT INTO {t["vote"]} (study_id, pair_id, rater_id, shown_left, source, cohort_paths,
            time_on_task_ms, comment, kind, check_passed, too_fast, created_at)
        VALUES (%(study)s, %(pair)s, %(rater)s, %(shown_left)s, %(source)s, %(cohort_paths)s,
            %(time_on_task_ms)s, %(comment)s, %(kind)s, %(check_passed)s, %(too_fast)s, %(now)s)
        RETURNING id
    """
    try:
        with _savepoint_if_nested():
            (vote_id,) = selectors.sql_chain(first, then, params)
    except IntegrityError as exc:
        raise VoteRefused(gettext("You have already voted on this pair."), status=409) from exc
    vote = _vote_saved(
        id=vote_id,
        study_id=study.pk,
        pair_id=served.pair_id,
        rater_id=state.rater_id,
        shown_left=served.shown_left,
        source=VoteSource.BROWSER.value,
        cohort_paths=state.cohort_paths,
        time_on_task_ms=time_on_task_ms,
        comment=params["comment"],
        kind=served.kind,
        check_passed=check_passed,
        too_fast=too_fast,
        created_at=now,
    )
    state.regular_votes += regular
    state.completed = state.completed or completed
    state.open = [] if completed else others
    if upcoming is not None:
        started = replace(upcoming, served_at=now, expires_at=_expiry(now))
        state.open[0] = started
        state.served.shown(started)
    return vote


def _vote_saved(**values) -> Vote:
    """Return the Vote just stored, and tell post_save's receivers, as Vote.save() would.

    The vote is written in SQL, not saved through the model; the receivers (scores marked
    stale after a vote, see ratings.signals) must hear of it all the same.
    """
    names = [field.attname for field in Vote._meta.concrete_fields]
    vote = Vote.from_db(connection.alias, names, [values[name] for name in names])
    post_save.send(
        sender=Vote,
        instance=vote,
        created=True,
        update_fields=None,
        raw=False,
        using=vote._state.db,
    )
    return vote


@contextmanager
def _savepoint_if_nested() -> Iterator[None]:
    """Give a statement a savepoint inside a caller's transaction, and no transaction outside.

    One statement is atomic on its own in autocommit mode; BEGIN and COMMIT around every vote
    would be two more round trips. Inside a caller's transaction a savepoint keeps a failed
    statement (a vote posted twice) from breaking the caller's transaction.
    """
    if connection.in_atomic_block:
        with transaction.atomic():
            yield
    else:
        yield


def vote_submit(
    *,
    state: RatingState,
    assignment_id: object,
    answers: Mapping[str, str],
    comment: str = "",
    now: datetime | None = None,
) -> RatingNext:
    """Store the rater's answers to a pair they were served; return what they rate next.

    `answers` maps each criterion key to "1" (Image 1, on the left), "2", "tie" or "skip",
    stored in variant terms. The pair after it is the one reserved while this one was on
    screen (its images are fetched already); a new one is reserved to follow it.
    """
    now = now or timezone.now()
    served = _served_open(state, assignment_id)
    _vote_store(state=state, served=served, answers=answers, comment=comment, now=now)
    return rating_next(state=state, now=now, renewed=[started.pk for started in state.open[:1]])


def skip_submit(
    *,
    state: RatingState,
    assignment_id: object,
    reason: str,
    note: str = "",
    now: datetime | None = None,
) -> RatingNext:
    """Mark an assignment skipped with the rater's reason; return what they rate next.

    The pair goes back to the pool, and the skipped assignment stays, so the pair is never
    served to this rater again. Skipping an attention check fails it: the skip form is on every
    pair (offering it on some only would tell checks apart), and skipping every odd-looking
    pair must not be a way past the checks.
    """
    now = now or timezone.now()
    served = _served_open(state, assignment_id, skipping=True)
    if reason not in SKIP_REASONS:
        raise VoteRefused(gettext("Choose why you skip this pair."))
    note = " ".join(note.split())[:SKIP_NOTE_MAX]
    others = [other for other in state.open if other.pk != served.pk]
    upcoming = others[0] if others else None
    check = served.kind != AssignmentKind.PAIR
    if check and state.participation_id is None:
        Participation.objects.get_or_create(study_id=state.study.pk, rater_id=state.rater_id)
    t = _db_tables()
    first = f"""
        UPDATE {t["assignment"]} SET skipped_at = %(now)s, skip_reason = %(reason)s,
            expires_at = %(now)s
        WHERE id = %(skipped)s AND skipped_at IS NULL
        RETURNING id
    """
    then = [
        f"""UPDATE {t["assignment"]} SET served_at = %(now)s, expires_at = %(renewed)s
            WHERE id = %(upcoming)s AND {{first}} IS NOT NULL""",
        f"""UPDATE {t["participation"]} SET checks_failed = checks_failed + 1,
                flagged = (flagged OR checks_failed + 1 > %(allowed)s)
            WHERE %(check)s AND study_id = %(study)s AND rater_id = %(rater)s
                AND {{first}} IS NOT NULL""",
    ]
    params = {
        "now": db_datetime(now),
        "reason": f"other: {note}" if reason == "other" and note else reason,
        "skipped": db_uuid(served.pk),
        "upcoming": db_uuid(upcoming.pk) if upcoming else None,
        "renewed": db_datetime(_expiry(now)),
        "check": check,
        "allowed": state.study.max_failed_checks,
        "study": state.study.pk,
        "rater": state.rater_id,
    }
    with _savepoint_if_nested():
        skipped = selectors.sql_chain(first, then, params)
    if skipped is None:
        raise VoteRefused(gettext("You skipped this pair already."), status=409)
    state.open = others
    if upcoming is not None:
        started = replace(upcoming, served_at=now, expires_at=_expiry(now))
        state.open[0] = started
        state.served.shown(started)
    return rating_next(state=state, now=now, renewed=[started.pk for started in state.open[:1]])


def _state_of_assignment(*, rater: Rater, assignment_id: object) -> tuple[RatingState, object]:
    """Return the RatingState of the study an assignment of the rater's belongs to."""
    try:
        assignment_pk = uuid.UUID(str(assignment_id))
    except ValueError as exc:
        raise VoteRefused(gettext("This pair was not served to you."), status=404) from exc
    study_id = (
        Assignment.objects.filter(pk=assignment_pk, rater=rater)
        .values_list("pair__study_id", flat=True)
        .first()
    )
    if study_id is None:
        raise VoteRefused(gettext("This pair was not served to you."), status=404)
    state = selectors.rating_state(user_id=rater.user_id, study_id=study_id)
    assert state is not None
    return state, assignment_pk


def vote_cast(
    *,
    rater: Rater,
    assignment_id: object,
    answers: Mapping[str, str],
    comment: str = "",
    now: datetime | None = None,
) -> Vote:
    """Store a rater's answers to a pair they were served, translated from screen sides.

    `answers` maps each criterion key to "1" (Image 1, on the left), "2", "tie" or "skip".
    An attention check is marked passed or failed as it is stored, every vote gets the time
    check, and the rater's participation counts both and flags the rater past the allowance.
    For callers outside a request; the vote view calls vote_submit.
    """
    state, assignment_pk = _state_of_assignment(rater=rater, assignment_id=assignment_id)
    served = _served_open(state, assignment_pk)
    return _vote_store(
        state=state, served=served, answers=answers, comment=comment, now=now or timezone.now()
    )


def assignment_skip(
    *,
    rater: Rater,
    assignment_id: object,
    reason: str,
    note: str = "",
    now: datetime | None = None,
) -> Assignment:
    """Skip an assignment with the rater's reason (see skip_submit); return it, skipped."""
    state, assignment_pk = _state_of_assignment(rater=rater, assignment_id=assignment_id)
    skip_submit(state=state, assignment_id=assignment_pk, reason=reason, note=note, now=now)
    return Assignment.objects.get(pk=assignment_pk)


def _open_or(state: RatingState, now: datetime, serve) -> ServedPair | None:
    if state.open:
        _assignments_renew([state.open[0].pk], now=now)
        return replace(state.open[0], expires_at=_expiry(now))
    return serve(state=state, now=now)


def assignment_for_rater(
    *, study: Study, rater: Rater, now: datetime | None = None
) -> Assignment | None:
    """Return what the rater rates now: their open assignment, else a due check, else a pair.

    None once the rater has voted the study's quota of regular pairs, or when nothing is left.
    """
    now = now or timezone.now()
    state = selectors.rating_state_of(study=study, rater=rater, now=now)
    if state.progress.quota_met:
        return None
    current = _open_or(state, now, _assignment_new)
    return _assignment_instance(current, rater_id=rater.pk) if current else None


def assignment_next(
    *, study: Study, rater: Rater, now: datetime | None = None
) -> Assignment | None:
    """Serve the rater a pair: their open one, else a new regular pair (never a check)."""
    now = now or timezone.now()
    state = selectors.rating_state_of(study=study, rater=rater, now=now)
    current = _open_or(state, now, _pair_reserve)
    return _assignment_instance(current, rater_id=rater.pk) if current else None


# Attention checks: one image twice, or an earlier pair again with sides swapped.


def _attention_check_due(state: RatingState) -> bool:
    """Say whether the next assignment should be a check: when checks fall behind the rate.

    A counter, not a coin: with a rate of 0.1 the 10th, 20th, … assignments are checks. Two
    checks never follow each other, so a rate above one half acts as one half.
    """
    rate = state.study.attention_check_rate
    served = state.served
    if rate <= 0 or served.last_kind != AssignmentKind.PAIR:
        return False
    return served.checks + 1 <= rate * (served.total + 1) + 1e-9


def _identical_check_sources(state: RatingState, now: datetime) -> Iterator[int]:
    """Yield pairs whose images may make the rater's next identical check, a few at most.

    First from the rater's own pool, read as assignment reads it (a range of the coverage
    index, never a scan of the study's pairs); then, if those are spent or were made into
    checks for this rater already, from pairs the rater voted on (their votes, by index).
    """
    chooser = secrets.SystemRandom()
    for pool in _in_group_pools(state):
        window = _pool_window(state, pool, now=now, mode="any")
        if window:
            yield from chooser.sample([row[1] for row in window], min(3, len(window)))
            break
    voted = selectors.sql_fetchall(
        f"""SELECT pair_id FROM {Vote._meta.db_table} WHERE rater_id = %(rater)s
            AND study_id = %(study)s AND kind = %(kind)s ORDER BY id DESC LIMIT 8""",
        {"rater": state.rater_id, "study": state.study.pk, "kind": AssignmentKind.PAIR.value},
    )
    yield from chooser.sample([pair_id for (pair_id,) in voted], min(3, len(voted)))


def _identical_check_serve(state: RatingState, now: datetime) -> ServedPair | None:
    """Serve one image of an in-group pair twice, as a check pair made on demand (or reused)."""
    t = _db_tables()
    for source in _identical_check_sources(state, now):
        image = selectors.sql_fetchone(
            f"SELECT image_a_id, image_b_id FROM {t['pair']} WHERE id = %(source)s",
            {"source": source},
        )[secrets.randbelow(2)]
        if image is None:  # an imported pair: it has no images to show
            continue
        params = {
            "image": image,
            "study": state.study.pk,
            "now": db_datetime(now),
            "new_id": db_uuid(uuid.uuid4()),
            "rater": state.rater_id,
            "kind": AssignmentKind.IDENTICAL_CHECK.value,
            "left": Side.A.value,
            "served_at": db_datetime(_served_at(state, now)),
            "expires_at": db_datetime(_expiry(now)),
        }
        with selectors.sql_cursor() as cursor:
            # The check pair of this image, made once and shared by every rater it is served to.
            cursor.execute(
                f"""INSERT INTO {t["pair"]} (study_id, prompt_id, seed, image_a_id, image_b_id,
                        variant_a_id, variant_b_id, is_attention_check, external_id, created_at)
                    SELECT %(study)s, image.prompt_id, image.seed, image.id, image.id,
                        image.variant_id, image.variant_id, %(check)s, '', %(now)s
                    FROM {t["image"]} image WHERE image.id = %(image)s
                    ON CONFLICT (image_a_id, image_b_id) DO NOTHING""",
                {**params, "check": True},
            )
        served = _served_insert(
            f"""INSERT INTO {t["assignment"]} ({_ASSIGNMENT_COLUMNS})
                SELECT %(new_id)s, %(rater)s, check_pair.id, %(kind)s, NULL, NULL, %(left)s,
                    %(served_at)s, %(expires_at)s, NULL, ''
                FROM {t["pair"]} check_pair
                WHERE check_pair.image_a_id = %(image)s AND check_pair.image_b_id = %(image)s
                ON CONFLICT DO NOTHING""",
            params,
        )
        if served is not None:  # else the rater had this check already
            return _served_note(state, served)
    return None


def _repeat_check_serve(state: RatingState, now: datetime) -> ServedPair | None:
    """Serve again, sides swapped, a pair the rater voted on earlier (not the last one served).

    The same pair twice in a row is too easy to spot: the one served last is never repeated.
    """
    t = _db_tables()
    pair_kind, repeat = AssignmentKind.PAIR.value, AssignmentKind.REPEAT_CHECK.value
    served = _served_insert(
        f"""INSERT INTO {t["assignment"]} ({_ASSIGNMENT_COLUMNS})
            SELECT %(new_id)s, %(rater)s, earlier.pair_id, '{repeat}', earlier.id, NULL,
                CASE WHEN earlier.shown_left = 'a' THEN 'b' ELSE 'a' END, %(served_at)s,
                %(expires_at)s, NULL, ''
            FROM (
                SELECT a.id, a.pair_id, a.shown_left FROM {t["assignment"]} a
                JOIN {t["pair"]} p ON p.id = a.pair_id
                WHERE a.rater_id = %(rater)s AND p.study_id = %(study)s
                    AND a.kind = '{pair_kind}' AND a.pair_id <> %(latest)s
                    AND EXISTS (SELECT 1 FROM {t["vote"]} v WHERE v.rater_id = a.rater_id
                        AND v.pair_id = a.pair_id AND v.kind = '{pair_kind}')
                    AND NOT EXISTS (SELECT 1 FROM {t["assignment"]} r
                        WHERE r.rater_id = a.rater_id AND r.pair_id = a.pair_id
                            AND r.kind = '{repeat}')
                ORDER BY a.served_at LIMIT 1
            ) earlier
            WHERE 1 = 1""",
        {
            "new_id": db_uuid(uuid.uuid4()),
            "rater": state.rater_id,
            "study": state.study.pk,
            "latest": state.served.last_pair_id or 0,
            "served_at": db_datetime(_served_at(state, now)),
            "expires_at": db_datetime(_expiry(now)),
        },
    )
    return _served_note(state, served) if served is not None else None


def _attention_check_serve(state: RatingState, now: datetime) -> ServedPair | None:
    # Alternate the two kinds; a repeat needs an earlier vote, so it may have to wait.
    order = [_identical_check_serve, _repeat_check_serve]
    if state.served.repeats < state.served.identical:
        order.reverse()
    for serve in order:
        served = serve(state, now)
        if served is not None:
            return served
    return None


def _assignment_new(*, state: RatingState, now: datetime) -> ServedPair | None:
    if _attention_check_due(state):
        check = _attention_check_serve(state, now)
        if check is not None:
            return check
    return _pair_reserve(state=state, now=now)


# Entry: how a rater comes into a study (sign-up, panel links, invites), the cohorts they
# choose or propose, the optional questions about themselves, and completion.


class EntryRefused(Exception):
    """A way into a study that cannot be taken; `status` is the HTTP status that says why."""

    def __init__(self, reason: str, *, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class EmailTaken(Exception):
    """An email address that already belongs to an account, whatever its letter case."""


def rater_sign_up(*, email: str, password: str) -> Rater:
    """Create a user who signs in with their email address, and their rater profile.

    The user name is the email in lower case, so the unique user name makes the email unique
    without regard to case even when two sign-ups race; the password is validated by the form.
    """
    users = get_user_model()
    email = users.objects.normalize_email(email.strip())
    username = email.lower()
    if users.objects.filter(Q(email__iexact=email) | Q(username__iexact=username)).exists():
        raise EmailTaken(email)
    try:
        with transaction.atomic():
            user = users.objects.create_user(username=username, email=email, password=password)
            return Rater.objects.create(user=user)
    except IntegrityError as exc:
        raise EmailTaken(email) from exc


def rater_from_panel(*, panel_id: str) -> Rater:
    """Return the passwordless rater of a crowd-work panel id, creating them on first use.

    The user gets an opaque name and an unusable password: the panel id is never a user name,
    so it shows on no page. Two first visits at once make one rater.
    """
    existing = Rater.objects.select_related("user").filter(panel_id=panel_id).first()
    if existing is not None:
        return existing
    try:
        with transaction.atomic():
            user = get_user_model().objects.create_user(username=f"panel-{secrets.token_hex(10)}")
            return Rater.objects.create(user=user, panel_id=panel_id)
    except IntegrityError:
        # Another request made this panel rater first; theirs is the one.
        return Rater.objects.select_related("user").get(panel_id=panel_id)


def participation_from_panel(
    *, study: Study, panel_id: str, panel_study_id: str = "", panel_session_id: str = ""
) -> Participation:
    """Return the panel rater's participation in the study, recording the panel's latest ids."""
    rater = rater_from_panel(panel_id=panel_id)
    participation = participation_ensure(study=study, rater=rater)
    changes = {
        field: value
        for field, value in (
            ("panel_study_id", panel_study_id),
            ("panel_session_id", panel_session_id),
        )
        if value and getattr(participation, field) != value
    }
    if changes:
        Participation.objects.filter(pk=participation.pk).update(**changes)
        for field, value in changes.items():
            setattr(participation, field, value)
    return participation


def _invite_usable(now: datetime) -> Q:
    return (Q(max_uses__isnull=True) | Q(uses__lt=F("max_uses"))) & (
        Q(expires_at__isnull=True) | Q(expires_at__gt=now)
    )


def _invite_refusal(invite: StudyInvite, now: datetime) -> EntryRefused | None:
    if not invite.study.active:
        return EntryRefused(
            gettext("This study has closed. Thank you for your interest."), status=410
        )
    if invite.expires_at is not None and invite.expires_at <= now:
        return EntryRefused(gettext("This invite link has expired."), status=410)
    if invite.max_uses is not None and invite.uses >= invite.max_uses:
        return EntryRefused(
            gettext("This invite link has been used as often as it may be."), status=410
        )
    return None


def invite_create(
    *,
    study: Study,
    created_by: AbstractBaseUser | None = None,
    max_uses: int | None = None,
    expires_at: datetime | None = None,
) -> StudyInvite:
    """Create an invite link to the study."""
    return StudyInvite.objects.create(
        study=study, created_by=created_by, max_uses=max_uses, expires_at=expires_at
    )


def invite_check(*, token: str, now: datetime | None = None) -> StudyInvite:
    """Return the invite with this token, or raise EntryRefused if it cannot be used now."""
    now = now or timezone.now()
    invite = StudyInvite.objects.select_related("study").filter(token=token).first()
    if invite is None:
        raise EntryRefused(
            gettext("This invite link is not valid. Check that you copied all of it."), status=404
        )
    refusal = _invite_refusal(invite, now)
    if refusal is not None:
        raise refusal
    return invite


def invite_redeem(
    *, invite: StudyInvite, rater: Rater, now: datetime | None = None
) -> Participation:
    """Let the rater into the invite's study, counting one use if they were not in it yet.

    The use is claimed with a conditional update that respects max_uses and expires_at, so two
    raters racing for the last use cannot both win; the loser joins nothing.
    """
    now = now or timezone.now()
    with transaction.atomic():
        participation, created = Participation.objects.get_or_create(
            study=invite.study, rater=rater
        )
        if not created:
            return participation
        claimed = StudyInvite.objects.filter(
            _invite_usable(now), pk=invite.pk, study__active=True
        ).update(uses=F("uses") + 1)
        if claimed != 1:
            invite.refresh_from_db()
            raise _invite_refusal(invite, now) or EntryRefused(
                gettext("This invite link can no longer be used."), status=410
            )
    return participation


def cohort_proposal_submit(*, study: Study, rater: Rater, text: str) -> CohortProposal:
    """Record a rater's own name for a culture the study does not list, once per wording."""
    text = " ".join(text.split())[:200]
    if not text:
        raise ValueError("A cohort proposal needs some text.")
    existing = CohortProposal.objects.filter(
        study=study, rater=rater, status=CohortProposal.Status.PENDING, text__iexact=text
    ).first()
    return existing or CohortProposal.objects.create(study=study, rater=rater, text=text)


def rater_cohorts_choose(
    *, study: Study, rater: Rater, cohorts: Sequence[Cohort], proposal: str = ""
) -> CohortProposal | None:
    """Set the rater's cohorts among the study's, and record a proposal for one not listed.

    Cohorts of other studies are kept. A sub-cohort implies its culture, so a culture chosen
    together with one of its sub-cohorts is not stored twice: `india:tamil` already says India.
    """
    paths = {cohort.path for cohort in cohorts}
    chosen = [
        cohort
        for cohort in cohorts
        if not any(
            other != cohort.path and cohort_path_contains(cohort.path, other) for other in paths
        )
    ]
    if not chosen and not proposal.strip():
        raise ValueError("Choose a cohort or propose one.")
    with transaction.atomic():
        # "None of these" with a proposal takes the rater out of the study's cohorts too.
        kept = rater.cohorts.exclude(pk__in=study.cohorts.values("pk"))
        rater.cohorts.set([*kept, *chosen])
        if proposal.strip():
            return cohort_proposal_submit(study=study, rater=rater, text=proposal)
    return None


class ProposalDecided(Exception):
    """A cohort proposal that an admin has already accepted or rejected."""


def cohort_proposal_accept(
    *, proposal: CohortProposal, path: str, name: str = "", now: datetime | None = None
) -> Cohort:
    """Accept a pending proposal as the cohort at `path` (made if missing) of its study.

    The rater who proposed it gets the cohort, so their pairs can come.
    """
    now = now or timezone.now()
    with transaction.atomic():
        cohort = cohort_ensure(path=path, name=name)
        claimed = CohortProposal.objects.filter(
            pk=proposal.pk, status=CohortProposal.Status.PENDING
        ).update(status=CohortProposal.Status.ACCEPTED, cohort=cohort, decided_at=now)
        if claimed != 1:
            raise ProposalDecided(str(proposal.pk))
        proposal.study.cohorts.add(cohort)
        if proposal.rater_id is not None:
            proposal.rater.cohorts.add(cohort)
    proposal.refresh_from_db()
    return cohort


def cohort_proposal_reject(*, proposal: CohortProposal, now: datetime | None = None) -> bool:
    """Reject a pending proposal; tell whether this call was the one that decided it."""
    claimed = CohortProposal.objects.filter(
        pk=proposal.pk, status=CohortProposal.Status.PENDING
    ).update(status=CohortProposal.Status.REJECTED, decided_at=now or timezone.now())
    return claimed == 1


def participation_demographics_set(
    *,
    participation: Participation,
    age_band: str | None = None,
    languages: Sequence[str] | None = None,
    years_lived: str | None = None,
) -> Participation:
    """Store the rater's answers to the optional questions; None is a question not answered.

    Every question asked is stored, answered or not, so the questions are not asked again:
    skipping them all stores only nulls.
    """
    participation.demographics = {
        "age_band": age_band or None,
        "languages": list(languages) if languages else None,
        "years_lived": years_lived or None,
    }
    participation.save(update_fields=["demographics"])
    return participation


def participation_quota_met(*, participation: Participation) -> bool:
    """Tell whether the rater has voted on as many regular pairs as the study asks."""
    regular = Vote.objects.filter(
        study_id=participation.study_id,
        rater_id=participation.rater_id,
        kind=AssignmentKind.PAIR,
    )
    return regular.count() >= participation.study.pairs_per_rater


def participation_complete(
    *, study: Study, rater: Rater, now: datetime | None = None
) -> Participation:
    """Mark the rater's participation completed, once; refuse while their quota is not met.

    Voting usually marks it first, as the last pair of the quota is stored; this is for a rater
    who reaches the completion page by another way, and it never hands out a code early.
    """
    participation = (
        Participation.objects.select_related("study")
        .filter(study=study, rater=rater, consented_at__isnull=False)
        .first()
    )
    if participation is None:
        raise EntryRefused(gettext("You have not started this study yet."), status=409)
    if participation.completed_at is None:
        if not participation_quota_met(participation=participation):
            raise EntryRefused(gettext("You have not finished this study yet."), status=409)
        Participation.objects.filter(pk=participation.pk, completed_at__isnull=True).update(
            completed_at=now or timezone.now()
        )
        participation.refresh_from_db(fields=["completed_at"])
    return participation


# Assignment: which new regular pair a rater is served, and the coverage that decides it.
#
# PairCoverage keeps, for every regular pair, one row per cohort the pair can count toward: the
# prompt's cohort, its ancestors, and the study's cohorts below it. `votes` on the row of cohort
# C counts the regular votes of raters in C or below it (an india:tamil vote counts in india
# too), up to the study's target; `outgroup_votes` on the row of the prompt's root culture
# counts votes of raters from other cultures. A rater of cohort R is served from the rows of R,
# fewest votes first, through the index (study, cohort, votes, pair): a range read, never a
# scan of the study's pairs. A rater whose cohort is not in the study (india:tamil in a study
# of india) is served from the rows of its nearest ancestor that is, among the prompts related
# to their own cohort.
#
# Reservations are not counted in the rows: a live reservation is an assignment neither voted
# on, skipped nor expired (voting and skipping set expires_at to their time), so an expired one
# returns its pair to the pool with nothing to clean up. They are read, for the few pairs looked
# at, through the assignments' pair index. The check that a pair is below its target and the
# reservation that follows run under the pair's coverage row lock, taken with SKIP LOCKED: two
# raters never both take a pair's last place, and neither waits for the other.

ASSIGN_WINDOW = 32  # coverage rows read at a time
ASSIGN_ROUNDS = 3  # fresh looks when every pair seen was taken by concurrent raters


@dataclass(frozen=True)
class _Pool:
    """Coverage rows a rater's next pair may come from, and what an assignment from them counts.

    In-group: the rows of one cohort by `votes`; the assignment counts toward that cohort, and
    reservations toward it or a cohort below it fill its places; `only_for` keeps to prompts
    related to a rater cohort that is not in the study itself. Out-group: the rows of another
    root culture, by `outgroup_votes`; the assignment counts toward no cohort.
    """

    cohort_id: int
    counter: str
    counts_toward: int | None
    rater_path: str | None
    only_for: str | None = None


@dataclass(frozen=True)
class _Candidate:
    pool: _Pool
    row_id: int
    pair_id: int
    load: int  # votes so far plus live reservations
    tie: float


def _live_sql(pool: _Pool, pair: str, params: dict) -> str:
    """Return `FROM … WHERE …` of the live reservations of `pair` that fill the pool's places.

    In-group, a reservation toward the pool's cohort or one below it, as its vote will count
    in the pool's row; out-group, one toward no cohort.
    """
    t = _db_tables()
    if pool.rater_path is None:
        filling = "live.cohort_id IS NULL"
    else:
        params.update(
            filling_path=pool.rater_path,
            filling_length=len(pool.rater_path) + 1,
            filling_subtree=pool.rater_path + ":",
        )
        subtree = (
            f"SELECT id FROM {t['cohort']} WHERE path = %(filling_path)s "
            "OR substr(path, 1, %(filling_length)s) = %(filling_subtree)s"
        )
        # An array built once per statement: as a plain IN the planner probed the
        # assignments' cohort index per pair, or joined the cohorts per pair (3 times the cost).
        filling = f"live.cohort_id = ANY(ARRAY({subtree}))"
    params["live_kind"] = AssignmentKind.PAIR.value
    return (
        f"FROM {t['assignment']} live WHERE live.pair_id = {pair} "
        "AND live.kind = %(live_kind)s AND live.expires_at > %(now)s "
        f"AND live.skipped_at IS NULL AND {filling}"
    )


def _pool_window(
    state: RatingState, pool: _Pool, *, now: datetime, mode: str = "load"
) -> list[tuple[int, int, int, int]]:
    """Return some of the pool's least voted rows below target as (row, pair, votes, reserved).

    See _pool_window_sql.
    """
    sql, params = _pool_window_sql(state, pool, now=now, mode=mode)
    return selectors.sql_fetchall(sql, params)


def _pool_window_sql(
    state: RatingState, pool: _Pool, *, now: datetime, mode: str = "load"
) -> tuple[str, dict]:
    """Return the read of some of the pool's least voted rows below target, and its parameters.

    Its rows are (id, pair_id, counted, reserved): the coverage row, its pair, its votes and
    the pair's live reservations that fill the pool's places.

    Ranges of the index (study, cohort, votes, pair), read in order and stopped at the
    window's end. The rater's own assignments are read once, as a hashed set; per row, the
    pair's flag and its live reservations are probed by primary key and the assignments' pair
    index, in subqueries rather than joins (planned once for any parameters, a join merged the
    window with every pair of the study). `mode` "load" counts each pair's live reservations,
    "any" does not (a check's source image needs no place): both start at a random pair among
    those with the fewest votes, wrap around to the first, then go on to the next counts, so
    that concurrent raters read (and lock) different rows rather than all the same few.
    "unreserved" reads from the
    very first row and leaves out pairs with a live reservation that fills the pool's places.
    """
    t = _db_tables()
    params: dict = {
        "now": db_datetime(now),
        "study": state.study.pk,
        "cohort": pool.cohort_id,
        "target": state.study.raters_per_pair,
        "rater": state.rater_id,
        "window": ASSIGN_WINDOW,
    }
    live = _live_sql(pool, "coverage.pair_id", params)
    related = ""
    if pool.only_for is not None:
        ancestors = selectors.sql_list("related", cohort_path_ancestors(pool.only_for), params)
        params.update(related_length=len(pool.only_for) + 1, related_subtree=pool.only_for + ":")
        related = f"""
            AND (SELECT 1 FROM {t["pair"]} pair JOIN {t["prompt"]} prompt
                    ON prompt.id = pair.prompt_id
                JOIN {t["cohort"]} cohort ON cohort.id = prompt.cohort_id
                WHERE pair.id = coverage.pair_id AND (cohort.path IN {ancestors}
                    OR substr(cohort.path, 1, %(related_length)s) = %(related_subtree)s)
            ) IS NOT NULL
        """
    counter = pool.counter  # a column name of ours, never input
    scope = "coverage.study_id = %(study)s AND coverage.cohort_id = %(cohort)s"
    reserved = f"(SELECT COUNT(*) {live})" if mode == "load" else "0"
    unreserved = f"AND NOT EXISTS (SELECT 1 {live})" if mode == "unreserved" else ""

    def rows(where: str, order: str) -> str:
        return f"""
            SELECT coverage.id AS id, coverage.pair_id AS pair_id, coverage.{counter} AS counted,
                {reserved} AS reserved
            FROM {t["coverage"]} coverage
            WHERE {scope} AND {where}
                AND coverage.pair_id NOT IN (
                    SELECT seen.pair_id FROM {t["assignment"]} seen
                    WHERE seen.rater_id = %(rater)s
                )
                AND NOT (SELECT is_attention_check FROM {t["pair"]} WHERE id = coverage.pair_id)
                {related} {unreserved}
            ORDER BY {order}
            LIMIT %(window)s
        """

    if mode == "unreserved":
        return rows(
            f"coverage.{counter} < %(target)s", f"coverage.{counter}, coverage.pair_id"
        ), params
    params["fraction"] = random.random()
    level = "(SELECT level FROM span)"
    sql = f"""
        WITH low AS (
            SELECT coverage.{counter} AS level FROM {t["coverage"]} coverage
            WHERE {scope} AND coverage.{counter} < %(target)s
            ORDER BY coverage.{counter} LIMIT 1
        ), span AS (
            SELECT level,
                (SELECT coverage.pair_id FROM {t["coverage"]} coverage
                    WHERE {scope} AND coverage.{counter} = low.level
                    ORDER BY coverage.pair_id LIMIT 1) AS first,
                (SELECT coverage.pair_id FROM {t["coverage"]} coverage
                    WHERE {scope} AND coverage.{counter} = low.level
                    ORDER BY coverage.pair_id DESC LIMIT 1) AS last
            FROM low
        ), start AS (
            SELECT first
                + CAST(CAST(%(fraction)s AS double precision) * (last - first + 1) AS bigint)
                AS pair_id
            FROM span
        )
        SELECT * FROM (
            SELECT * FROM ({
        rows(
            f"coverage.{counter} = {level} AND coverage.pair_id >= (SELECT pair_id FROM start)",
            "coverage.pair_id",
        )
    }) AS from_start
            UNION ALL
            SELECT * FROM ({
        rows(
            f"coverage.{counter} = {level} AND coverage.pair_id < (SELECT pair_id FROM start)",
            "coverage.pair_id",
        )
    }) AS to_start
            UNION ALL
            SELECT * FROM ({
        rows(
            f"coverage.{counter} > {level} AND coverage.{counter} < %(target)s",
            f"coverage.{counter}, coverage.pair_id",
        )
    }) AS above
        ) AS window_rows
        LIMIT %(window)s
    """
    return sql, params


def _pool_candidates(state: RatingState, pool: _Pool, *, now: datetime) -> list[_Candidate]:
    """Return pairs of the pool below target, the least loaded among them, in two reads at most.

    The first read takes the pool's least voted rows with their live reservations. While
    raters are many, those rows are often reserved already and less loaded pairs lie further
    on: the second read then skips reserved pairs in the database, still in index order.
    """
    target = state.study.raters_per_pair
    window = _pool_window(state, pool, now=now)
    candidates = [
        _Candidate(pool, row_id, pair_id, counted + reserved, random.random())
        for row_id, pair_id, counted, reserved in window
        if counted + reserved < target
    ]
    # Rows come in order of votes and reservations only add to them, so no row further on can
    # be less loaded than the last row's votes; an unreserved row further on may be less
    # loaded than every row read so far, though.
    if len(window) == ASSIGN_WINDOW and not (
        candidates and min(c.load for c in candidates) <= window[-1][2]
    ):
        unreserved = _pool_window(state, pool, now=now, mode="unreserved")
        candidates += [
            _Candidate(pool, row_id, pair_id, counted, random.random())
            for row_id, pair_id, counted, _ in unreserved
        ]
    return candidates


def _candidate_reserve(
    state: RatingState, candidate: _Candidate, *, now: datetime
) -> ServedPair | None:
    """Reserve the candidate pair if it is still below target; None if it is taken or full.

    Two statements in one transaction: the lock of the pair's coverage row, then the count of
    its live reservations with the reservation itself (_reserve_insert).
    """
    pool = candidate.pool
    with transaction.atomic():
        locked = selectors.sql_fetchone(
            f"SELECT {pool.counter} FROM {_db_tables()['coverage']} WHERE id = %(row)s "
            f"{selectors.sql_for_update_skip_locked()}",
            {"row": candidate.row_id},
        )
        if locked is None:
            return None  # another rater is reserving this pair right now
        return _reserve_insert(state, pool, pair_id=candidate.pair_id, counted=locked[0], now=now)


def _reserve_insert(
    state: RatingState, pool: _Pool, *, pair_id: int, counted: int, now: datetime
) -> ServedPair | None:
    """Reserve the pair for the rater if its places are not all taken; None if they are.

    Run under the lock of the pair's coverage row, in a statement of its own after the lock:
    its snapshot then holds the reservations committed by whoever held the lock before.
    """
    t = _db_tables()
    params: dict = {
        "new_id": db_uuid(uuid.uuid4()),
        "rater": state.rater_id,
        "pair": pair_id,
        "kind": AssignmentKind.PAIR.value,
        "cohort": pool.counts_toward,
        "left": secrets.choice(Side.values),  # the coin toss: which side `a` is shown on
        "served_at": db_datetime(_served_at(state, now)),
        "expires_at": db_datetime(_expiry(now)),
        "now": db_datetime(now),
        "target": state.study.raters_per_pair,
        "counted": counted,
    }
    live = _live_sql(pool, "%(pair)s", params)
    # None if full, or if the rater took the pair in another request meanwhile.
    return _served_insert(
        f"""INSERT INTO {t["assignment"]} ({_ASSIGNMENT_COLUMNS})
            SELECT %(new_id)s, %(rater)s, %(pair)s, %(kind)s, NULL,
                CAST(%(cohort)s AS bigint), %(left)s, %(served_at)s, %(expires_at)s, NULL, ''
            WHERE %(counted)s + (SELECT count(*) {live}) < %(target)s
            ON CONFLICT DO NOTHING""",
        params,
    )


def _pool_claim(state: RatingState, pool: _Pool, *, now: datetime) -> ServedPair | None:
    """Reserve a pair of the pool in one transaction of two statements, if all goes well.

    The first reads the window and locks the least loaded row of it that nobody else holds
    (SKIP LOCKED, in order of load and then at random); the second counts and reserves under
    that lock. None when the window has no free place or every candidate was locked: the
    caller then takes the longer way.
    """
    window, params = _pool_window_sql(state, pool, now=now)
    lock = "FOR UPDATE OF coverage SKIP LOCKED"
    with transaction.atomic():
        claimed = selectors.sql_fetchone(
            f"""SELECT coverage.pair_id, coverage.{pool.counter}
                FROM {_db_tables()["coverage"]} coverage
                JOIN ({window}) AS candidate ON candidate.id = coverage.id
                WHERE candidate.counted + candidate.reserved < %(target)s
                ORDER BY candidate.counted + candidate.reserved, random()
                LIMIT 1 {lock}""",
            params,
        )
        if claimed is None:
            return None
        pair_id, counted = claimed
        return _reserve_insert(state, pool, pair_id=pair_id, counted=counted, now=now)


def _pools_assign(
    state: RatingState, pools: Sequence[_Pool], *, now: datetime
) -> ServedPair | None:
    if len(pools) == 1:
        served = _pool_claim(state, pools[0], now=now)
        if served is not None:
            return served
    # Several pools, or a crowded one: all the candidates of every pool, tried one by one.
    for _ in range(ASSIGN_ROUNDS):
        candidates = sorted(
            (candidate for pool in pools for candidate in _pool_candidates(state, pool, now=now)),
            key=lambda candidate: (candidate.load, candidate.tie),
        )
        if not candidates:
            return None
        tried: set[int] = set()
        for candidate in candidates:
            if candidate.pair_id in tried:
                continue
            tried.add(candidate.pair_id)
            served = _candidate_reserve(state, candidate, now=now)
            if served is not None:
                return served
    return None


def _outgroup_due(state: RatingState) -> bool:
    """Say whether the next pair should come from another culture, to keep the study's share.

    A counter, not a coin: with a share of 0.25 the 4th, 8th, … regular pairs are out-group,
    so a rater's first pairs are always their own culture's.
    """
    share = state.study.outgroup_share
    served = state.served
    return share > 0 and served.outgroup + 1 <= share * (served.regular + 1) + 1e-9


def _in_group_pools(state: RatingState) -> list[_Pool]:
    """Return a pool per rater cohort: its own rows, or those of its nearest study ancestor."""
    study_cohorts = {path: pk for pk, path in state.study.cohorts}
    pools = []
    for pk, path, _ in state.cohorts:
        in_study = [each for each in cohort_path_ancestors(path) if each in study_cohorts]
        if path in study_cohorts or not in_study:
            pools.append(_Pool(cohort_id=pk, counter="votes", counts_toward=pk, rater_path=path))
        else:
            ancestor = study_cohorts[in_study[-1]]
            pools.append(
                _Pool(
                    cohort_id=ancestor,
                    counter="votes",
                    counts_toward=ancestor,
                    rater_path=in_study[-1],
                    only_for=path,
                )
            )
    # A pool kept to some prompts adds nothing where the same rows are read whole.
    whole = {pool.cohort_id for pool in pools if pool.only_for is None}
    kept = [pool for pool in pools if pool.only_for is None or pool.cohort_id not in whole]
    return list(dict.fromkeys(kept))


def _outgroup_pools(state: RatingState) -> list[_Pool]:
    # Out-group means another root culture: a rater of india:tamil shares India with a prompt
    # about india:kerala, so that pair is neither theirs nor foreign and is served as neither.
    rater_roots = {cohort_path_ancestors(path)[0] for path in state.cohort_paths}
    study_roots = {cohort_path_ancestors(path)[0] for _, path in state.study.cohorts}
    return [
        _Pool(cohort_id=pk, counter="outgroup_votes", counts_toward=None, rater_path=None)
        for pk, path in state.study.roots
        if path not in rater_roots and (not study_roots or path in study_roots)
    ]


def _pair_reserve(*, state: RatingState, now: datetime) -> ServedPair | None:
    """Reserve a new regular pair for the rater (see pair_assign); note it in `state`."""
    if not state.cohorts or state.rater_id is None:
        return None
    choices = [_in_group_pools(state)]
    if _outgroup_due(state):
        choices.insert(0, _outgroup_pools(state))
    for pools in choices:
        served = _pools_assign(state, pools, now=now)
        if served is not None:
            return _served_note(state, served)
    return None


def pair_assign(*, study: Study, rater: Rater, now: datetime | None = None) -> Assignment | None:
    """Reserve a new regular pair for the rater, or return None when none is left for them.

    In-group first: a pair whose prompt's cohort is one of the rater's cohorts, an ancestor of
    one, or below one, counted toward that rater cohort (Assignment.cohort); out-group pairs,
    from other root cultures and counted toward no cohort, only as far as the study's
    `outgroup_share`. The pair is one the rater was never served, not an attention check,
    below `raters_per_pair` for the cohort counting votes and live reservations, and the least
    loaded such pair. Open assignments and attention checks are the caller's business.
    """
    now = now or timezone.now()
    state = selectors.rating_state_of(study=study, rater=rater, now=now)
    served = _pair_reserve(state=state, now=now)
    return _assignment_instance(served, rater_id=rater.pk) if served else None


def pair_coverage_record(*, vote: Vote) -> None:
    """Count a regular vote in its pair's coverage, making the rows it needs (up to target).

    For votes stored outside vote_submit, which counts its own in the same statement; call it
    in the vote's transaction, so a vote and its count are stored together or not at all.
    """
    prompt_path, target = (
        Pair.objects.filter(pk=vote.pair_id)
        .values_list("prompt__cohort__path", "study__raters_per_pair")
        .get()
    )
    sql, params = _coverage_count(
        study_id=vote.study_id,
        pair_id=vote.pair_id,
        target=target,
        prompt_path=prompt_path,
        vote_paths=vote.cohort_paths,
    )
    with selectors.sql_cursor() as cursor:
        cursor.execute(sql, params)


def pair_coverage_create(*, pairs: Iterable[Pair]) -> None:
    """Make the coverage rows of newly formed regular pairs; rows already there are kept.

    A pair gets a row for its prompt's cohort, each ancestor, and each of its study's cohorts
    below the prompt's, so every rater the pair is in-group for finds it among their rows.
    """
    pair_ids = [pair.pk for pair in pairs if not pair.is_attention_check]
    if not pair_ids:
        return
    formed = list(
        Pair.objects.filter(pk__in=pair_ids).values_list("pk", "study_id", "prompt__cohort__path")
    )
    study_paths: dict[int, list[str]] = {}
    for study_id, path in Study.cohorts.through.objects.filter(
        study_id__in={study_id for _, study_id, _ in formed}
    ).values_list("study_id", "cohort__path"):
        study_paths.setdefault(study_id, []).append(path)
    rows = []
    for pair_id, study_id, prompt_path in formed:
        below = [
            path
            for path in study_paths.get(study_id, ())
            if cohort_path_contains(prompt_path, path)
        ]
        for path in {*cohort_path_ancestors(prompt_path), *below}:
            rows.append((pair_id, study_id, path))
    cohort_ids = dict(
        Cohort.objects.filter(path__in={path for _, _, path in rows}).values_list("path", "pk")
    )
    PairCoverage.objects.bulk_create(
        [
            PairCoverage(pair_id=pair_id, study_id=study_id, cohort_id=cohort_ids[path])
            for pair_id, study_id, path in rows
        ],
        ignore_conflicts=True,
    )


def pair_coverage_backfill(*, study: Study, cohort: Cohort) -> int:
    """Give the study's pairs rows for a cohort added to the study after they were formed.

    Only pairs whose prompt targets an ancestor of the cohort lack them; others got the row
    when formed. Return the number of rows made.
    """
    ancestors = cohort_path_ancestors(cohort.path)[:-1]
    if not ancestors:
        return 0
    ancestor_ids = list(Cohort.objects.filter(path__in=ancestors).values_list("pk", flat=True))
    placeholders = ", ".join(["%s"] * len(ancestor_ids))
    prompts = Pair._meta.get_field("prompt").related_model._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {PairCoverage._meta.db_table}
                (study_id, pair_id, cohort_id, votes, outgroup_votes)
            SELECT pair.study_id, pair.id, %s, 0, 0
            FROM {Pair._meta.db_table} pair
            JOIN {prompts} prompt ON prompt.id = pair.prompt_id
            WHERE pair.study_id = %s AND NOT pair.is_attention_check
                AND pair.image_a_id IS NOT NULL
                AND prompt.cohort_id IN ({placeholders})
            ON CONFLICT (pair_id, cohort_id) DO NOTHING
            """,
            [cohort.pk, study.pk, *ancestor_ids],
        )
        return cursor.rowcount
