"""Form fields shared by the survey, collection and chat forms: PRISM's 1-100 slider and a question with options."""

from django import forms

from users.models import SCORE_MAX, SCORE_MIN

NOT_SET = "Not set yet: move this slider to the value you mean (a click or a key on it counts)."


def slider(label: str, initial: int | None = None) -> forms.IntegerField:
    """A required 1-100 answer. It starts unset (templates/collect/_slider.html): a value the person never gave
    is never stored, so a form without it is refused instead of saving a midpoint."""
    range_input = forms.NumberInput(attrs={"type": "range", "min": SCORE_MIN, "max": SCORE_MAX, "step": 1})
    return forms.IntegerField(label=label, min_value=SCORE_MIN, max_value=SCORE_MAX, initial=initial,
                              widget=range_input, error_messages={"required": NOT_SET})


def choice(question: str, options: list[str], *, required: bool = False) -> forms.ChoiceField:
    """A question with options; nothing is preselected (a required one must be answered, not left at the first)."""
    blank = [("", "Choose one" if required else "—")]
    return forms.ChoiceField(label=question, required=required, choices=blank + [(o, o) for o in options])
