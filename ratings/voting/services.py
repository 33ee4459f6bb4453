"""Services that store what a rater answers: votes (with the check they make) and skips.

A request reads one RatingState (ratings.assignment.state.rating_state, one statement) and calls
one service with it; the services keep the state current as they change things, so nothing is
read twice. Their statements are written by hand (see ratings.sql.sql_cursor), and a write the
ORM would spread over several statements is one: a vote, with its answers, the pair's coverage,
the end of its reservation, the participation's counts and the clock of the pair after it, is
one INSERT … WITH on PostgreSQL. The functions that take a study and a rater (vote_cast and
assignment_skip here; assignment_for_rater and pair_assign in ratings.assignment.services) read
the state themselves, for callers outside a request, and run the same code.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime

from django.db import IntegrityError, connection, transaction
from django.db.models.signals import post_save
from django.utils import timezone
from django.utils.translation import gettext

from ratings.assignment.coverage import coverage_count
from ratings.assignment.reservations import reservation_expiry
from ratings.assignment.services import rating_next
from ratings.assignment.state import (
    RatingNext,
    RatingState,
    ServedPair,
    rating_state,
    served_columns,
    served_joins,
)
from ratings.models import (
    Assignment,
    AssignmentKind,
    Choice,
    Participation,
    Rater,
    Side,
    Vote,
    VoteSource,
)
from ratings.sql import (
    db_datetime,
    db_tables,
    db_uuid,
    sql_chain,
    sql_fetchall,
    sql_fetchone,
    sql_list,
)

# What a rater's form says, in screen terms; the vote is stored in variant terms.
SCREEN_ANSWERS = ("1", "2", "tie", "skip")
MAX_TIME_ON_TASK_MS = 2**31 - 1


class VoteRefused(Exception):
    """A vote that cannot be stored; `status` is the HTTP status that says why."""

    def __init__(self, reason: str, *, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


# Why a rater may skip a pair, as the skip form offers them; "other" may carry the rater's words.
SKIP_REASONS = ("cant_see", "unfamiliar", "other")
SKIP_NOTE_MAX = 160


class VoteAlreadyStored(VoteRefused):
    """The rater's vote on this assignment is stored already; `served` is the assignment."""

    def __init__(self, served: ServedPair) -> None:
        super().__init__(gettext("You have already voted on this pair."), status=409)
        self.served = served


# C0 controls but tab, line feed and carriage return, and DEL: PostgreSQL refuses NUL in text,
# and none of them belongs in what a rater writes.
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _refuse_control_characters(*texts: str) -> None:
    for text in texts:
        if _CONTROL_CHARACTERS.search(text):
            raise VoteRefused(gettext("Remove the control characters from what you wrote."))


def _assignment_pk(assignment_id: object) -> uuid.UUID:
    try:
        return uuid.UUID(str(assignment_id))
    except ValueError as exc:
        raise VoteRefused(gettext("This pair was not served to you."), status=404) from exc


def _served_answered(state: RatingState, assignment_pk: uuid.UUID, *, skipping: bool) -> ServedPair:
    """Read the assignment from the database; raise VoteRefused if it is answered or not theirs.

    The truth after a vote or skip that lost a race, or an answer to a reservation that timed
    out while the rater looked at it (still theirs to answer, if nobody answered it).
    """
    if state.rater_id is None:
        raise VoteRefused(gettext("This pair was not served to you."), status=404)
    t = db_tables()
    row = sql_fetchone(
        f"""SELECT {served_columns()}, new.skipped_at IS NOT NULL, new.voted_at IS NOT NULL
            FROM {t["assignment"]} new {served_joins()}
            WHERE new.id = %(id)s AND new.rater_id = %(rater)s AND pair.study_id = %(study)s""",
        {"id": db_uuid(assignment_pk), "rater": state.rater_id, "study": state.study.pk},
    )
    if row is None:
        raise VoteRefused(gettext("This pair was not served to you."), status=404)
    *columns, skipped, voted = row
    served = ServedPair.from_row(columns)
    if voted:
        raise VoteAlreadyStored(served)
    if skipped:
        message = "You skipped this pair already." if skipping else "You skipped this pair."
        raise VoteRefused(gettext(message), status=409)
    if not state.study.active:
        raise VoteRefused(gettext("This study is closed."), status=409)
    return served


def _served_open(
    state: RatingState, assignment_id: object, *, skipping: bool = False
) -> ServedPair:
    """Return the open assignment the rater answers, or raise VoteRefused saying why not.

    Usually one of the state's live reservations, else read (see _served_answered). A vote
    already stored raises VoteAlreadyStored.
    """
    assignment_pk = _assignment_pk(assignment_id)
    served = next((served for served in state.open if served.pk == assignment_pk), None)
    if served is None:
        served = _served_answered(state, assignment_pk, skipping=skipping)
    if not state.study.active:
        raise VoteRefused(gettext("This study is closed."), status=409)
    return served


