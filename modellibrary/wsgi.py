from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

from modellibrary.startup import freeze_startup_objects

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "modellibrary.settings")
application = get_wsgi_application()
freeze_startup_objects()
