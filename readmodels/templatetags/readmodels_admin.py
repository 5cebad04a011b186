"""Template helpers for the projections dashboard."""

from django import template

from readmodels import humanize

register = template.Library()


@register.filter
def get_item(mapping, key):
    return mapping.get(key)


@register.filter
def duration(seconds) -> str:
    return humanize.duration(seconds)
