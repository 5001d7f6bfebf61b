"""Form fields shared by the survey, collection and chat forms: PRISM's 1-100 slider and a question with options."""

from django import forms

from users.models import SCORE_MAX, SCORE_MIN


def slider(label: str, initial: int = 50) -> forms.IntegerField:
    range_input = forms.NumberInput(attrs={"type": "range", "min": SCORE_MIN, "max": SCORE_MAX, "step": 1})
    return forms.IntegerField(label=label, min_value=SCORE_MIN, max_value=SCORE_MAX, initial=initial,
                              widget=range_input)


def choice(question: str, options: list[str], *, required: bool = False) -> forms.ChoiceField:
    """A question with options; nothing is preselected (a required one must be answered, not left at the first)."""
    blank = [("", "Choose one" if required else "—")]
    return forms.ChoiceField(label=question, required=required, choices=blank + [(o, o) for o in options])
