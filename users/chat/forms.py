"""The participant's chat: the comparison prompt and the quick rating of a reply."""

from django import forms

from users.fields import slider


class CompareForm(forms.Form):
    message = forms.CharField(label="A prompt to compare", widget=forms.Textarea(attrs={"rows": 2}))


class QuickRateForm(forms.Form):
    score = slider("How good was this reply?")
    rewrite = forms.CharField(label="What you wanted instead (optional)", required=False,
                              widget=forms.Textarea(attrs={"rows": 2}))
