"""The profile survey form: PRISM's questions and stated-preference sliders."""

from django import forms

from users.fields import choice, slider
from users.prism import wording


class SurveyForm(forms.Form):
    lm_familiarity = choice(wording.QUESTIONS["lm_familiarity"], wording.LM_FAMILIARITY, required=True)
    self_description = forms.CharField(label=wording.QUESTIONS["self_description"], max_length=4000,
                                       widget=forms.Textarea(attrs={"rows": 4}))
    system_string = forms.CharField(label=wording.QUESTIONS["system_string"], required=False,
                                    max_length=4000, widget=forms.Textarea(attrs={"rows": 3}))
    age = choice(wording.QUESTIONS["age"], wording.AGE)
    gender = choice(wording.QUESTIONS["gender"], wording.GENDER)
    education = choice(wording.QUESTIONS["education"], wording.EDUCATION)
    employment_status = choice(wording.QUESTIONS["employment_status"], wording.EMPLOYMENT)
    english_proficiency = choice(wording.QUESTIONS["english_proficiency"], wording.ENGLISH)
    reside_country = forms.CharField(label=wording.QUESTIONS["reside_country"], required=False, max_length=80)

    def __init__(self, *args, profile=None, **kwargs):
        initial = {}
        if profile is not None:
            initial = {name: getattr(profile, name, None) for name in self.base_fields if hasattr(profile, name)}
            initial["reside_country"] = (profile.location or {}).get("reside_country")
            for dim, value in (profile.stated_prefs or {}).items():
                initial[f"pref_{dim}"] = value
        super().__init__(*args, initial=initial, **kwargs)
        for dim, statement in wording.STATED_PREFS:
            self.fields[f"pref_{dim}"] = slider(statement, initial=initial.get(f"pref_{dim}"))

    def pref_fields(self):
        return [self[f"pref_{dim}"] for dim, _ in wording.STATED_PREFS]

    def other_fields(self):
        return [self[name] for name in self.fields if not name.startswith("pref_")]

    def answers(self) -> dict:
        data = dict(self.cleaned_data)
        prefs = {dim: data.pop(f"pref_{dim}") for dim, _ in wording.STATED_PREFS}
        return {"stated_prefs": prefs, **data}
