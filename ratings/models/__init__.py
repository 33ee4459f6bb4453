"""The ratings models, one module per domain noun; Django finds them through these imports.

`_new_salt`, `_new_invite_token` and `validate_cohort_path` are named here too: the migrations
refer to them as `ratings.models.…`.
"""

from ratings.models.admission import EntryWindow, SignUpRequest
from ratings.models.cohorts import Cohort, CohortQuerySet, validate_cohort_path
from ratings.models.pairs import Assignment, AssignmentKind, Pair, PairCoverage, Side
from ratings.models.raters import (
    CohortProposal,
    ConsentDecline,
    Participation,
    Rater,
    StudyInvite,
    _new_invite_token,
)
from ratings.models.scores import (
    CoherenceScore,
    Faction,
    FactionMember,
    Score,
    ScoreRun,
    StrengthScore,
)
from ratings.models.studies import DEFAULT_CRITERIA, Criterion, Study, StudyGrant, _new_salt
from ratings.models.votes import Answer, Choice, Vote, VoteSource

__all__ = [
    "DEFAULT_CRITERIA",
    "Answer",
    "Assignment",
    "AssignmentKind",
    "Choice",
    "CoherenceScore",
    "Cohort",
    "CohortProposal",
    "CohortQuerySet",
    "ConsentDecline",
    "Criterion",
    "EntryWindow",
    "Faction",
    "FactionMember",
    "Pair",
    "PairCoverage",
    "Participation",
    "Rater",
    "Score",
    "ScoreRun",
    "Side",
    "SignUpRequest",
    "StrengthScore",
    "Study",
    "StudyGrant",
    "StudyInvite",
    "Vote",
    "VoteSource",
    "_new_invite_token",
    "_new_salt",
    "validate_cohort_path",
]
