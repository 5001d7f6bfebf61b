"""PRISM-style collection: forms validate input only; the writes happen in services."""

from django import forms

from users.fields import slider
from users.models import Conversation
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
    """One 1–100 slider per finished reply; ``pick`` settles a tie at the top."""

    pick = forms.IntegerField(required=False)

    def __init__(self, *args, replies, **kwargs):
        super().__init__(*args, **kwargs)
        self.replies = [r for r in replies if r.status != "failed"]
        for reply in self.replies:
            self.fields[f"score-{reply.pk}"] = slider(f"Rating of reply {reply.pk}")

    def scores(self) -> dict[int, int]:
        return {r.pk: self.cleaned_data[f"score-{r.pk}"] for r in self.replies}


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
