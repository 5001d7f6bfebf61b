from django import template

register = template.Library()


@register.filter
def get_item(mapping, key):
    """Metric names contain slashes, which template variables cannot spell."""
    return mapping.get(key) if isinstance(mapping, dict) else None