def _vote_resent(state: RatingState, served: ServedPair, answers: Mapping[str, str]) -> None:
    """Accept a resend of the stored vote's answers; refuse different ones with the truth.

    A rater whose vote was stored but whose answer was lost (the connection, the database
    restarting before the next pair was reserved) sends the same answers again and goes on.
    """
    choices = _choices(state, served, answers)
    t = db_tables()
    repeat = AssignmentKind.REPEAT_CHECK.value
    stored = dict(
        sql_fetchall(
            f"""SELECT c.key, ans.choice FROM {t["vote"]} v
                JOIN {t["answer"]} ans ON ans.vote_id = v.id
                JOIN {t["criterion"]} c ON c.id = ans.criterion_id
                WHERE v.rater_id = %(rater)s AND v.pair_id = %(pair)s
                    AND (CASE WHEN %(kind)s = '{repeat}' THEN v.kind = '{repeat}'
                        ELSE v.kind <> '{repeat}' END)""",
            {"rater": state.rater_id, "pair": served.pair_id, "kind": served.kind},
        )
    )
    if stored != choices:
        raise VoteRefused(
            gettext(
                "Your earlier vote on this pair is stored, with other answers; "
                "a vote cannot be changed."
            ),
            status=409,
        )


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
        t = db_tables()
        by_criterion = dict(
            sql_fetchall(
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
    t = db_tables()
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
        "served": db_uuid(served.pk),
        "renewed": db_datetime(reservation_expiry(now)),
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
    ended_in = sql_list("ended", [db_uuid(pk) for pk in ended], params)
    then = [
        f"""INSERT INTO {t["answer"]} (vote_id, criterion_id, choice)
            VALUES {", ".join(answer_rows)}""",
        f"""UPDATE {t["assignment"]} SET
                served_at = CASE WHEN id = %(upcoming)s THEN %(now)s ELSE served_at END,
                expires_at = CASE WHEN id = %(upcoming)s THEN %(renewed)s ELSE %(now)s END,
                voted_at = CASE WHEN id = %(served)s THEN %(now)s ELSE voted_at END
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
        coverage, coverage_params = coverage_count(
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
            (vote_id,) = sql_chain(first, then, params)
    except IntegrityError as exc:
        # A race lost: the same vote posted twice at once, or a skip of the same assignment
        # (assignment_one_outcome). Read what is stored and say that.
        _served_answered(state, served.pk, skipping=False)
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
        started = replace(upcoming, served_at=now, expires_at=reservation_expiry(now))
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
    _refuse_control_characters(comment, *answers.values())
    try:
        served = _served_open(state, assignment_id)
        _vote_store(state=state, served=served, answers=answers, comment=comment, now=now)
    except VoteAlreadyStored as stored:
        _vote_resent(state, stored.served, answers)
        state.open = [other for other in state.open if other.pk != stored.served.pk]
        return rating_next(state=state, now=now)
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
    _refuse_control_characters(reason, note)
    served = _served_open(state, assignment_id, skipping=True)
    if reason not in SKIP_REASONS:
        raise VoteRefused(gettext("Choose why you skip this pair."))
    note = " ".join(note.split())[:SKIP_NOTE_MAX]
    others = [other for other in state.open if other.pk != served.pk]
    upcoming = others[0] if others else None
    check = served.kind != AssignmentKind.PAIR
    if check and state.participation_id is None:
        Participation.objects.get_or_create(study_id=state.study.pk, rater_id=state.rater_id)
    t = db_tables()
    first = f"""
        UPDATE {t["assignment"]} SET skipped_at = %(now)s, skip_reason = %(reason)s,
            expires_at = %(now)s
        WHERE id = %(skipped)s AND skipped_at IS NULL AND voted_at IS NULL
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
        "renewed": db_datetime(reservation_expiry(now)),
        "check": check,
        "allowed": state.study.max_failed_checks,
        "study": state.study.pk,
        "rater": state.rater_id,
    }
    with _savepoint_if_nested():
        skipped = sql_chain(first, then, params)
    if skipped is None:
        # Answered meanwhile, by a vote or a skip: say which.
        _served_answered(state, served.pk, skipping=True)
        raise VoteRefused(gettext("You skipped this pair already."), status=409)
    state.open = others
    if upcoming is not None:
        started = replace(upcoming, served_at=now, expires_at=reservation_expiry(now))
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
    state = rating_state(user_id=rater.user_id, study_id=study_id)
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
