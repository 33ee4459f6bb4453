from __future__ import annotations

from django.apps import AppConfig


class WebappConfig(AppConfig):
    name = "webapp"
    verbose_name = "Polyphony"

    def ready(self) -> None:
        from webapp import checks  # noqa: F401  (registers the system checks)
