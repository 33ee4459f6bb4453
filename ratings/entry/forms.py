from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from django import forms
from django.contrib.auth import get_user_model, password_validation
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError
from django.forms.boundfield import BoundWidget
from django.http import QueryDict
from django.utils.translation import gettext_lazy as _

from ratings.cohorts import CohortPathError, cohort_path_ancestors, cohort_path_normalize
from ratings.models import Cohort, Study
from ratings.texts import text_localized


def cohort_name(cohort: Cohort, *, study: Study) -> str:
    """Return a cohort's name as a rater of `study` reads it (ratings/texts.py)."""
    return text_localized(instance=cohort, field="name", study_language=study.language)


class CohortLabelField(forms.ModelMultipleChoiceField):
    study: Study | None = None

    def label_from_instance(self, obj: Cohort) -> str:
        # The page nests sub-cultures under their culture, so the name alone reads right.
        return obj.name if self.study is None else cohort_name(obj, study=self.study)


@dataclass
class CohortNode:
    """A cohort of the study with its checkbox and the study's cohorts beneath it."""

    cohort: Cohort
    name: str
    choice: BoundWidget
    children: list[CohortNode] = field(default_factory=list)
    # Set when the cohort's culture is not itself in the study, to say whose sub-culture it is.
    parent_name: str = ""


