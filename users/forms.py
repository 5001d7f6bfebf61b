"""Forms validate input only; the writes happen in services."""

from django import forms

from users import prism_io, prism_wording
from users.models import Conversation


def _slider(label: str, initial: int = 50) -> forms.IntegerField:
    return forms.IntegerField(label=label, min_value=1, max_value=100, initial=initial,
                              widget=forms.NumberInput(attrs={"type": "range", "min": 1, "max": 100, "step": 1}))


def _choice(question: str, options: list[str], *, required: bool = False) -> forms.ChoiceField:
    blank = [] if required else [("", "—")]
    return forms.ChoiceField(label=question, required=required, choices=blank + [(o, o) for o in options])


class SurveyForm(forms.Form):
    lm_familiarity = _choice(prism_wording.QUESTIONS["lm_familiarity"], prism_wording.LM_FAMILIARITY, required=True)
    self_description = forms.CharField(label=prism_wording.QUESTIONS["self_description"], max_length=4000,
                                       widget=forms.Textarea(attrs={"rows": 4}))
    system_string = forms.CharField(label=prism_wording.QUESTIONS["system_string"] + " (optional)", required=False,
                                    max_length=4000, widget=forms.Textarea(attrs={"rows": 3}))
    age = _choice(prism_wording.QUESTIONS["age"], prism_wording.AGE)
    gender = _choice(prism_wording.QUESTIONS["gender"], prism_wording.GENDER)
    education = _choice(prism_wording.QUESTIONS["education"], prism_wording.EDUCATION)
    employment_status = _choice(prism_wording.QUESTIONS["employment_status"], prism_wording.EMPLOYMENT)
    english_proficiency = _choice(prism_wording.QUESTIONS["english_proficiency"], prism_wording.ENGLISH)
    reside_country = forms.CharField(label=prism_wording.QUESTIONS["reside_country"], required=False, max_length=80)

    def __init__(self, *args, profile=None, **kwargs):
        initial = {}
        if profile is not None:
            initial = {name: getattr(profile, name, None) for name in self.base_fields if hasattr(profile, name)}
            initial["reside_country"] = (profile.location or {}).get("reside_country")
            for dim, value in (profile.stated_prefs or {}).items():
                initial[f"pref_{dim}"] = value
        super().__init__(*args, initial=initial, **kwargs)
        for dim, statement in prism_wording.STATED_PREFS:
            self.fields[f"pref_{dim}"] = _slider(statement, initial=initial.get(f"pref_{dim}") or 50)

    def pref_fields(self):
        return [self[f"pref_{dim}"] for dim, _ in prism_wording.STATED_PREFS]

    def other_fields(self):
        return [self[name] for name in self.fields if not name.startswith("pref_")]

    def answers(self) -> dict:
        data = dict(self.cleaned_data)
        prefs = {dim: data.pop(f"pref_{dim}") for dim, _ in prism_wording.STATED_PREFS}
        return {"stated_prefs": prefs, **data}


class StartForm(forms.Form):
    kind = forms.ChoiceField(label="Type of conversation",
                             choices=[(k.value, k.label) for k in Conversation.PRISM_KINDS])
    message = forms.CharField(label="Your opening prompt", widget=forms.Textarea(attrs={"rows": 3}))


class SendForm(forms.Form):
    message = forms.CharField(label="Your next message", widget=forms.Textarea(attrs={"rows": 2}))


class RatingForm(forms.Form):
    """One 1–100 slider per finished reply; ``pick`` settles a tie at the top."""

    pick = forms.IntegerField(required=False)

    def __init__(self, *args, replies, **kwargs):
        super().__init__(*args, **kwargs)
        self.replies = [r for r in replies if r.status != "failed"]
        for reply in self.replies:
            self.fields[f"score-{reply.pk}"] = _slider(f"Rating of reply {reply.pk}")

    def scores(self) -> dict[int, int]:
        return {r.pk: self.cleaned_data[f"score-{r.pk}"] for r in self.replies}


class EndForm(forms.Form):
    open_feedback = forms.CharField(label="Give the model some feedback on the conversation (optional)",
                                    required=False, max_length=4000, widget=forms.Textarea(attrs={"rows": 3}))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for dim, statement in prism_wording.PERFORMANCE_ATTRIBUTES:
            self.fields[f"performance_{dim}"] = _slider(statement)
        for dim, statement in prism_wording.CHOICE_ATTRIBUTES:
            self.fields[f"choice_{dim}"] = _slider(statement)

    def performance_fields(self):
        return [self[name] for name in self.fields if name.startswith("performance_")]

    def choice_fields(self):
        return [self[name] for name in self.fields if name.startswith("choice_")]

    def answers(self) -> dict:
        data = self.cleaned_data
        return {
            "performance": {d: data[f"performance_{d}"] for d, _ in prism_wording.PERFORMANCE_ATTRIBUTES},
            "choice": {d: data[f"choice_{d}"] for d, _ in prism_wording.CHOICE_ATTRIBUTES},
            "feedback": data["open_feedback"],
        }


class ImportForm(forms.Form):
    survey = forms.FileField(label="survey.jsonl", required=False, allow_empty_file=True)
    conversations = forms.FileField(label="conversations.jsonl", required=False, allow_empty_file=True)
    utterances = forms.FileField(label="utterances.jsonl", required=False, allow_empty_file=True)

    def clean(self):
        data = super().clean()
        if not any(data.get(name) for name in prism_io.FILES):
            raise forms.ValidationError("Choose at least one file.")
        return data


# --- personalized chat (issue 6) ----------------------------------------------------------------------

class CompareForm(forms.Form):
    message = forms.CharField(label="A prompt to compare", widget=forms.Textarea(attrs={"rows": 2}))


class QuickRateForm(forms.Form):
    score = _slider("How good was this reply?", initial=50)
    rewrite = forms.CharField(label="What you wanted instead (optional)", required=False,
                              widget=forms.Textarea(attrs={"rows": 2}))
