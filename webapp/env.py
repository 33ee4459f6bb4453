"""Read typed settings from the environment, strictly.

A bad value does not raise here: settings.py must still load so that Django can report every
mistake at once, as system checks (see webapp/checks.py), instead of a traceback for the first.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field


@dataclass
class EnvReader:
    """Parse environment variables and remember what was wrong with them."""

    environ: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    errors: list[tuple[str, str]] = field(default_factory=list)

    def str(self, name: str, default: str = "") -> str:
        return self.environ.get(name, default).strip()

    def bool(self, name: str, default: bool) -> bool:
        """Return true or false; anything else is an error, not a guess."""
        raw = self.environ.get(name)
        if raw is None or raw.strip() == "":
            return default
        value = raw.strip().lower()
        if value in ("true", "1", "yes", "on"):
            return True
        if value in ("false", "0", "no", "off"):
            return False
        self.errors.append((name, f"{name} must be true or false, got {raw!r}."))
        return default

    def int(self, name: str, default: int, *, minimum: int | None = None) -> int:
        raw = self.environ.get(name)
        if raw is None or raw.strip() == "":
            return default
        try:
            value = int(raw.strip())
        except ValueError:
            self.errors.append((name, f"{name} must be a whole number, got {raw!r}."))
            return default
        if minimum is not None and value < minimum:
            self.errors.append((name, f"{name} must be at least {minimum}, got {value}."))
            return default
        return value

    def list(self, name: str, default: list[str]) -> list[str]:
        raw = self.environ.get(name)
        if raw is None or raw.strip() == "":
            return default
        return [item.strip() for item in raw.split(",") if item.strip()]

    def error(self, name: str, message: str) -> None:
        self.errors.append((name, message))
