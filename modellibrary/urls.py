from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from modellibrary.security.views import LoginView

urlpatterns = [
    path("admin/", admin.site.urls),
    # Django's login view with the lockout's message (modellibrary/security).
    path("accounts/login/", LoginView.as_view(), name="login"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("api/v1/", include("catalog.api.urls")),
    path("hf/", include("catalog.hub.urls")),  # Hugging Face Hub compatibility (HF_ENDPOINT=…/hf)
    path("", include("catalog.urls")),
]

handler404 = "catalog.api.errors.api_handler404"
handler500 = "catalog.api.errors.api_handler500"
