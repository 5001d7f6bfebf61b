"""A password check Django lacks: enough different characters (``zzzzzzzzzzzz`` is long, common lists
miss it, and it is guessed at once)."""

from django.core.exceptions import ValidationError


class VarietyValidator:
    def __init__(self, min_distinct: int = 5):
        self.min_distinct = min_distinct

    def validate(self, password: str, user=None) -> None:
        if len(set(password)) < self.min_distinct:
            raise ValidationError(
                f"This password uses fewer than {self.min_distinct} different characters, so it is easy to "
                "guess. Mix in more letters, digits or symbols.", code="password_too_uniform")

    def get_help_text(self) -> str:
        return f"Your password must use at least {self.min_distinct} different characters."
