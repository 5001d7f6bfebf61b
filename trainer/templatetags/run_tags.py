from django import template
from django.utils.html import escape
from django.utils.safestring import mark_safe

register = template.Library()


@register.filter
def code_spans(text) -> str:
    """Text with `commands` in backticks (the status checks write them so) shown with those as <code>; the rest
    escaped. Unpaired backticks stay as written."""
    parts = str(text).split("`")
    if len(parts) % 2 == 0:
        return escape(text)
    return mark_safe("".join(f"<code>{escape(part)}</code>" if i % 2 else escape(part) for i, part in enumerate(parts)))


@register.filter
def get_item(mapping, key):
    """Metric names contain slashes, which template variables cannot spell."""
    return mapping.get(key) if isinstance(mapping, dict) else None


@register.filter
def duration(seconds):
    """Seconds in the unit a person reads: 45 s, 12 min, 3.5 h."""
    if seconds is None:
        return ""
    seconds = float(seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


@register.filter
def percent(value):
    """0.783 -> "78 %"; "–" when there is no figure."""
    if value is None or value == "":
        return "–"
    return f"{float(value) * 100:.0f} %"


@register.filter
def interval(rate: dict):
    """A win-rate's 95 % interval: "[70, 85]"."""
    if not rate or rate.get("low") is None:
        return ""
    return f"[{rate['low'] * 100:.0f}, {rate['high'] * 100:.0f}]"
