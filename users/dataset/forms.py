"""The staff upload of PRISM files."""

from django import forms

from users.prism.schema import FILES


class ImportForm(forms.Form):
    survey = forms.FileField(label="survey.jsonl", required=False, allow_empty_file=True)
    conversations = forms.FileField(label="conversations.jsonl", required=False, allow_empty_file=True)
    utterances = forms.FileField(label="utterances.jsonl", required=False, allow_empty_file=True)

    def clean(self):
        data = super().clean()
        if not any(data.get(name) for name in FILES):
            raise forms.ValidationError("Choose at least one file.")
        return data
