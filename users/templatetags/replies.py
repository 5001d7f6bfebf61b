"""Template filters for model replies (a template builtin, see settings.TEMPLATES)."""

from django import template

from users.conversations.markdown import render

register = template.Library()
register.filter("markdown", render)