class CohortChoiceForm(forms.Form):
    cohorts = CohortLabelField(
        queryset=Cohort.objects.none(),
        widget=forms.CheckboxSelectMultiple,
        required=False,
        label=_("Which of these cultures do you belong to?"),
        help_text=_(
            "Choose every one that fits you. A sub-culture or period beneath a culture also "
            "counts in that culture."
        ),
    )
    proposal = forms.CharField(
        max_length=200,
        required=False,
        label=_("Your culture, in your own words"),
        help_text=_(
            "An admin will look at it and may add it to the study. Until then there are no pairs "
            "for you to rate."
        ),
    )

    def __init__(self, *args, study: Study, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.study = study
        self.fields["cohorts"].queryset = study.cohorts.select_related("parent").order_by("path")
        self.fields["cohorts"].study = study

    def clean(self) -> dict:
        cleaned = super().clean()
        if not cleaned.get("cohorts") and not cleaned.get("proposal", "").strip():
            self.add_error(
                "cohorts",
                _("Choose at least one culture, or describe yours under “None of these”."),
            )
        return cleaned

    def cohort_tree(self) -> list[CohortNode]:
        """Return the study's cohorts as cultures with their sub-cultures and periods beneath."""
        choices = {str(choice.data["value"]): choice for choice in self["cohorts"]}
        nodes: dict[str, CohortNode] = {}
        roots: list[CohortNode] = []
        # Ordered by path, so a culture always comes before its sub-cultures.
        for cohort in self.fields["cohorts"].queryset:
            node = CohortNode(
                cohort=cohort,
                name=cohort_name(cohort, study=self.study),
                choice=choices[str(cohort.pk)],
            )
            nodes[cohort.path] = node
            ancestors = cohort_path_ancestors(cohort.path)[:-1]
            parent = next((nodes[path] for path in reversed(ancestors) if path in nodes), None)
            if parent is not None:
                parent.children.append(node)
            else:
                parent = cohort.parent
                node.parent_name = cohort_name(parent, study=self.study) if parent else ""
                roots.append(node)
        return roots


# Entry: sign-up and sign-in, panel links, the optional questions, accepting a proposal.


class SignUpForm(forms.Form):
    """The first step of sign-up: the email address that the link to finish it is sent to."""

    email = forms.EmailField(
        label=_("Email"),
        max_length=150,
        widget=forms.EmailInput(attrs={"autocomplete": "email", "autofocus": True}),
    )

    def clean_email(self) -> str:
        # Whether the address has an account is never told here: the mail tells its owner.
        return get_user_model().objects.normalize_email(self.cleaned_data["email"].strip())


class SignUpFinishForm(forms.Form):
    """The last step of sign-up, on the page the emailed link opens: the password."""

    password1 = forms.CharField(
        label=_("Password"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password", "autofocus": True}),
        help_text=password_validation.password_validators_help_text_html,
    )
    password2 = forms.CharField(
        label=_("Password again"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    error_messages = {"password_mismatch": _("The two passwords differ.")}

    def __init__(self, *args, email: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.email = email

    def clean(self) -> dict:
        cleaned = super().clean()
        password1, password2 = cleaned.get("password1"), cleaned.get("password2")
        if password1 and password2 and password1 != password2:
            self.add_error(
                "password2",
                ValidationError(self.error_messages["password_mismatch"], code="password_mismatch"),
            )
        elif password1:
            # Validators such as attribute similarity compare the password with the new user.
            user = get_user_model()(username=self.email.lower(), email=self.email)
            try:
                password_validation.validate_password(password1, user)
            except ValidationError as error:
                self.add_error("password1", error)
        return cleaned


class SignInForm(AuthenticationForm):
    """Django's sign-in form, which also takes the email a rater signed up with."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["username"].label = _("Email or user name")

    def clean(self) -> dict:
        username = self.cleaned_data.get("username")
        if username and "@" in username:
            matches = list(
                get_user_model()
                .objects.filter(email__iexact=username)
                .values_list("username", flat=True)[:2]
            )
            if len(matches) == 1:
                self.cleaned_data["username"] = matches[0]
        return super().clean()


# Panel ids are tokens: letters, digits and a few separators. An unfilled placeholder such as
# {{%PROLIFIC_PID%}} or anything with spaces is refused rather than stored.
PANEL_ID_PATTERN = r"\A[A-Za-z0-9][A-Za-z0-9._:@-]{0,119}\Z"


class PanelLinkForm(forms.Form):
    """The ids a crowd-work panel puts in its link to a study, under the study's names."""

    rater_id = forms.RegexField(regex=PANEL_ID_PATTERN, max_length=120)
    study_id = forms.RegexField(regex=PANEL_ID_PATTERN, max_length=120, required=False)
    session_id = forms.RegexField(regex=PANEL_ID_PATTERN, max_length=120, required=False)

    def clean_rater_id(self) -> str:
        rater_id = self.cleaned_data["rater_id"]
        # Raters of imported votes are keyed "import:<study>:<id>"; a panel link must never
        # open one of them.
        if rater_id.lower().startswith("import:"):
            raise forms.ValidationError(_("This panel id is not valid."))
        return rater_id

    @classmethod
    def from_query(cls, query: QueryDict, *, study: Study) -> PanelLinkForm:
        return cls(
            data={
                "rater_id": query.get(study.panel_rater_param, ""),
                "study_id": query.get(study.panel_study_param, ""),
                "session_id": query.get(study.panel_session_param, ""),
            }
        )

    @staticmethod
    def present_in(query: QueryDict, *, study: Study) -> bool:
        """Tell whether a request's query carries any of the study's panel parameters."""
        names = (study.panel_rater_param, study.panel_study_param, study.panel_session_param)
        return any(name and name in query for name in names)


AGE_BANDS = [
    ("18-24", _("18 to 24")),
    ("25-34", _("25 to 34")),
    ("35-44", _("35 to 44")),
    ("45-54", _("45 to 54")),
    ("55-64", _("55 to 64")),
    ("65+", _("65 or older")),
]
YEARS_LIVED_BANDS = [
    ("none", _("I have not lived there")),
    ("under-5", _("Less than 5 years")),
    ("5-14", _("5 to 14 years")),
    ("15+", _("15 years or more")),
]
MAX_LANGUAGES = 12


class DemographicsForm(forms.Form):
    """The optional questions about the rater; every one may be left unanswered."""

    age_band = forms.ChoiceField(
        label=_("Your age"), choices=AGE_BANDS, required=False, widget=forms.RadioSelect
    )
    languages = forms.CharField(
        label=_("Languages you speak"),
        help_text=_("Separate them with commas, for example: Tamil, English."),
        max_length=300,
        required=False,
    )
    years_lived = forms.ChoiceField(
        label=_("How many years have you lived in the culture you chose?"),
        help_text=_("For example in its country or region."),
        choices=YEARS_LIVED_BANDS,
        required=False,
        widget=forms.RadioSelect,
    )

    def __init__(self, *args, study: Study, cultures: Sequence[str] = (), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        years_lived = self.fields["years_lived"]
        if len(cultures) > 1:
            # Several cultures: "the culture you chose" would not say which one is meant.
            years_lived.label = _(
                "Of the cultures you chose, think of the one you know best: "
                "how many years have you lived in it?"
            )
            years_lived.help_text = _(
                "For example in its country or region. You chose: %(cultures)s."
            ) % {"cultures": ", ".join(cultures)}
        # The study's own wording where it has one (in the rater's language, else the study's);
        # blank keeps the built-in wording above.
        for name in ("age_band", "languages", "years_lived"):
            if own := getattr(study, f"{name}_question"):
                self.fields[name].label = own

    def clean_languages(self) -> list[str]:
        raw = self.cleaned_data["languages"].replace(";", ",")
        named = (part.strip() for part in raw.split(","))
        # Keep the rater's first spelling; drop repeats, case aside, and empties.
        by_key: dict[str, str] = {}
        for name in named:
            if name:
                by_key.setdefault(name.casefold(), name[:60])
        languages = list(by_key.values())
        if len(languages) > MAX_LANGUAGES:
            raise ValidationError(
                _("Name at most %(count)d languages."), params={"count": MAX_LANGUAGES}
            )
        return languages


class CohortProposalAcceptForm(forms.Form):
    """Where in the cohort hierarchy a proposal goes, and the name raters will see."""

    path = forms.CharField(
        label="cohort path",
        max_length=120,
        help_text="culture[:subculture[:period]], e.g. nigeria:yoruba; missing parents are made. "
        "An existing path adds that cohort to the study.",
    )
    name = forms.CharField(label="name raters see", max_length=120)

    def clean_path(self) -> str:
        try:
            return cohort_path_normalize(self.cleaned_data["path"])
        except CohortPathError as exc:
            raise ValidationError(str(exc)) from exc
