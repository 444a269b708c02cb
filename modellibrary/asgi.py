from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

from modellibrary.startup import freeze_startup_objects

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "modellibrary.settings")
application = get_asgi_application()
freeze_startup_objects()
