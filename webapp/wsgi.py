from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

from webapp.bootstrap import environment_prepare

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
environment_prepare()
application = get_wsgi_application()

from webapp.checks import stop_on_configuration_errors  # noqa: E402  (needs Django set up)

stop_on_configuration_errors()
