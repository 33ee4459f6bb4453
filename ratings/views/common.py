"""Shared helpers of the ratings views."""

from __future__ import annotations

from django.shortcuts import get_object_or_404

from ratings.models import Study


def active_study(slug: str) -> Study:
    return get_object_or_404(Study, slug=slug, active=True)
