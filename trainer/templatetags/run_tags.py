from django import template

register = template.Library()


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
