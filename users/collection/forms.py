"""PRISM-style collection: forms validate input only; the writes happen in services."""

from django import forms

from alignment_site import glossary
from users.fields import slider
from users.models import SCORE_MAX, SCORE_MIN, Conversation, is_score
from users.prism import wording


class StartForm(forms.Form):
    kind = forms.ChoiceField(label="Type of conversation",
                             help_text="Unguided: talk about anything. Values guided: ask about something where your "
                                       "values or beliefs shape the answer you want. Controversy guided: ask about a "
                                       "topic people disagree on.",
                             choices=[(k.value, k.label) for k in Conversation.PRISM_KINDS])
    message = forms.CharField(label="Your opening prompt", widget=forms.Textarea(attrs={"rows": 3}))


class SendForm(forms.Form):
    message = forms.CharField(label="Your next message", widget=forms.Textarea(attrs={"rows": 2}))


class RatingForm(forms.Form):
    """One 1–100 slider per finished reply; ``pick`` settles a tie at the top. A slider the person has not set
    sends nothing, and the form is refused with the replies still unrated named."""

    pick = forms.IntegerField(required=False)

    def __init__(self, *args, replies, **kwargs):
        super().__init__(*args, **kwargs)
        self.replies = [r for r in replies if r.status != "failed"]
        for reply in self.replies:
            self.fields[f"score-{reply.pk}"] = slider(f"Rating of {glossary.reply_label(reply.position)}")

    def scores(self) -> dict[int, int]:
        return {r.pk: self.cleaned_data[f"score-{r.pk}"] for r in self.replies}

    def value_of(self, reply) -> int | None:
        """The value sent for this reply's slider when it is a valid score, else None (shown unset again)."""
        raw = self.data.get(f"score-{reply.pk}", "")
        return int(raw) if raw.isdigit() and is_score(int(raw)) else None

    def problem(self) -> str:
        """What to fix, in the person's words: which replies are still unrated, or that a value is off the scale."""
        unrated = [glossary.reply_label(r.position) for r in self.replies if self.value_of(r) is None]
        if unrated:
            names = unrated[0] if len(unrated) == 1 else ", ".join(unrated[:-1]) + " and " + unrated[-1]
            verb = "is" if len(unrated) == 1 else "are"
            return (f"{names} {verb} not rated yet: move {'its' if len(unrated) == 1 else 'each'} slider to "
                    f"your rating ({SCORE_MIN} {wording.REPLY_SCALE[0]} – {SCORE_MAX} {wording.REPLY_SCALE[1]}).")
        return f"Rate every reply from {SCORE_MIN} to {SCORE_MAX}."


class EndForm(forms.Form):
    open_feedback = forms.CharField(label="Give the model some feedback on the conversation (optional)",
                                    required=False, max_length=4000, widget=forms.Textarea(attrs={"rows": 3}))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for dim, statement in wording.PERFORMANCE_ATTRIBUTES:
            self.fields[f"performance_{dim}"] = slider(statement)
        for dim, statement in wording.CHOICE_ATTRIBUTES:
            self.fields[f"choice_{dim}"] = slider(statement)

    def performance_fields(self):
        return [self[name] for name in self.fields if name.startswith("performance_")]

    def choice_fields(self):
        return [self[name] for name in self.fields if name.startswith("choice_")]

    def answers(self) -> dict:
        data = self.cleaned_data
        return {
            "performance": {d: data[f"performance_{d}"] for d, _ in wording.PERFORMANCE_ATTRIBUTES},
            "choice": {d: data[f"choice_{d}"] for d, _ in wording.CHOICE_ATTRIBUTES},
            "feedback": data["open_feedback"],
        }
